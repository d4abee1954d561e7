/**
 * What decides whether a model's sessions run as CUDA graphs, tested without a GPU: which models
 * have data-shaped ops (never graphs), the symbolic dimensions a per-shape session fixes, the
 * session pool when the first session takes no shape, the options handed to xpkg's binding, and the
 * binding's fixed dimensions and its refusal of a graph on the CPU provider. The graphs themselves
 * run on the GPU machine (bench/gpu/node-profile.ts, the GPU suite).
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PackageReader } from '../pack/reader.js';
import {
  capiOptions,
  cudaGraphsFor,
  cudaTuning,
  keyValues,
  oneShotTuning,
  searchAsked,
  sessionTuning,
} from '../runner/backends/capi-options.js';
import { dataShapedOps } from '../runner/backends/onnx-inputs.js';
import { ortSessionOptions } from '../runner/backends/onnxruntime.js';
import { CAPI_BUILT, createCapiSession, loadCapi } from '../runner/backends/ort-capi.js';
import { freeDimsOf, ShapeSessions, shapeKey } from '../runner/backends/shape-sessions.js';
import { ortBinding } from '../runner/gpu-install.js';

async function modelOf(pkg: string, file: string): Promise<Uint8Array> {
  const r = await PackageReader.open(pkg);
  try {
    return await r.readVerified(file);
  } finally {
    await r.close();
  }
}

const variant = (p: string) =>
  ({
    id: 'm',
    runtime: 'onnxruntime',
    precision: 'fp32',
    files: ['m'],
    requires: { executionProviders: [p] },
  }) as never;

describe('data-shaped ops', () => {
  it('finds the ops whose output shapes follow values in the shipped GPU models, and none where shapes are fixed', async () => {
    const ocr = 'fixtures/dist/paddleocr-v4.xpkg';
    expect(dataShapedOps(await modelOf(ocr, 'models/det/det-gpu-fp32.onnx'))).toEqual(['Compress']);
    expect(dataShapedOps(await modelOf(ocr, 'models/cls/cls-gpu-fp32.onnx'))).toEqual([]);
    expect(dataShapedOps(await modelOf(ocr, 'models/rec/rec-gpu-fp32.onnx'))).toEqual([]);
    expect(dataShapedOps(await modelOf(ocr, 'models/rec/rec-gpu-fp16.onnx'))).toEqual([]);
    // the detector's GPU model returns its best rows (fixed shape), not NonMaxSuppression's
    expect(dataShapedOps(await modelOf('fixtures/dist/detector.xpkg', 'model-cuda-fp16.onnx'))).toEqual([]);
  });

  it('decide which models get graph sessions: CUDA, tuned so, the binding loading, no data-shaped op', async () => {
    const ocr = 'fixtures/dist/paddleocr-v4.xpkg';
    const cls = await modelOf(ocr, 'models/cls/cls-gpu-fp32.onnx');
    const det = await modelOf(ocr, 'models/det/det-gpu-fp32.onnx');
    const on = cudaTuning({}, {});
    const asked: string[] = [];
    const binding = (loads: boolean) => () => (asked.push('binding'), loads);
    const want = (provider: string, model: Uint8Array, tuning = on, loads = true) =>
      cudaGraphsFor({ provider, tuning, binding: binding(loads), model });
    expect(want('cuda', cls)).toBe(true);
    // the OCR detector's sparse map (Compress): never, though everything else says yes
    expect(want('cuda', det)).toBe(false);
    expect(want('cuda', cls, cudaTuning({}, { XPKG_ORT_CUDA_GRAPH: '0' }))).toBe(false);
    expect(want('cuda', cls, on, false)).toBe(false);
    asked.length = 0;
    expect(want('cpu', cls)).toBe(false);
    expect(want('webgpu', cls)).toBe(false);
    // the binding is not loaded to decide for another provider
    expect(asked).toEqual([]);
  });

  it('an unreadable model counts as data-shaped', () => {
    expect(dataShapedOps(new Uint8Array([0xff, 0xff, 0xff]))).toEqual(['?']);
    expect(dataShapedOps(new Uint8Array(0))).toEqual(['?']);
  });
});

describe('one-shot sessions', () => {
  it('take cuDNN’s default algorithms and no graph, unless a search was asked for', () => {
    const t = cudaTuning({}, {});
    expect(t.convAlgoSearch).toBe('HEURISTIC');
    expect(oneShotTuning(t, false)).toEqual({ ...t, convAlgoSearch: 'DEFAULT', cudaGraph: false });
    const exhaustive = cudaTuning({ convAlgoSearch: 'EXHAUSTIVE' }, {});
    expect(oneShotTuning(exhaustive, true)).toMatchObject({ convAlgoSearch: 'EXHAUSTIVE', cudaGraph: false });
    expect(searchAsked({}, {})).toBe(false);
    expect(searchAsked({ convAlgoSearch: 'HEURISTIC' }, {})).toBe(true);
    expect(searchAsked({}, { XPKG_ORT_CONV_SEARCH: 'HEURISTIC' })).toBe(true);
    expect(searchAsked({}, { XPKG_ORT_CONV_SEARCH: 'bogus' })).toBe(false);
    const o = capiOptions(ortSessionOptions(variant('cuda'), {}, ['cuda', 'cpu']), oneShotTuning(t, false), {
      freeDims: [['N', 1]],
      graph: true,
    });
    expect(o.providerOptions).toContainEqual(['cudnn_conv_algo_search', 'DEFAULT']);
    expect(o.cudaGraph).toBeUndefined();
  });
});

describe('fixed dimensions of a per-shape session', () => {
  it('gives each symbol its size in the key; a symbol met with two sizes, and numbered dims, are left out', () => {
    expect(freeDimsOf('8x48x320x3', [['N', 48, 'W', 3]])).toEqual([
      ['N', 8],
      ['W', 320],
    ]);
    expect(
      freeDimsOf('2x5;2x7', [
        ['B', 'S'],
        ['B', -1],
      ]),
    ).toEqual([
      ['B', 2],
      ['S', 5],
    ]);
    expect(
      freeDimsOf('2x5;3x5', [
        ['B', 5],
        ['B', 5],
      ]),
    ).toEqual([]);
    expect(freeDimsOf('4', [undefined])).toEqual([]);
  });
});

describe('ShapeSessions without a shape for the first session', () => {
  it('makes a session for every shape, the first one serving only shapes over the limit', async () => {
    const made: string[] = [];
    const pool = new ShapeSessions(
      { id: 'first', release: async () => {} },
      async (key) => (made.push(key), { id: key, release: async () => {} }),
      3,
      false,
    );
    expect((await pool.pick('a')).id).toBe('a');
    expect((await pool.pick('b')).id).toBe('b');
    expect((await pool.pick('a')).id).toBe('a');
    expect((await pool.pick('c')).id).toBe('first');
    expect(made).toEqual(['a', 'b']);
    expect(pool.all().map((s) => s.id)).toEqual(['first', 'a', 'b']);
  });
});

describe('the options of a per-shape session', () => {
  const cuda = ortSessionOptions(variant('cuda'), {}, ['cuda', 'cpu']);
  it('CUDA: fixed dimensions and a graph on its device; off through XPKG_ORT_CUDA_GRAPH=0 or the tuning', () => {
    const shape = { freeDims: [['N', 8] as [string, number]], graph: true };
    expect(capiOptions(cuda, cudaTuning({}, {}), shape)).toMatchObject({
      freeDims: [['N', '8']],
      cudaGraph: true,
      deviceId: 0,
    });
    const off = capiOptions(cuda, cudaTuning({}, { XPKG_ORT_CUDA_GRAPH: '0' }), shape);
    expect(off.freeDims).toEqual([['N', '8']]);
    expect(off.cudaGraph).toBeUndefined();
    expect(capiOptions(cuda, cudaTuning({ cudaGraph: false }, {}), shape).cudaGraph).toBeUndefined();
    // a session made for no one shape (the first) never runs as a graph, nor one of a model the
    // backend keeps off graphs (data-shaped ops): its dimensions are still fixed
    expect(capiOptions(cuda, cudaTuning({}, {})).cudaGraph).toBeUndefined();
    const noGraph = capiOptions(cuda, cudaTuning({}, {}), { freeDims: [['N', 8]], graph: false });
    expect(noGraph.cudaGraph).toBeUndefined();
    expect(noGraph.freeDims).toEqual([['N', '8']]);
  });

  it("a model's sessions: one-shot tuning, no graphs where the runner does not pre-warm", () => {
    const base = cudaTuning({}, {});
    const one = oneShotTuning(base, false);
    expect(sessionTuning(base, one, {})).toEqual(base);
    expect(sessionTuning(base, one, { oneShot: true })).toEqual(one);
    expect(sessionTuning(base, one, { cudaGraphs: false })).toEqual({ ...base, cudaGraph: false });
    expect(sessionTuning(base, one, { oneShot: true, cudaGraphs: false })).toEqual({ ...one, cudaGraph: false });
  });

  it('XPKG_ORT_CUDA_SYNC picks how host threads wait for the GPU; by default CUDA chooses, and CPU sessions never set it', () => {
    expect(capiOptions(cuda, cudaTuning({}, {})).cudaSchedule).toBeUndefined();
    expect(capiOptions(cuda, cudaTuning({}, { XPKG_ORT_CUDA_SYNC: 'blocking' })).cudaSchedule).toBe(4);
    expect(capiOptions(cuda, cudaTuning({}, { XPKG_ORT_CUDA_SYNC: 'yield' })).cudaSchedule).toBe(2);
    expect(capiOptions(cuda, cudaTuning({ sync: 'spin' }, {})).cudaSchedule).toBe(1);
    expect(cudaTuning({}, { XPKG_ORT_CUDA_SYNC: 'sleepy' }).sync).toBe('auto');
    const cpu = ortSessionOptions(variant('cpu'), {}, ['cpu']);
    expect(capiOptions(cpu, cudaTuning({ sync: 'blocking' }, {})).cudaSchedule).toBeUndefined();
  });

  it('XPKG_ORT_CUDA_OPTIONS adds CUDA provider options as given, XPKG_ORT_SESSION_CONFIG session config entries', () => {
    expect(keyValues('prefer_nhwc=1; no-equals ;a=b=c;=x')).toEqual([
      ['prefer_nhwc', '1'],
      ['a', 'b=c'],
    ]);
    const tuning = cudaTuning({}, { XPKG_ORT_CUDA_OPTIONS: 'prefer_nhwc=1' });
    expect(tuning.extra).toEqual([['prefer_nhwc', '1']]);
    expect(capiOptions(cuda, tuning).providerOptions.at(-1)).toEqual(['prefer_nhwc', '1']);
    expect(capiOptions(cuda, cudaTuning({}, {})).providerOptions.map(([k]) => k)).not.toContain('prefer_nhwc');
    expect(capiOptions(ortSessionOptions(variant('cpu'), {}, ['cpu']), tuning).providerOptions).toEqual([]);
    const before = process.env.XPKG_ORT_SESSION_CONFIG;
    process.env.XPKG_ORT_SESSION_CONFIG = 'session.intra_op.allow_spinning=1';
    try {
      expect(capiOptions(cuda).config).toContainEqual(['session.intra_op.allow_spinning', '1']);
    } finally {
      if (before === undefined) delete process.env.XPKG_ORT_SESSION_CONFIG;
      else process.env.XPKG_ORT_SESSION_CONFIG = before;
    }
    expect(capiOptions(cuda).config).not.toContainEqual(['session.intra_op.allow_spinning', '1']);
  });

  it('CPU: fixed dimensions only', () => {
    const cpu = ortSessionOptions(variant('cpu'), {}, ['cpu']);
    const o = capiOptions(cpu, cudaTuning({}, {}), { freeDims: [['W', 320]] });
    expect(o.freeDims).toEqual([['W', '320']]);
    expect(o.cudaGraph).toBeUndefined();
  });
});

describe.skipIf(!existsSync(CAPI_BUILT))('the binding: fixed dimensions, and graphs only on CUDA', () => {
  it('a recogniser session with its dimensions fixed gives the same outputs; a graph on the CPU provider is refused', async () => {
    const c = loadCapi(ortBinding().dir);
    if (!('capi' in c)) throw new Error(c.reason);
    const bytes = await modelOf('fixtures/dist/paddleocr-v4.xpkg', 'models/rec/rec-gpu-fp32.onnx');
    const cpu = ortSessionOptions(variant('cpu'), { threads: 1 }, ['cpu']);
    const plain = await createCapiSession(c.capi, bytes, capiOptions(cpu));
    const shapes = plain.inputMetadata.map((m) => m.shape as (number | string)[]);
    const dims = [2, 48, 160, 3];
    // the crops and each line's own width (the model masks its padding)
    const dimsOf = (n: string) => (n === 'widths' ? [2] : dims);
    const freeDims = freeDimsOf(shapeKey(plain.inputNames, dimsOf), shapes);
    expect(freeDims.length).toBeGreaterThan(0);
    const fixed = await createCapiSession(c.capi, bytes, capiOptions(cpu, cudaTuning({}, {}), { freeDims }));
    try {
      const data = new Uint8Array(dims.reduce((a, b) => a * b, 1));
      for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
      const widths = { type: 'int32', dims: [2], data: Int32Array.of(100, 160) };
      const feed = { x: { type: 'uint8', dims, data }, widths };
      expect(plain.inputNames).toEqual(['x', 'widths']);
      const [a, b] = await Promise.all([plain.run(feed), fixed.run(feed)]);
      expect(b).toEqual(a);
      expect(fixed.graphState()).toBe('off');
      // the fixed session refuses another width: its dimensions are fixed
      await expect(
        fixed.run({ x: { type: 'uint8', dims: [2, 48, 192, 3], data: new Uint8Array(2 * 48 * 192 * 3) }, widths }),
      ).rejects.toThrow();
      await expect(createCapiSession(c.capi, bytes, { ...capiOptions(cpu), cudaGraph: true })).rejects.toThrow(
        /cudaGraph needs the cuda provider/,
      );
    } finally {
      await plain.release();
      await fixed.release();
    }
  });
});
