/**
 * xpkg's binding over onnxruntime's C API (runner/backends/ort-capi.ts, native/ort/session.cc). On
 * this CPU machine it is checked through the CPU provider (`capi: 'always'`): the real fixture
 * models through the binding give the stock binding's outputs bit for bit, nodes are counted from
 * its profile, inputs are declared the same way, and results say which binding ran. The binding is
 * built only by `xpkg gpu install` (CI does not fetch its 150 MB header package): its tests skip
 * when it is not built, but the fallback — absent or unloadable binding, stock sessions, the
 * reason in every result — is tested everywhere.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { capiOptions, cudaTuning } from '../runner/backends/capi-options.js';
import { BackendRegistry, OnnxruntimeBackend } from '../runner/backends/index.js';
import { ortSessionOptions } from '../runner/backends/onnxruntime.js';
import { CAPI_BUILT, loadCapi, resetCapi } from '../runner/backends/ort-capi.js';
import { Runner } from '../runner/runner.js';
import type { Tensor } from '../runner/types.js';
import { tempDir } from './helpers/source.js';

const TRUST = ['fixtures/keys/test.pub'];
const built = existsSync(CAPI_BUILT);

function registry(capi: 'always' | 'never'): BackendRegistry {
  const r = new BackendRegistry();
  r.register(new OnnxruntimeBackend({ capi, placement: 'always' }), 100);
  return r;
}

async function detect(capi: 'always' | 'never') {
  await using runner = await Runner.open('fixtures/dist/detector.xpkg', {
    trust: TRUST,
    stateDir: tempDir('xpkg-state-'),
    registry: registry(capi),
    threads: 1,
    modelCache: false,
  });
  const { data, info } = await sharp('fixtures/detector/eval/002.png')
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return await runner.run({ image: { data, width: info.width, height: info.height, channels: 3 } });
}

afterEach(() => {
  delete process.env.XPKG_ORT_CAPI_PATH;
  delete process.env.XPKG_ORT_CAPI;
  resetCapi();
});

describe('C API binding absent or unloadable: stock sessions, the reason in the result', () => {
  it('not built: the stock binding runs the model and `bindings` says why', async () => {
    process.env.XPKG_ORT_CAPI_PATH = join(tempDir('xpkg-capi-'), 'missing.node');
    const r = await detect('always');
    const b = Object.values(r.bindings ?? {});
    expect(b.length).toBeGreaterThan(0);
    for (const x of b) {
      expect(x.name).toBe('onnxruntime-node');
      expect(x.fallback?.code).toBe('not-built');
    }
    expect(Object.values(r.actualProvider)).toEqual(b.map(() => 'cpu'));
  });

  it('a file that is not a binding: load-failed; XPKG_ORT_CAPI=off: off', async () => {
    const bad = join(tempDir('xpkg-capi-'), 'bad.node');
    writeFileSync(bad, 'not a shared object');
    process.env.XPKG_ORT_CAPI_PATH = bad;
    expect(loadCapi('/nonexistent')).toMatchObject({ code: 'load-failed' });
    resetCapi();
    process.env.XPKG_ORT_CAPI = 'off';
    const r = await detect('always');
    for (const x of Object.values(r.bindings ?? {})) expect(x.fallback?.code).toBe('off');
  });

  it('CPU sessions under the default are the stock binding’s, and results carry no bindings', async () => {
    const r = await detect('never');
    expect(r.bindings).toBeUndefined();
  });
});

describe.skipIf(!built)('C API binding on the CPU provider (built by xpkg gpu install)', () => {
  it('the detector through the binding: the stock binding’s outputs exactly, nodes counted, binding named', async () => {
    const viaCapi = await detect('always');
    const stock = await detect('never');
    for (const b of Object.values(viaCapi.bindings ?? {})) expect(b).toEqual({ name: 'xpkg-ort-capi' });
    expect(JSON.stringify(viaCapi.outputs)).toBe(JSON.stringify(stock.outputs));
    expect((viaCapi.outputs.boxes as unknown[]).length).toBeGreaterThan(0);
    expect(viaCapi.nodes).toEqual(stock.nodes);
    expect(Object.values(viaCapi.nodes)[0]?.cpu).toBeGreaterThan(0);
  });

  it('declares inputs as the stock binding does, runs typed tensors, refuses what does not fit', async () => {
    const make = async (capi: 'always' | 'never') => {
      const b = new OnnxruntimeBackend({ capi, placement: 'never' });
      expect((await b.init()).ok).toBe(true);
      const { probeModel } = await import('../runner/backends/probe-model.js');
      const bytes = Buffer.from(probeModel());
      return b.load(
        { id: 'probe', runtime: 'onnxruntime', precision: 'fp32', files: ['m.onnx'] },
        new Map([['m.onnx', bytes]]),
        { threads: 1, modelCache: false },
      );
    };
    const a = await make('always');
    const s = await make('never');
    try {
      expect(a.binding).toEqual({ name: 'xpkg-ort-capi' });
      expect(a.inputShapes).toEqual(s.inputShapes);
      expect(a.outputShapes).toEqual(s.outputShapes);
      expect(a.outputShapes?.length).toBe(a.outputNames.length);
      expect(a.inputNames).toEqual(s.inputNames);
      const name = a.inputNames[0];
      const x: Tensor = { type: 'float32', dims: [4], data: new Float32Array([1, -2, 3.5, 1e-30]) };
      const [ra, rs] = await Promise.all([a.run({ [name]: x }), s.run({ [name]: x })]);
      expect(ra).toEqual(rs);
      // many runs in flight at once, on libuv workers
      const many = await Promise.all(
        Array.from({ length: 16 }, (_, i) =>
          a.run({ [name]: { type: 'float32', dims: [1], data: new Float32Array([i]) } }),
        ),
      );
      expect(many.map((m) => (Object.values(m)[0].data as Float32Array)[0])).toEqual(
        Array.from({ length: 16 }, (_, i) => i),
      );
      await expect(a.run({ [name]: { type: 'int32', dims: [1], data: new Int32Array([1]) } })).rejects.toMatchObject({
        code: 'E_RUN_BACKEND',
      });
    } finally {
      await a.release();
      await s.release();
    }
  });
});

describe('the CUDA provider options the binding passes', () => {
  const CUDA_VARIANT = {
    id: 'v',
    runtime: 'onnxruntime',
    precision: 'fp32',
    files: ['m'],
    requires: { executionProviders: ['cuda'] },
  } as never;
  const cudaOptions = (tuning: Parameters<typeof capiOptions>[1]) =>
    Object.fromEntries(capiOptions(ortSessionOptions(CUDA_VARIANT, {}, ['cuda', 'cpu']), tuning).providerOptions);

  it('HEURISTIC search, TF32 on, workspace not at its maximum, arena grown as asked; XPKG_ORT_* change each; options win', () => {
    expect(cudaOptions(cudaTuning({}, {}))).toEqual({
      device_id: '0',
      cudnn_conv_algo_search: 'HEURISTIC',
      use_tf32: '1',
      cudnn_conv_use_max_workspace: '0',
      arena_extend_strategy: 'kSameAsRequested',
    });
    const env = {
      XPKG_ORT_CONV_SEARCH: 'DEFAULT',
      XPKG_ORT_TF32: '0',
      XPKG_ORT_CONV_MAX_WS: '1',
      XPKG_ORT_ARENA: 'power-of-two',
    };
    expect(cudaOptions(cudaTuning({}, env))).toMatchObject({
      cudnn_conv_algo_search: 'DEFAULT',
      use_tf32: '0',
      cudnn_conv_use_max_workspace: '1',
      arena_extend_strategy: 'kNextPowerOfTwo',
    });
    expect(cudaTuning({ convAlgoSearch: 'EXHAUSTIVE', tf32: true }, env)).toMatchObject({
      convAlgoSearch: 'EXHAUSTIVE',
      tf32: true,
    });
    // an unknown search name keeps HEURISTIC; a CPU session gets no provider options
    expect(cudaTuning({}, { XPKG_ORT_CONV_SEARCH: 'FAST' }).convAlgoSearch).toBe('HEURISTIC');
    expect(
      capiOptions(
        ortSessionOptions({ id: 'v', runtime: 'onnxruntime', precision: 'fp32', files: ['m'] } as never, {}, ['cpu']),
      ).providerOptions,
    ).toEqual([]);
  });
});
