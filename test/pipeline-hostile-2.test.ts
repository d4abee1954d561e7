/**
 * Hostile packages against the pipeline, continued (pipeline-hostile.test.ts): a model's variants
 * that disagree on what they take.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { Runner } from '../runner/runner.js';
import { codeOf } from './helpers/errors.js';
import { cleanup, manifest, oneOp, openTrusted, signedPackage } from './helpers/hostile-pkg.js';

afterAll(cleanup);

const identity = (type: 'float32' | 'int32') =>
  oneOp('Identity', { name: 'X', type, shape: ['N'] }, { name: 'Y', type, shape: ['N'] });
const variant = (id: string, file: string) => ({ id, runtime: 'onnxruntime', precision: 'fp32', files: [file] });

/** A float32 feed runs; each bad feed is E_RUN_PIPELINE, and the float32 one still runs after it (nothing moved). */
async function badFeedsFailAlone(r: Runner, bad: Record<string, unknown>[]): Promise<void> {
  const good = { x: { type: 'float32', dims: [2], data: new Float32Array([1, 2]) } };
  expect(await codeOf(r.run(good))).toBe('OK');
  for (const feed of bad) {
    expect(await codeOf(r.run(feed))).toBe('E_RUN_PIPELINE');
    expect(await codeOf(r.run(good))).toBe('OK');
  }
}
const int32Feed = { x: { type: 'int32', dims: [2], data: new Int32Array([1, 2]) } };

describe('infer: feeds the model does not take', () => {
  it('fail the step before the model runs: one bad request does not move the model to a variant that takes it', async () => {
    // variant a takes float32, b int32: an int32 request that failed on a fell back to b for good
    const m = manifest({
      inputs: [{ name: 'x', type: 'tensor' }],
      outputs: [{ name: 'y', type: 'tensor' }],
      steps: [{ op: 'infer', model: 'net', params: { inputs: 'x', outputs: 'y' } }],
      models: [{ id: 'net', variants: [variant('a', 'models/a.onnx'), variant('b', 'models/b.onnx')] }],
    });
    const files = { 'models/a.onnx': identity('float32'), 'models/b.onnx': identity('int32') };
    await using r = await openTrusted(await signedPackage(m, files));
    // [2, 1] for [N]: a rank the model does not take ([1, 2] would be fed as [2], a batch of one without its dim)
    await badFeedsFailAlone(r, [int32Feed, { x: { type: 'float32', dims: [2, 1], data: new Float32Array([1, 2]) } }]);
  });
});

describe('db-postprocess: a sparse map', () => {
  it('is held to the budget before the dense map its flags stand for is allocated', async () => {
    const u8 = (name: string) => ({ name, type: 'tensor', dtype: 'uint8' });
    const m = manifest({
      inputs: [{ name: 'x', type: 'tensor' }, u8('flags'), u8('blocks'), u8('means')],
      outputs: [{ name: 'r', type: 'boxes' }],
      steps: [
        { op: 'infer', model: 'net', params: { inputs: 'x', outputs: 'y' } },
        { op: 'db-postprocess', params: { input: 'flags', blocks: 'blocks', blockMeans: 'means', output: 'r' } },
      ],
    });
    const files = { 'models/net.onnx': identity('float32') };
    await using r = await openTrusted(await signedPackage(m, files), { budget: { maxTensorBytes: 1_000_000 } });
    // 64×64 flag bytes (4 KB, no block flagged) stand for a 1024×2048 map: 8 MB of float32
    const run = (side: number) =>
      r.run({
        x: { type: 'float32', dims: [1], data: new Float32Array(1) },
        flags: { type: 'uint8', dims: [side, side], data: new Uint8Array(side * side) },
        blocks: { type: 'uint8', dims: [0, 8], data: new Uint8Array(0) },
        means: { type: 'uint8', dims: [0], data: new Uint8Array(0) },
      });
    expect(await codeOf(run(64))).toBe('E_RUN_BUDGET');
    expect(await codeOf(run(4))).toBe('OK');
  });
});

describe('pre-warm', () => {
  it('does not allocate zeros of a manifest shape above the tensor budget: the model is skipped (budget)', async () => {
    const m = manifest({
      inputs: [{ name: 'x', type: 'tensor', shape: [1000, 1000] }],
      outputs: [{ name: 'y', type: 'tensor' }],
      steps: [{ op: 'infer', model: 'net', params: { inputs: 'x', outputs: 'y' } }],
    });
    const X = { name: 'X', type: 'float32' as const, shape: ['A', 'B'] };
    const files = { 'models/net.onnx': oneOp('Identity', X, { ...X, name: 'Y' }) };
    const open = async (maxTensorBytes: number) =>
      openTrusted(await signedPackage(m, files), { prewarm: 'always', budget: { maxTensorBytes } });
    {
      await using r = await open(1_000_000);
      expect(r.opened.prewarm.net.skipped?.code).toBe('budget');
      expect(r.opened.prewarm.net.shapes).toEqual([]);
    }
    await using r = await open(4_000_000);
    expect(r.opened.prewarm.net.skipped).toBeUndefined();
    expect(r.opened.prewarm.net.shapes.map((s) => s.dims)).toEqual([{ X: [1000, 1000] }]);
  });
});

describe('decode-image', () => {
  it('a background of two values (neither grey nor RGB) is E_RUN_PIPELINE at open', async () => {
    const m = (background: number[]) =>
      manifest({
        inputs: [
          { name: 'x', type: 'tensor' },
          { name: 'image', type: 'image' },
        ],
        outputs: [{ name: 'img', type: 'image' }],
        steps: [
          { op: 'infer', model: 'net', params: { inputs: 'x', outputs: 'y' } },
          { op: 'decode-image', params: { input: 'image', output: 'img', background } },
        ],
      });
    const files = { 'models/net.onnx': identity('float32') };
    expect(await codeOf(signedPackage(m([0, 255]), files).then(openTrusted))).toBe('E_RUN_PIPELINE');
    await using r = await openTrusted(await signedPackage(m([0, 255, 0]), files));
    const pixels = { data: new Uint8Array(4 * 4 * 3), width: 4, height: 4, channels: 3 };
    expect(await codeOf(r.run({ x: { type: 'float32', dims: [1], data: new Float32Array(1) }, image: pixels }))).toBe(
      'OK',
    );
  });
});

describe('split: feeds the head does not take', () => {
  it('fail the step before the head runs, and do not move the head to a variant that takes them', async () => {
    const m = manifest({
      inputs: [{ name: 'x', type: 'tensor' }],
      outputs: [{ name: 'z', type: 'tensor' }],
      steps: [{ op: 'split', model: 'h', params: { inputs: 'x', outputs: 'z' } }],
      models: [
        {
          id: 'h',
          variants: [variant('a', 'models/a.onnx'), variant('b', 'models/b.onnx')],
          split: { tail: 't', at: ['Y'] },
        },
        { id: 't', variants: [variant('t', 'models/t.onnx')] },
      ],
    });
    const tail = oneOp(
      'Identity',
      { name: 'Y', type: 'float32', shape: ['N'] },
      { name: 'Z', type: 'float32', shape: ['N'] },
    );
    const files = { 'models/a.onnx': identity('float32'), 'models/b.onnx': identity('int32'), 'models/t.onnx': tail };
    await using r = await openTrusted(await signedPackage(m, files));
    await badFeedsFailAlone(r, [int32Feed]);
  });
});

describe('nms', () => {
  it('many overlapping boxes that do not suppress each other are E_RUN_PIPELINE, not minutes of comparisons', async () => {
    const m = (maxOutput?: number) =>
      manifest({
        inputs: [{ name: 'x', type: 'tensor' }],
        outputs: [{ name: 'b', type: 'boxes' }],
        steps: [
          { op: 'infer', model: 'net', params: { inputs: 'x', outputs: 'y' } },
          { op: 'nms', params: { input: 'y', output: 'b', iouThreshold: 1, ...(maxOutput ? { maxOutput } : {}) } },
        ],
      });
    const X = { name: 'X', type: 'float32' as const, shape: ['N', 5] };
    const files = { 'models/net.onnx': oneOp('Identity', X, { ...X, name: 'Y' }) };
    const n = 60_000;
    const boxes = new Float32Array(5 * n);
    for (let i = 0; i < n; i++) boxes.set([i % 8, 0, (i % 8) + 1, 1, 0.5], 5 * i);
    const x = { x: { type: 'float32', dims: [n, 5], data: boxes } };
    {
      await using r = await openTrusted(await signedPackage(m(), files));
      const t0 = performance.now();
      expect(await codeOf(r.run(x))).toBe('E_RUN_PIPELINE');
      expect(performance.now() - t0).toBeLessThan(1000);
    }
    await using r = await openTrusted(await signedPackage(m(100), files));
    expect(await codeOf(r.run(x))).toBe('OK');
  });
});
