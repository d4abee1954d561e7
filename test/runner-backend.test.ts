import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { generatedModels, prepare } from '../fixtures/multi-variant/build.js';
import { addOneFp16Model, addOneInt8Model, addOneModel, encodeModel, identityModel } from '../fixtures/onnx-tiny.js';
import { defaultRegistry } from '../runner/backends/index.js';
import {
  checkTensor,
  fromOrtTensor,
  OnnxruntimeBackend,
  type OrtInit,
  ortSessionOptions,
} from '../runner/backends/onnxruntime.js';
import { PROBE_MODEL_HEX } from '../runner/backends/probe-model.js';
import { BackendRegistry } from '../runner/backends/registry.js';
import { physicalCores } from '../runner/host-cpu.js';
import { runPipeline } from '../runner/pipeline/run.js';
import type { Tensor } from '../runner/types.js';
import { validateManifestSource } from '../spec/manifest.js';
import type { Variant } from '../spec/schema.js';
import { pipelineContext, pipelineManifest } from './helpers/pipeline.js';

const cpuVariant = (file: string, id = 'v'): Variant => ({
  id,
  runtime: 'onnxruntime',
  precision: 'fp32',
  files: [file],
});
const x = (values: number[]): Tensor => ({ type: 'float32', dims: [values.length], data: new Float32Array(values) });

describe('tiny ONNX models from the fixture encoder', () => {
  it('the probe model constant is exactly what the encoder writes', () => {
    expect(identityModel().toString('hex')).toBe(PROBE_MODEL_HEX);
  });

  it('onnxruntime itself runs every generated model', async () => {
    for (const [model, expected] of [
      [identityModel(), [0.5, -2, 7.25]],
      [addOneModel(), [1.5, -1, 8.25]],
      [addOneInt8Model(), [1.5, -1, 8.25]], // values on the 1/16 grid survive int8 quantisation exactly
      [addOneFp16Model(), [1.5, -1, 8.25]],
    ] as const) {
      const s = await ort.InferenceSession.create(model);
      const r = await s.run({ X: new ort.Tensor('float32', new Float32Array([0.5, -2, 7.25]), [3]) });
      expect(Array.from(r.Y.data as Float32Array)).toEqual(expected);
      await s.release();
    }
  });

  it('int8 model really quantises (values off the grid are rounded to 1/16)', async () => {
    const s = await ort.InferenceSession.create(addOneInt8Model());
    const r = await s.run({ X: new ort.Tensor('float32', new Float32Array([0.03, 100]), [2]) });
    // 0.03 rounds to 0 steps of 1/16; 100 saturates at 127 steps
    expect(Array.from(r.Y.data as Float32Array)).toEqual([1, 1 + 127 / 16]);
    await s.release();
  });

  it('an encoding mistake is caught by onnxruntime (the encoder is not trusted blindly)', async () => {
    const wrongOpset = encodeModel({
      name: 'g',
      nodes: [{ op: 'NoSuchOp', inputs: ['X'], outputs: ['Y'] }],
      inputs: [{ name: 'X', type: 'float32', shape: [1] }],
      outputs: [{ name: 'Y', type: 'float32', shape: [1] }],
    });
    // onnxruntime's own error (it has no code): it must name the unknown op, not fail for another reason.
    await expect(ort.InferenceSession.create(wrongOpset)).rejects.toThrow(/NoSuchOp/);
  });
});

describe('onnxruntime backend', () => {
  const backend = new OnnxruntimeBackend();
  let init: OrtInit;
  beforeAll(async () => {
    init = await backend.init();
  });

  it('init reports the version and only providers that load', async () => {
    expect(init.ok).toBe(true);
    expect(init.version).toBe(ort.env.versions.node);
    expect(init.providers?.[0]).toBe('cpu');
    const listed = ort.listSupportedBackends().map((b) => b.name);
    expect([...init.providers!, ...init.unavailable.map((u) => u.name)].sort()).toEqual(
      [...new Set(['cpu', ...listed])].sort(),
    );
    for (const u of init.unavailable) expect(u.reason.length).toBeGreaterThan(5);
    const bin = join('node_modules', 'onnxruntime-node', 'bin', 'napi-v6', process.platform, process.arch);
    if (process.platform === 'linux' && !existsSync(join(bin, 'libonnxruntime_providers_cuda.so'))) {
      expect(init.providers).not.toContain('cuda');
      expect(init.providers).not.toContain('tensorrt');
    }
  });

  it('loads from a Buffer and runs, with outputs as neutral tensors', async () => {
    const files = generatedModels();
    for (const [file, precision] of [
      ['models/add-one-fp32.onnx', 'fp32'],
      ['models/add-one-int8.onnx', 'int8'],
      ['models/add-one-fp16.onnx', 'fp16'],
    ] as const) {
      await using s = await backend.load({ ...cpuVariant(file, `v-${precision}`), precision }, files, {});
      expect(s.inputNames).toEqual(['X']);
      expect(s.outputNames).toEqual(['Y']);
      const out = await s.run({ X: x([1, 2, -3]) });
      expect(out.Y.type).toBe('float32');
      expect(out.Y.dims).toEqual([3]);
      expect(out.Y.data).toBeInstanceOf(Float32Array);
      expect(Array.from(out.Y.data as Float32Array)).toEqual([2, 3, -2]);
    }
  });

  it('reads a Buffer that is a view into a larger allocation (as archive entries are)', async () => {
    const model = addOneModel();
    const big = Buffer.alloc(model.length + 4096, 0xee);
    model.copy(big, 1000);
    const view = big.subarray(1000, 1000 + model.length);
    await using s = await backend.load(cpuVariant('m.onnx'), new Map([['m.onnx', view]]), { threads: 1 });
    expect(Array.from((await s.run({ X: x([41]) })).Y.data as Float32Array)).toEqual([42]);
  });

  it('sets session options deliberately', () => {
    const v = cpuVariant('m.onnx');
    expect(ortSessionOptions(v, {}, ['cpu'])).toEqual({
      executionProviders: ['cpu'],
      intraOpNumThreads: physicalCores(),
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      enableCpuMemArena: true,
      enableMemPattern: true,
      logSeverityLevel: 3,
      extra: { session: { 'intra_op.allow_spinning': '0' } },
    });
    expect(ortSessionOptions(v, { threads: 3, graphOptimization: 'basic' }, ['cpu'])).toMatchObject({
      intraOpNumThreads: 3,
      graphOptimizationLevel: 'basic',
    });
    const cuda: Variant = { ...v, requires: { executionProviders: ['tensorrt', 'cuda', 'cpu'] } };
    expect(ortSessionOptions(cuda, {}, ['cpu', 'cuda']).executionProviders).toEqual(['cuda', 'cpu']);
    expect(() => ortSessionOptions({ ...v, requires: { executionProviders: ['cuda'] } }, {}, ['cpu'])).toThrow(
      expect.objectContaining({ code: 'E_RUN_LOAD' }),
    );
    expect(() => ortSessionOptions(v, { threads: -1 }, ['cpu'])).toThrow(
      expect.objectContaining({ code: 'E_RUN_LOAD' }),
    );
  });

  it('refuses to load a corrupt buffer, a missing entry, or a provider that does not load', async () => {
    const corrupt = new Map([['m.onnx', Buffer.from('\x08\x07garbage')]]);
    await expect(backend.load(cpuVariant('m.onnx'), corrupt, {})).rejects.toMatchObject({ code: 'E_RUN_LOAD' });
    await expect(backend.load(cpuVariant('m.onnx'), new Map(), {})).rejects.toMatchObject({ code: 'E_RUN_LOAD' });
    const cudaOnly: Variant = { ...cpuVariant('m.onnx'), requires: { executionProviders: ['cuda'] } };
    if (!init.providers!.includes('cuda'))
      await expect(backend.load(cudaOnly, new Map([['m.onnx', addOneModel()]]), {})).rejects.toMatchObject({
        code: 'E_RUN_LOAD',
      });
    await expect(
      new OnnxruntimeBackend().load(cpuVariant('m.onnx'), new Map([['m.onnx', addOneModel()]]), {}),
    ).rejects.toMatchObject({ code: 'E_RUN_BACKEND' });
  });

  it('validates feeds before native code sees them', async () => {
    const s = await backend.load(cpuVariant('m.onnx'), new Map([['m.onnx', addOneModel()]]), { threads: 1 });
    await expect(s.run({})).rejects.toMatchObject({ code: 'E_RUN_INPUT' });
    await expect(s.run({ X: x([1]), Z: x([1]) })).rejects.toMatchObject({ code: 'E_RUN_INPUT' });
    await expect(s.run({ X: { type: 'float32', dims: [2], data: new Float32Array(3) } })).rejects.toMatchObject({
      code: 'E_RUN_INPUT',
    });
    await expect(s.run({ X: { type: 'float32', dims: [2], data: new Int32Array(2) } })).rejects.toMatchObject({
      code: 'E_RUN_INPUT',
    });
    // right shape and type for the checks, wrong element type for the model: onnxruntime's own error
    await expect(s.run({ X: { type: 'int32', dims: [1], data: new Int32Array(1) } })).rejects.toMatchObject({
      code: 'E_RUN_BACKEND',
    });
    await s.release();
    await s.release(); // idempotent
    await expect(s.run({ X: x([1]) })).rejects.toMatchObject({ code: 'E_RUN_BACKEND' });
  });

  it('declares its outputs; an empty batch skips the model and gives outputs of the declared type and rank', async () => {
    // boxes [N, 4] float32 in, their int64 rounding [N, 4] out
    const model = encodeModel({
      name: 'boxes',
      nodes: [{ op: 'Cast', inputs: ['X'], outputs: ['Y'], intAttrs: { to: 7 } }],
      inputs: [{ name: 'X', type: 'float32', shape: ['N', 4] }],
      outputs: [{ name: 'Y', type: 'int64', shape: ['N', 4] }],
    });
    await using s = await backend.load(cpuVariant('m.onnx'), new Map([['m.onnx', model]]), { threads: 1 });
    expect(s.outputShapes).toEqual([{ name: 'Y', type: 'int64', shape: ['N', 4] }]);
    const manifest = pipelineManifest({
      name: 'empty',
      tensors: ['x'],
      outputs: ['y'],
      outputType: 'tensor',
      models: [{ id: 'm', variants: [cpuVariant('m.onnx')] }],
      steps: [{ op: 'infer', model: 'm', params: { inputs: { X: 'x' }, outputs: { Y: 'y' } } }],
    });
    manifest.inputs = manifest.inputs.filter((i) => i.name !== 'image'); // a tensor package
    const ctx = pipelineContext(manifest, { session: async () => s });
    const empty = await runPipeline(ctx, { x: { type: 'float32', dims: [0, 4], data: new Float32Array(0) } });
    expect(empty.outputs.y).toMatchObject({ type: 'int64', dims: [0, 4] });
    expect((empty.outputs.y as Tensor).data).toBeInstanceOf(BigInt64Array);
    // the same type and rank as a run of one box
    const one = await runPipeline(ctx, { x: { type: 'float32', dims: [1, 4], data: new Float32Array([1, 2, 3, 4]) } });
    expect(one.outputs.y).toMatchObject({ type: 'int64', dims: [1, 4] });
  });

  it('adapts ort tensors without copying', () => {
    const data = new Float32Array([1, 2, 3, 4]);
    const t = fromOrtTensor('y', new ort.Tensor('float32', data, [2, 2]));
    expect(t.data).toBe(data);
    const half = new Uint16Array([0x3c00]);
    expect(fromOrtTensor('h', new ort.Tensor('float16', half, [1])).data).toBe(half);
    expect(() => fromOrtTensor('d', new ort.Tensor('float64', new Float64Array(1), [1]))).toThrow(
      expect.objectContaining({ code: 'E_RUN_BACKEND' }),
    );
    expect(() => checkTensor('b', { type: 'bool', dims: [2], data: new Uint8Array(2) })).not.toThrow();
    expect(() => checkTensor('i', { type: 'int64', dims: [1], data: new Int32Array(1) })).toThrow(
      expect.objectContaining({ code: 'E_RUN_INPUT' }),
    );
  });
});

describe('backend registry', () => {
  it('the default registry has onnxruntime-node at priority 100, initialised once', async () => {
    const reg = defaultRegistry();
    expect(reg).toBe(defaultRegistry());
    const a = await reg.resolve('onnxruntime');
    const b = await reg.resolve('onnxruntime');
    expect(a.backend.name).toBe('onnxruntime-node');
    expect(b.init).toBe(a.init); // the same init result object: init ran once
    const status = await reg.status();
    expect(status.map((s) => [s.name, s.priority, s.init.ok])).toEqual([['onnxruntime-node', 100, true]]);
  });

  it('a failing higher-priority backend is recorded and the next one is used', async () => {
    const reg = new BackendRegistry();
    const real = new OnnxruntimeBackend();
    const absent = new OnnxruntimeBackend({
      name: 'onnxruntime-gpu-build',
      module: 'onnxruntime-node-gpu-not-installed',
    });
    reg.register(real, 10);
    reg.register(absent, 50);
    expect(reg.backendsFor('onnxruntime').map((b) => b.name)).toEqual(['onnxruntime-gpu-build', 'onnxruntime-node']);
    const r = await reg.resolve('onnxruntime');
    expect(r.backend).toBe(real);
    const status = await reg.status();
    expect(status.find((s) => s.name === 'onnxruntime-gpu-build')?.init).toMatchObject({
      ok: false,
      reason: expect.stringContaining('onnxruntime-node-gpu-not-installed'),
    });
  });

  it('reports every failure together when no backend initialises', async () => {
    const reg = new BackendRegistry();
    reg.register(new OnnxruntimeBackend({ name: 'one', module: 'missing-runtime-one' }), 2);
    reg.register(new OnnxruntimeBackend({ name: 'two', module: 'missing-runtime-two' }), 1);
    const err = await reg.resolve('onnxruntime').catch((e) => e);
    expect(err.code).toBe('E_RUN_BACKEND');
    expect(err.detail.failures.map((f: { backend: string }) => f.backend)).toEqual(['one', 'two']);
    await expect(reg.resolve('tensorrt')).rejects.toMatchObject({
      code: 'E_RUN_BACKEND',
      detail: { runtime: 'tensorrt' },
    });
  });

  it('refuses a second, different backend under a taken name; re-registering updates priority', () => {
    const reg = new BackendRegistry();
    const b = new OnnxruntimeBackend();
    reg.register(b, 1);
    reg.register(b, 7);
    expect(() => reg.register(new OnnxruntimeBackend(), 3)).toThrow(expect.objectContaining({ code: 'E_RUN_BACKEND' }));
    expect(() => reg.register(new OnnxruntimeBackend({ name: 'x' }), Number.NaN)).toThrow(
      expect.objectContaining({ code: 'E_RUN_BACKEND' }),
    );
    expect(reg.runtimes()).toEqual(['onnxruntime']);
  });
});

describe('multi-variant fixture source', () => {
  it('prepare() writes a valid source folder whose ONNX files load', async () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'xpkg-mv-'));
    await prepare(dir);
    const m = validateManifestSource(JSON.parse(readFileSync(join(dir, 'xpkg.json'), 'utf8')));
    const files = m.models.flatMap((x) => x.variants.flatMap((v) => v.files));
    for (const f of files) expect(existsSync(join(dir, f))).toBe(true);
    for (const f of files.filter((f) => f.endsWith('.placeholder')))
      expect(readFileSync(join(dir, f), 'utf8')).toMatch(/NOT a real .* model/);
    for (const f of files.filter((f) => f.endsWith('.onnx'))) {
      const s = await ort.InferenceSession.create(readFileSync(join(dir, f)));
      await s.release();
    }
  });
});
