/**
 * Shape pre-warming (runner/prewarm.ts): the input shapes a pipeline can make, derived from the
 * manifest (runner/pipeline/shapes.ts), and `Runner.open` running each model once per shape before
 * the first run. On this CPU machine the runs are real onnxruntime CPU runs, watched through a
 * backend that records what it was asked to run.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodeModel } from '../fixtures/onnx-tiny.js';
import { packFolder } from '../pack/pack.js';
import { PackageReader } from '../pack/reader.js';
import { OnnxruntimeBackend } from '../runner/backends/onnxruntime.js';
import { BackendRegistry } from '../runner/backends/registry.js';
import { loadHostProfile } from '../runner/host-profile.js';
import { enumerateShapes, pipelineShapes, shapeCount, shapeSummary } from '../runner/pipeline/shapes.js';
import { Runner } from '../runner/runner.js';
import type { Manifest, Variant } from '../spec/schema.js';
import { codeOf } from './helpers/errors.js';
import { gpuVariantsOnCpu } from './helpers/gpu-on-cpu.js';
import { tempDir } from './helpers/source.js';
import { SpyBackend } from './helpers/spy-backend.js';

const state = () => tempDir('xpkg-state-');
const TRUST = ['fixtures/keys/test.pub'];

const identity = (rank: number) =>
  encodeModel({
    name: 'id',
    nodes: [{ op: 'Identity', inputs: ['X'], outputs: ['Y'] }],
    inputs: [{ name: 'X', type: 'float32', shape: ['N', 'C', 'H', 'W'].slice(0, rank) }],
    outputs: [{ name: 'Y', type: 'float32', shape: ['N', 'C', 'H', 'W'].slice(0, rank) }],
  });

/** Two models: one behind a 64×48 letterbox, one behind a 16-high line resize bucketed to widths 32/64/96. */
async function bucketPackage(): Promise<string> {
  const src = tempDir('xpkg-prewarm-src-');
  mkdirSync(join(src, 'models'));
  writeFileSync(join(src, 'models', 'id.onnx'), identity(4));
  const variant = (id: string) => ({ id, runtime: 'onnxruntime', precision: 'fp32', files: ['models/id.onnx'] });
  writeFileSync(
    join(src, 'xpkg.json'),
    JSON.stringify({
      name: 'buckets',
      version: '1.0.0',
      sequence: 1,
      license: 'MIT',
      task: 'test',
      inputs: [{ name: 'image', type: 'image' }],
      outputs: [
        { name: 'a', type: 'tensor' },
        { name: 'b', type: 'tensor' },
      ],
      models: [
        { id: 'boxnet', variants: [variant('box-cpu')] },
        { id: 'linenet', variants: [variant('line-cpu')] },
      ],
      pipeline: {
        steps: [
          { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
          { op: 'preprocess', params: { input: 'rgb', output: 'x', mode: 'letterbox', width: 64, height: 48 } },
          { op: 'infer', model: 'boxnet', params: { inputs: 'x', outputs: 'a' } },
          {
            op: 'resize',
            params: {
              input: 'rgb',
              output: 'line',
              mode: 'fixed-height',
              height: 16,
              minWidth: 32,
              maxWidth: 96,
              multipleOf: 32,
            },
          },
          { op: 'normalize', params: { input: 'line', output: 'lx' } },
          { op: 'infer', model: 'linenet', params: { inputs: 'lx', outputs: 'b' } },
        ],
      },
    }),
  );
  const pkg = join(tempDir(), 'buckets.xpkg');
  await packFolder(src, pkg);
  return pkg;
}

const png = (width: number, height: number) =>
  sharp({ create: { width, height, channels: 3, background: { r: 90, g: 160, b: 20 } } })
    .png()
    .toBuffer();

async function manifestOf(path: string): Promise<Manifest> {
  const r = await PackageReader.open(path);
  try {
    return r.manifest;
  } finally {
    await r.close();
  }
}

describe('input shapes a pipeline can make', () => {
  it('follows the shipped packages: the detector has one, the OCR models many or open', async () => {
    const det = pipelineShapes(await manifestOf('fixtures/dist/detector.xpkg'));
    expect(det.detector.map((f) => enumerateShapes(f.dims!))).toEqual([[[1, 3, 320, 320]]]);
    const ocr = shapeSummary(await manifestOf('fixtures/dist/paddleocr-v4.xpkg'));
    // limit-side 960, multipleOf 32: 30 heights × 30 widths
    expect(ocr.det).toEqual({ shapes: 900 });
    expect(ocr.cls.shapes).toBeNull();
    expect(ocr.cls.open).toMatch(/number of regions/);
    // one line per call at its own width, up to crop-batch's 4096 columns
    expect(ocr.rec).toEqual({ shapes: 4096 });
    const add = shapeSummary(await manifestOf('fixtures/dist/multi-variant.xpkg'));
    expect(add['add-one']).toEqual({ shapes: null, open: 'dim 0: input x dim N' });
  });

  it('crop-batch width buckets times the batch sizes maxBatch allows', () => {
    const shapes = pipelineShapes({
      inputs: [{ name: 'image', type: 'image' }],
      pipeline: {
        steps: [
          { op: 'decode-image', params: { input: 'image', output: 'rgb', channels: 1 } },
          {
            op: 'crop-batch',
            params: {
              image: 'rgb',
              regions: 'r',
              output: 'x',
              height: 32,
              minWidth: 64,
              maxWidth: 256,
              widthMultiple: 64,
            },
          },
          { op: 'infer', model: 'rec', params: { inputs: 'x', outputs: 'y', maxBatch: 4 } },
        ],
      },
    } as never);
    const dims = shapes.rec[0].dims!;
    expect(shapeCount(dims)).toBe(16);
    expect(dims).toEqual([
      { values: [1, 2, 3, 4] },
      { values: [1] },
      { values: [32] },
      { values: [64, 128, 192, 256] },
    ]);
    // largest first, so the runtime's memory grows once
    expect(enumerateShapes(dims)[0]).toEqual([4, 1, 32, 256]);
  });

  it('says why a shape is open: a grow-only limit side, a fit box, a value from a model', () => {
    const s = pipelineShapes({
      inputs: [{ name: 'image', type: 'image' }],
      pipeline: {
        steps: [
          { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
          {
            op: 'preprocess',
            params: { input: 'rgb', output: 'a', mode: 'limit-side', limitSide: 640, limitType: 'min' },
          },
          { op: 'infer', model: 'm1', params: { inputs: 'a', outputs: 'o1' } },
          { op: 'resize', params: { input: 'rgb', output: 'f', mode: 'fit', width: 100, height: 100 } },
          { op: 'normalize', params: { input: 'f', output: 'b' } },
          { op: 'infer', model: 'm2', params: { inputs: 'b', outputs: 'o2' } },
          { op: 'infer', model: 'm3', params: { inputs: 'o2', outputs: 'o3' } },
        ],
      },
    } as never);
    const summary = (m: string) => shapeCount(s[m][0].dims ?? [{ open: '' }]);
    expect([summary('m1'), summary('m2'), summary('m3')]).toEqual([null, null, null]);
    expect(JSON.stringify(s.m1[0].dims)).toMatch(/without maxSide/);
    expect(JSON.stringify(s.m2[0].dims)).toMatch(/fit/);
    expect(s.m3[0].why).toMatch(/an output of model m2/);
  });
});

describe('Runner.open pre-warms', () => {
  it('runs each model once per shape inside open, largest first, and every later run is at one of them', async () => {
    const pkg = await bucketPackage();
    const spy = new SpyBackend();
    await using runner = await Runner.open(pkg, {
      allowUnsigned: true,
      stateDir: state(),
      registry: spy.registry(),
      threads: 1,
      prewarm: 'always',
    });
    expect(spy.runs()).toEqual(['box-cpu 1x3x48x64', 'line-cpu 1x3x16x96', 'line-cpu 1x3x16x64', 'line-cpu 1x3x16x32']);
    const o = runner.opened;
    expect(o.prewarm.linenet.shapes.map((s) => s.dims.X)).toEqual([
      [1, 3, 16, 96],
      [1, 3, 16, 64],
      [1, 3, 16, 32],
    ]);
    expect(o.prewarm.linenet.possible).toBe(3);
    expect(o.prewarm.boxnet.shapes[0].ms).toBeGreaterThan(0);
    expect(o.ms.total).toBeGreaterThanOrEqual(o.ms.load + o.ms.prewarm);
    const warmed = new Set(spy.runs());
    // lines of any aspect: wide ones squeezed into 96, narrow ones padded to 32
    for (const [w, h] of [
      [300, 40],
      [40, 300],
      [123, 77],
      [1000, 20],
      [17, 16],
    ]) {
      const r = await runner.run({ image: await png(w, h) });
      expect(r.timings.load).toBeUndefined();
      expect(r.copies).toEqual({ hostToDevice: 0, deviceToHost: 0, models: {} });
    }
    const later = spy.runs().slice(warmed.size);
    expect(later).toHaveLength(10);
    for (const run of later) expect(warmed.has(run)).toBe(true);
  });

  it('runs each shape `runs` times (first and last timed); a runs value out of range is refused', async () => {
    const pkg = await bucketPackage();
    const spy = new SpyBackend();
    await using runner = await Runner.open(pkg, {
      allowUnsigned: true,
      stateDir: state(),
      registry: spy.registry(),
      threads: 1,
      prewarm: { mode: 'always', runs: 3 },
    });
    expect(spy.runs()).toEqual([
      ...Array(3).fill('box-cpu 1x3x48x64'),
      ...Array(3).fill('line-cpu 1x3x16x96'),
      ...Array(3).fill('line-cpu 1x3x16x64'),
      ...Array(3).fill('line-cpu 1x3x16x32'),
    ]);
    const w = runner.opened.prewarm.linenet;
    expect(w.runs).toBe(3);
    for (const s of w.shapes) expect(s.lastMs).toBeGreaterThan(0);
    for (const runs of [0, 11, 1.5])
      expect(
        await codeOf(
          Runner.open(pkg, {
            allowUnsigned: true,
            stateDir: state(),
            registry: spy.registry(),
            prewarm: { mode: 'always', runs },
          }),
        ),
      ).toBe('E_RUN_LOAD');
  });

  it('on an accelerator a model’s shapes warm `parallel` at once (default 4) and the models together; 1 keeps them in turn', async () => {
    /** The most runs in flight at once while opening with `prewarm`. */
    const inFlight = async (prewarm: object) => {
      const spy = new SpyBackend('cuda');
      let now = 0;
      let most = 0;
      const registry = new BackendRegistry();
      registry.register(
        {
          name: spy.name,
          runtimes: spy.runtimes,
          init: () => spy.init(),
          async load(...a: Parameters<SpyBackend['load']>) {
            const s = await spy.load(...a);
            return {
              ...s,
              run: async (feeds: Parameters<typeof s.run>[0]) => {
                most = Math.max(most, ++now);
                try {
                  return await s.run(feeds);
                } finally {
                  now--;
                }
              },
            };
          },
        },
        100,
      );
      await using runner = await Runner.open(await bucketPackage(), {
        allowUnsigned: true,
        stateDir: state(),
        registry,
        threads: 1,
        prewarm: { mode: 'always', ...prewarm },
      });
      // every shape warmed, reported largest first whatever finished first
      expect(runner.opened.prewarm.linenet.shapes.map((x) => x.dims.X[3])).toEqual([96, 64, 32]);
      expect(spy.runs()).toHaveLength(4);
      return most;
    };
    // linenet's 3 shapes and boxnet's 1
    expect(await inFlight({})).toBe(4);
    expect(await inFlight({ parallel: 2 })).toBe(3);
    expect(await inFlight({ parallel: 1 })).toBe(1);
    for (const parallel of [0, 17, 1.5])
      expect(
        await codeOf(
          Runner.open(await bucketPackage(), {
            allowUnsigned: true,
            stateDir: state(),
            registry: new SpyBackend('cuda').registry(),
            prewarm: { mode: 'always', parallel },
          }),
        ),
      ).toBe('E_RUN_LOAD');
  });

  it('by default a CPU host loads nothing in open (models still load on the first run)', async () => {
    const pkg = await bucketPackage();
    const spy = new SpyBackend();
    await using runner = await Runner.open(pkg, { allowUnsigned: true, stateDir: state(), registry: spy.registry() });
    expect(spy.events).toEqual([]);
    expect(runner.opened.prewarm).toEqual({});
    const r = await runner.run({ image: await png(50, 50) });
    expect(r.timings.load).toBeGreaterThan(0);
    // the two models sit in independent branches of the pipeline, which run side by side
    expect([...spy.runs()].sort()).toEqual(['box-cpu 1x3x48x64', 'line-cpu 1x3x16x32']);
  });

  it('what open warms and the sessions are asked for: no CUDA graphs without pre-warm, one-shot sessions for a one-shot runner', async () => {
    const pkg = await bucketPackage();
    // options → SessionOptions.cudaGraphs, SessionOptions.oneShot, models warmed in open (auto warms
    // nothing on this CPU host; the spy's sessions say they run on cuda)
    for (const [options, cudaGraphs, oneShot, warmed] of [
      [{ prewarm: 'off' }, false, undefined, false],
      [{ prewarm: 'always' }, undefined, undefined, true],
      [{ oneShot: true }, false, true, false],
      [{ oneShot: true, prewarm: 'always' }, undefined, true, true],
      [{}, undefined, undefined, false],
    ] as const) {
      const spy = new SpyBackend('cuda');
      await using runner = await Runner.open(pkg, {
        allowUnsigned: true,
        stateDir: state(),
        registry: spy.registry(),
        ...options,
      });
      expect(Object.keys(runner.opened.prewarm).length > 0).toBe(warmed);
      await runner.run({ image: await png(50, 50) });
      expect(spy.loadOptions.length).toBe(2);
      for (const o of spy.loadOptions) expect([o.cudaGraphs, o.oneShot]).toEqual([cudaGraphs, oneShot]);
    }
  });

  it('auto loads a model chosen for a GPU in open; ended on the CPU it is not warmed, and says so', async () => {
    const registry = new BackendRegistry();
    registry.register(new OnnxruntimeBackend({ attemptProviders: ['cuda'] }), 100);
    await using runner = await Runner.open('fixtures/dist/multi-variant.xpkg', {
      trust: TRUST,
      stateDir: state(),
      host: loadHostProfile('fixtures/hosts/h100.json'),
      registry,
      threads: 1,
    });
    const p = runner.opened.prewarm['add-one'];
    expect(p).toMatchObject({ provider: 'cpu', shapes: [], skipped: { code: 'cpu' } });
    expect(runner.opened.ms.load).toBeGreaterThan(0);
    const r = await runner.run({ x: { type: 'float32', dims: [2], data: new Float32Array([1, 2]) } });
    expect(r.timings.load).toBeUndefined();
    expect(r.fallbacks['add-one'][0]).toMatchObject({ variant: 'cuda-fp16', code: 'E_RUN_LOAD' });
  });

  it('follows the pipeline of the variants loaded: the OCR GPU variants’ patches make cls one shape, rec 17', async () => {
    // the GPU variants, run on the CPU provider; a GPU host profile makes selection choose them
    await using ocr = await Runner.open('fixtures/dist/paddleocr-v4.xpkg', {
      trust: TRUST,
      stateDir: state(),
      host: loadHostProfile('fixtures/hosts/h100.json'),
      registry: gpuVariantsOnCpu().registry,
      threads: 1,
      prewarm: { mode: 'always', maxShapes: 1 },
    });
    const p = ocr.opened.prewarm;
    expect(p.cls.shapes.map((x) => x.dims)).toEqual([{ x: [32, 48, 192, 3] }]);
    expect(p.rec.skipped).toEqual({ code: 'too-many-shapes', reason: 'x: 17 shapes, above the limit of 1' });
    expect(p.det.skipped?.code).toBe('too-many-shapes');
  });

  it('leaves models with open or too many shapes as they are, with the reason, and honours maxShapes', async () => {
    const spy = new SpyBackend();
    await using ocr = await Runner.open('fixtures/dist/paddleocr-v4.xpkg', {
      trust: TRUST,
      stateDir: state(),
      registry: spy.registry(),
      threads: 1,
      prewarm: 'always',
    });
    const p = ocr.opened.prewarm;
    expect(p.det.skipped).toEqual({ code: 'too-many-shapes', reason: 'x: 900 shapes, above the limit of 32' });
    expect(p.cls.skipped?.code).toBe('open-shape');
    expect(p.rec.skipped?.code).toBe('too-many-shapes');
    expect(spy.runs()).toEqual([]);
    const pkg = await bucketPackage();
    const spy2 = new SpyBackend();
    await using capped = await Runner.open(pkg, {
      allowUnsigned: true,
      stateDir: state(),
      registry: spy2.registry(),
      threads: 1,
      prewarm: { mode: 'always', maxShapes: 2 },
    });
    expect(capped.opened.prewarm.linenet.skipped?.code).toBe('too-many-shapes');
    expect(spy2.runs()).toEqual(['box-cpu 1x3x48x64']);
    expect(
      await codeOf(
        Runner.open(pkg, { allowUnsigned: true, stateDir: state(), prewarm: { mode: 'always', maxShapes: -1 } }),
      ),
    ).toBe('E_RUN_LOAD');
  });
});

describe('one session per input shape', () => {
  it('a model gets a session per shape up to the limit; further shapes share the first; all give the same outputs', async () => {
    const backend = new OnnxruntimeBackend({ shapeSessions: 'always', placement: 'never' });
    await backend.init();
    const variant = { id: 'id', runtime: 'onnxruntime', precision: 'fp32', files: ['m.onnx'] } as Variant;
    const s = await backend.load(variant, new Map([['m.onnx', identity(2)]]), { threads: 1, shapeSessions: 3 });
    try {
      const run = async (w: number) => {
        const data = Float32Array.from({ length: 2 * w }, (_, i) => i);
        const out = await s.run({ X: { type: 'float32', dims: [2, w], data } });
        expect([...(out.Y.data as Float32Array)]).toEqual([...data]);
      };
      const counts: number[] = [];
      for (const w of [5, 6, 5, 7, 8, 6, 8]) {
        await run(w);
        counts.push(s.sessions);
      }
      // 5 → the first session, 6 and 7 their own, 8 over the limit shares the first
      expect(counts).toEqual([1, 2, 2, 3, 3, 3, 3]);
    } finally {
      await s.release();
    }
    expect(s.sessions).toBe(0);
  });

  it('pre-warming in open leaves one session per pre-warmed shape', async () => {
    const registry = new BackendRegistry();
    registry.register(new OnnxruntimeBackend({ shapeSessions: 'always', placement: 'never' }), 100);
    await using runner = await Runner.open(await bucketPackage(), {
      allowUnsigned: true,
      stateDir: state(),
      registry,
      threads: 1,
      prewarm: 'always',
    });
    expect(runner.opened.prewarm.linenet.sessions).toBe(3);
    expect(runner.opened.prewarm.boxnet.sessions).toBe(1);
    // on the CPU provider (the default), one session whatever the shapes
    await using cpu = await Runner.open(await bucketPackage(), {
      allowUnsigned: true,
      stateDir: state(),
      threads: 1,
      prewarm: 'always',
    });
    expect(cpu.opened.prewarm.linenet.sessions).toBe(1);
  });
});
