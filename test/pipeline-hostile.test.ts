/**
 * Hostile packages against the pipeline: signed packages (fixture key) whose steps, params or models
 * are made to crash, exhaust memory or quietly return wrong values. Each ends in an error with a
 * stable code, and the runner still runs the next request.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { encodeModel } from '../fixtures/onnx-tiny.js';
import { shapeSummary } from '../runner/pipeline/shapes.js';
import type { Runner, RunnerOptions } from '../runner/runner.js';
import { codeOf } from './helpers/errors.js';
import { cleanup, manifest, oneOp, openTrusted, signedPackage } from './helpers/hostile-pkg.js';

afterAll(cleanup);

const x = (name = 'x') => ({ name, type: 'tensor', dtype: 'float32' });
const image = { name: 'image', type: 'image' };
const T = (dims: number[], data: ArrayLike<number>) => ({ type: 'float32', dims, data: Float32Array.from(data) });
const pixels = { data: new Uint8Array(8 * 8 * 3).fill(100), width: 8, height: 8, channels: 3 };
const ident = (shape: (number | string)[]) =>
  oneOp('Identity', { name: 'X', type: 'float32', shape }, { name: 'Y', type: 'float32', shape });
const infer = (extra: Record<string, unknown> = {}) => ({
  op: 'infer',
  model: 'net',
  params: { inputs: 'x', outputs: 'y', ...extra },
});
const decode = (extra: Record<string, unknown> = {}) => ({
  op: 'decode-image',
  params: { input: 'image', output: 'img', ...extra },
});
const vocabulary = { assets: [{ id: 'v', path: 'assets/v.txt', kind: 'vocabulary' }] };

/** A signed package of `steps` around model `net`, opened. */
async function open(
  o: { steps: unknown[]; outputs: unknown[]; inputs?: unknown[]; assets?: unknown[] },
  files: Record<string, string | Uint8Array>,
  options: RunnerOptions = {},
): Promise<Runner> {
  const m = manifest({ inputs: o.inputs ?? [x()], outputs: o.outputs, steps: o.steps, assets: o.assets });
  return openTrusted(await signedPackage(m, files), options);
}

/** The error's detail (step index, native code…), or null when the run succeeds. */
async function detailOf(p: Promise<unknown>): Promise<Record<string, unknown> | null> {
  try {
    await p;
    return null;
  } catch (e) {
    return (e as { detail?: Record<string, unknown> }).detail ?? {};
  }
}

describe('infer: a model whose outputs can not be joined along the batch', () => {
  it('is refused when maxBatch splits the batch, instead of a tensor whose dims disagree with its data', async () => {
    // Flatten(axis 0) turns [n, 2] into [1, 2n]: each chunk's output is one row, not its items
    const flatten = oneOp(
      'Flatten',
      { name: 'X', type: 'float32', shape: ['N', 2] },
      { name: 'Y', type: 'float32', shape: [1, 'M'] },
      { axis: 0 },
    );
    await using r = await open(
      { steps: [infer({ maxBatch: 2 })], outputs: [{ name: 'y', type: 'tensor' }] },
      { 'models/net.onnx': flatten },
    );
    const run = (n: number) => r.run({ x: T([n, 2], new Float32Array(2 * n)) });
    expect(await codeOf(run(5))).toBe('E_RUN_PIPELINE');
    expect((await detailOf(run(5)))?.step).toBe(0);
    // one chunk is the model's own answer, and the runner still runs
    expect(((await run(2)).outputs.y as { dims: number[] }).dims).toEqual([1, 4]);
  });
});

describe("the caller's tensors", () => {
  it('dims that disagree with the data, or an unknown dtype, are E_RUN_INPUT before any step runs', async () => {
    await using r = await open(
      {
        steps: [{ op: 'argmax', params: { input: 'x', output: 'm' } }, infer()],
        outputs: [{ name: 'm', type: 'mask' }],
      },
      { 'models/net.onnx': ident(['A', 'B', 'C', 'D']) },
    );
    expect(await codeOf(r.run({ x: T([1, 3, 400, 400], [1, 2, 3, 4]) }))).toBe('E_RUN_INPUT');
    expect(await codeOf(r.run({ x: T([1, 3, 2, 1e300], [1, 2, 3, 4]) }))).toBe('E_RUN_INPUT');
    const proto = { type: 'constructor', dims: [1, 1, 2, 2], data: new Float32Array(4) };
    expect(await codeOf(r.run({ x: proto }))).toBe('E_RUN_INPUT');
    // two channels: one float channel has no class to pick (argmax refuses it)
    expect(await codeOf(r.run({ x: T([1, 2, 2, 2], [0, 1, 2, 3, 3, 2, 1, 0]) }))).toBe('OK');
  });
});

describe("a kernel refusing what a package's model made", () => {
  it('is E_RUN_PIPELINE at the step (the native code in detail), not a bare native error', async () => {
    await using r = await open(
      {
        steps: [infer(), { op: 'detect-decode', params: { input: 'y', output: 'b', layout: 'attrs-first' } }],
        outputs: [{ name: 'b', type: 'boxes' }],
      },
      { 'models/net.onnx': ident([1, 'A', 'B']) },
    );
    // 2 attributes per anchor: no class scores
    const e = r.run({ x: T([1, 2, 2], [1, 1, 1, 1]) });
    expect(await codeOf(e)).toBe('E_RUN_PIPELINE');
    expect(await detailOf(r.run({ x: T([1, 2, 2], [1, 1, 1, 1]) }))).toMatchObject({
      step: 1,
      native: 'E_NATIVE_ARGUMENT',
    });
    expect(await codeOf(r.run({ x: T([1, 6, 1], [4, 4, 2, 2, 0.9, 0.1]) }))).toBe('OK');
  });
});

describe('the budget', () => {
  it('counts crop-regions’ list whole: many crops each under maxPixels are E_RUN_BUDGET before cutting', async () => {
    const boxes: number[] = [];
    for (let i = 0; i < 60; i++) boxes.push(0, 0, 90, 90 + i / 1000, 0.9 - i / 1000);
    await using r = await open(
      {
        inputs: [x(), image],
        steps: [
          infer(),
          decode(),
          { op: 'nms', params: { input: 'y', output: 'b', iouThreshold: 1 } },
          { op: 'crop-regions', params: { image: 'img', regions: 'b', output: 'c' } },
        ],
        outputs: [{ name: 'c', type: 'json' }],
      },
      { 'models/net.onnx': ident(['N', 5]) },
      { budget: { maxPixels: 10_000, maxTensorBytes: 100_000 } },
    );
    const run = (n: number) => r.run({ x: T([n, 5], boxes.slice(0, 5 * n)), image: pixels });
    expect(await codeOf(run(60))).toBe('E_RUN_BUDGET');
    expect(await detailOf(run(60))).toMatchObject({ step: 3, limit: 'maxTensorBytes' });
    expect(await codeOf(run(1))).toBe('OK');
  });
});

describe('validation at open', () => {
  it('a step writing one name twice is E_RUN_PIPELINE (which value a reader saw was an accident)', async () => {
    const two = encodeModel({
      name: 'two',
      nodes: [
        { op: 'Identity', inputs: ['X'], outputs: ['Y'] },
        { op: 'Neg', inputs: ['X'], outputs: ['Z'] },
      ],
      inputs: [{ name: 'X', type: 'float32', shape: ['N'] }],
      outputs: [
        { name: 'Y', type: 'float32', shape: ['N'] },
        { name: 'Z', type: 'float32', shape: ['N'] },
      ],
    });
    const opened = open(
      { steps: [infer({ outputs: { Y: 'y', Z: 'y' } })], outputs: [{ name: 'y', type: 'tensor' }] },
      { 'models/net.onnx': two },
    );
    expect(await codeOf(opened)).toBe('E_RUN_PIPELINE');
  });

  it('preprocess or crop-batch with 2 means or stds (1 or 3 channels) is E_RUN_PIPELINE', async () => {
    const steps = (op: Record<string, unknown>) => ({
      inputs: [x(), image],
      steps: [infer(), decode(), op],
      outputs: [{ name: 't', type: 'tensor' }],
    });
    const files = { 'models/net.onnx': ident(['N']) };
    const pre = { op: 'preprocess', params: { input: 'img', output: 't', mode: 'fixed', width: 4, height: 4 } };
    expect(await codeOf(open(steps({ ...pre, params: { ...pre.params, std: [1, 2] } }), files))).toBe('E_RUN_PIPELINE');
    const crop = { op: 'crop-batch', params: { image: 'img', regions: 'y', output: 't', height: 4, mean: [0, 0] } };
    expect(await codeOf(open(steps(crop), files))).toBe('E_RUN_PIPELINE');
  });
});

describe('mean and std at run', () => {
  it('crop-batch with 3 means on a grey image is E_RUN_PIPELINE, not the first mean alone', async () => {
    await using r = await open(
      {
        inputs: [x(), image],
        steps: [
          infer(),
          decode({ channels: 1 }),
          { op: 'nms', params: { input: 'y', output: 'b', iouThreshold: 0.5 } },
          { op: 'crop-batch', params: { image: 'img', regions: 'b', output: 't', height: 4, mean: [0.1, 0.2, 0.3] } },
        ],
        outputs: [{ name: 't', type: 'tensor' }],
      },
      { 'models/net.onnx': ident(['N', 5]) },
    );
    const run = () => r.run({ x: T([1, 5], [0, 0, 4, 4, 1]), image: pixels });
    expect(await codeOf(run())).toBe('E_RUN_PIPELINE');
    expect((await detailOf(run()))?.step).toBe(3);
  });
});

describe('a model that returns NaN or a large batch', () => {
  it('top-k: NaN scores are E_RUN_PIPELINE; 300 000 rows classify (no call-stack overflow)', async () => {
    await using r = await open(
      {
        steps: [infer(), { op: 'top-k', params: { input: 'y', output: 'c', k: 2, softmax: true } }],
        outputs: [{ name: 'c', type: 'classification' }],
      },
      { 'models/net.onnx': ident(['N', 'C']) },
    );
    expect(await codeOf(r.run({ x: T([1, 3], [Number.NaN, 1, 2]) }))).toBe('E_RUN_PIPELINE');
    expect(await codeOf(r.run({ x: T([1, 3], [Number.POSITIVE_INFINITY, 1, 2]) }))).toBe('E_RUN_PIPELINE');
    const big = await r.run({ x: T([300_000, 1], new Float32Array(300_000)) });
    expect((big.outputs.c as unknown[]).length).toBe(300_000);
  });

  it('nms: a NaN or infinite box corner, or a NaN score, is E_RUN_PIPELINE, not a box of nulls', async () => {
    await using r = await open(
      {
        steps: [infer(), { op: 'nms', params: { input: 'y', output: 'b', iouThreshold: 0.5 } }],
        outputs: [{ name: 'b', type: 'boxes' }],
      },
      { 'models/net.onnx': ident(['N', 5]) },
    );
    expect(await codeOf(r.run({ x: T([1, 5], [Number.NaN, 0, 10, 10, 0.9]) }))).toBe('E_RUN_PIPELINE');
    expect(await codeOf(r.run({ x: T([1, 5], [0, 0, Number.POSITIVE_INFINITY, 10, 0.9]) }))).toBe('E_RUN_PIPELINE');
    expect(await codeOf(r.run({ x: T([1, 5], [0, 0, 10, 10, Number.NaN]) }))).toBe('E_RUN_PIPELINE');
    expect(await codeOf(r.run({ x: T([1, 5], [0, 0, 10, 10, 0.9]) }))).toBe('OK');
  });

  it('ctc-decode: a blank that is no class is E_RUN_PIPELINE, not decoded as if there were no blank', async () => {
    const ctc = (blank: number) =>
      open(
        {
          steps: [infer(), { op: 'ctc-decode', params: { input: 'y', output: 't', vocabulary: 'v', blank } }],
          outputs: [{ name: 't', type: 'text' }],
          ...vocabulary,
        },
        { 'models/net.onnx': ident(['N', 'T', 'C']), 'assets/v.txt': 'a\nb\n' },
      );
    const scores = T([1, 2, 3], [1, 0, 0, 0, 1, 0]);
    {
      await using r = await ctc(1000);
      expect(await codeOf(r.run({ x: scores }))).toBe('E_RUN_PIPELINE');
    }
    await using r = await ctc(2);
    expect((await r.run({ x: scores })).outputs.t).toBe('ab');
    // 4 classes for a 2-token vocabulary whose blank is 3: refused, whichever check meets it
    expect(await codeOf(r.run({ x: T([1, 1, 4], [0, 0, 0, 1]) }))).toBe('E_RUN_PIPELINE');
  });
});

describe('input shapes from the manifest (pre-warm, explain)', () => {
  it('an infer maxBatch of a million opens with pre-warm on (too many shapes, not a stack overflow)', async () => {
    const steps = [infer({ maxBatch: 1_000_000 })];
    const m = manifest({ inputs: [{ ...x(), shape: ['N'] }], outputs: [{ name: 'y', type: 'tensor' }], steps });
    expect(shapeSummary(m as never).net.shapes).toBe(1_000_000);
    await using r = await openTrusted(await signedPackage(m, { 'models/net.onnx': ident(['N']) }), {
      prewarm: 'always',
    });
    expect(await codeOf(r.run({ x: T([3], [1, 2, 3]) }))).toBe('OK');
  });
});

describe('infer padBatch', () => {
  it('padding a small batch to maxBatch items is held to the budget before it is allocated', async () => {
    await using r = await open(
      { steps: [infer({ maxBatch: 1000, padBatch: true })], outputs: [{ name: 'y', type: 'tensor' }] },
      { 'models/net.onnx': ident(['N', 'C']) },
      { budget: { maxTensorBytes: 1_000_000 } },
    );
    // one item of 4000 bytes, padded to 1000: 4 MB
    const run = (c: number) => r.run({ x: T([1, c], new Float32Array(c)) });
    expect(await codeOf(run(1000))).toBe('E_RUN_BUDGET');
    expect(await detailOf(run(1000))).toMatchObject({ step: 0, limit: 'maxTensorBytes' });
    expect(((await run(10)).outputs.y as { dims: number[] }).dims).toEqual([1, 10]);
  });
});

describe('script results', () => {
  it('a result field is the result’s own: `toString` of a result without it is E_RUN_PIPELINE, not a function', async () => {
    const m = manifest({
      inputs: [x()],
      outputs: [{ name: 'z', type: 'json' }],
      steps: [
        infer(),
        {
          op: 'script',
          script: 'scripts/s.js',
          hook: 'post',
          params: { inputs: { y: 'y' }, outputs: { toString: 'z' } },
        },
      ],
    });
    (m.pipeline as Record<string, unknown>).scripts = [{ path: 'scripts/s.js', hooks: ['post'] }];
    const files = { 'models/net.onnx': ident(['N']), 'scripts/s.js': 'export function post() { return {}; }' };
    await using r = await openTrusted(await signedPackage(m, files));
    expect(await codeOf(r.run({ x: T([1], [1]) }))).toBe('E_RUN_PIPELINE');
    expect((await detailOf(r.run({ x: T([1], [1]) })))?.step).toBe(1);
  });
});

describe('optional inputs', () => {
  it('an optional input named like an Object.prototype key, left out, is left out (not Object itself)', async () => {
    const named = (name: string) =>
      manifest({
        inputs: [x(), { ...x(name), optional: true }],
        outputs: [{ name: 'y', type: 'tensor' }],
        steps: [infer()],
      });
    await using r = await openTrusted(await signedPackage(named('constructor'), { 'models/net.onnx': ident(['N']) }));
    expect(await codeOf(r.run({ x: T([1], [1]) }))).toBe('OK');
    // `__proto__` is no input name at all: `--input __proto__=…` set a prototype and was lost
    expect(await codeOf(signedPackage(named('__proto__'), { 'models/net.onnx': ident(['N']) }))).toBe(
      'E_MANIFEST_SCHEMA',
    );
  });
});

describe('a model called constructor', () => {
  it('has its input shapes found (pre-warm on, explain), not Object.prototype’s', async () => {
    const m = manifest({
      inputs: [{ ...x(), shape: [2] }],
      outputs: [{ name: 'y', type: 'tensor' }],
      steps: [{ ...infer(), model: 'constructor' }],
      models: [
        {
          id: 'constructor',
          variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['models/net.onnx'] }],
        },
      ],
    });
    expect(shapeSummary(m as never)).toEqual({ constructor: { shapes: 1 } });
    await using r = await openTrusted(await signedPackage(m, { 'models/net.onnx': ident(['N']) }), {
      prewarm: 'always',
    });
    expect(await codeOf(r.run({ x: T([2], [1, 2]) }))).toBe('OK');
  });
});

describe('labels and vocabulary assets', () => {
  it('one of more than a million tokens is E_RUN_PIPELINE (a line is a string slot: heap, not package bytes)', async () => {
    const classify = (labels: string) =>
      open(
        {
          steps: [infer(), { op: 'top-k', params: { input: 'y', output: 'c', labelsAsset: 'l' } }],
          outputs: [{ name: 'c', type: 'classification' }],
          assets: [{ id: 'l', path: 'assets/l.txt', kind: 'labels' }],
        },
        { 'models/net.onnx': ident(['N', 'C']), 'assets/l.txt': labels },
      );
    const scores = { x: T([1, 2], [0, 1]) };
    {
      await using r = await classify('a\n'.repeat(1_000_001));
      expect(await codeOf(r.run(scores))).toBe('E_RUN_PIPELINE');
      expect((await detailOf(r.run(scores)))?.step).toBe(1);
    }
    await using r = await classify('a\n'.repeat(1_000_000));
    expect(await codeOf(r.run(scores))).toBe('OK');
  });
});
