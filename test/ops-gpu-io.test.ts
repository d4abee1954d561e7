/**
 * The pipeline ops' side of the GPU variants, run through runPipeline on real kernels: uint8 NHWC
 * tensors from `preprocess` and `crop-batch` (the float path's pixels, rounded), `db-postprocess`
 * reading a uint8 map as p × 255 or the sparse 8×8-block map, and `ctc-decode` reading in-graph best classes with their scores
 * exactly as it decodes the full score tensor they come from.
 */
import { describe, expect, it } from 'vitest';
import { rng } from '../fixtures/random.js';
import { cropBatchSync } from '../native/index.js';
import { runPipeline } from '../runner/pipeline/index.js';
import type { PipelineContext, Tensor } from '../runner/types.js';
import type { Manifest, Step } from '../spec/schema.js';
import { codeOf } from './helpers/errors.js';

const VOCAB = 'a\nb\nc\nd\n';

/** A context for pipelines without models: the ops and their kernels only. */
function context(steps: Step[], inputs: [string, string][], outputs: [string, string][]): PipelineContext {
  const manifest = {
    name: 'ops',
    version: '1.0.0',
    sequence: 1,
    license: 'MIT',
    task: 'test',
    inputs: inputs.map(([name, type]) => ({ name, type })),
    outputs: outputs.map(([name, type]) => ({ name, type })),
    models: [{ id: 'none', variants: [{ id: 'v', runtime: 'onnxruntime', precision: 'fp32', files: ['m'] }] }],
    assets: [{ id: 'vocab', path: 'vocab.txt', kind: 'vocabulary' }],
    pipeline: { steps },
  } as unknown as Manifest;
  return {
    manifest,
    session: () => Promise.reject(new Error('no models here')),
    asset: async () => Buffer.from(VOCAB),
    time: () => {},
  };
}

const r = rng(11);
const W = 37,
  H = 23;
const pixels = {
  data: Uint8Array.from({ length: W * H * 3 }, () => Math.floor(r() * 256)),
  width: W,
  height: H,
  channels: 3,
};

describe('uint8 pixels for models that normalise their input themselves', () => {
  it('preprocess: the float path with scale 1, rounded; mean and std do not apply; same transform', async () => {
    const common = { input: 'rgb', mode: 'letterbox', width: 32, height: 32, channelOrder: 'bgr' };
    const ctx = context(
      [
        { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
        { op: 'preprocess', params: { ...common, output: 'f', scale: 1, layout: 'nhwc' } },
        { op: 'preprocess', params: { ...common, output: 'u', dtype: 'uint8', layout: 'nhwc', mean: [9], std: [9] } },
      ],
      [['image', 'image']],
      [
        ['f', 'json'],
        ['u', 'json'],
      ],
    );
    const { outputs } = await runPipeline(ctx, { image: pixels });
    const f = outputs.f as Tensor & { transform: unknown };
    const u = outputs.u as Tensor & { transform: unknown };
    expect(u.type).toBe('uint8');
    expect(u.dims).toEqual([1, 32, 32, 3]);
    expect(u.transform).toEqual(f.transform);
    const fd = f.data as Float32Array;
    expect(fd.some((v) => v !== Math.round(v))).toBe(true); // resampled: not integers
    (u.data as Uint8Array).forEach((v, i) => expect(Math.abs(v - fd[i])).toBeLessThanOrEqual(0.5));
  });

  it('crop-batch: uint8 crops of the float crops, padded with padValue in pixel units', async () => {
    // a region found by db-postprocess in a map the size of the image
    const map = new Float32Array(W * H);
    for (let y = 6; y < 16; y++) for (let x = 4; x < 30; x++) map[y * W + x] = 0.9;
    const crop = { image: 'rgb', regions: 'regions', height: 12, width: 64, layout: 'nhwc', padValue: 128 };
    const ctx = context(
      [
        { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
        { op: 'db-postprocess', params: { input: 'map', output: 'regions', unclipRatio: 0.5 } },
        { op: 'crop-batch', params: { ...crop, output: 'f', scale: 1 } },
        { op: 'crop-batch', params: { ...crop, output: 'u', dtype: 'uint8', mean: [9], std: [9] } },
      ],
      [
        ['image', 'image'],
        ['map', 'tensor'],
      ],
      [
        ['f', 'json'],
        ['u', 'json'],
      ],
    );
    const { outputs } = await runPipeline(ctx, {
      image: pixels,
      map: { type: 'float32', dims: [1, 1, H, W], data: map },
    });
    const f = outputs.f as Tensor & { widths: Int32Array };
    const u = outputs.u as Tensor & { widths: Int32Array };
    expect(u.type).toBe('uint8');
    expect(u.dims).toEqual([1, 12, 64, 3]);
    expect(u.widths).toEqual(f.widths);
    expect(u.widths[0]).toBeLessThan(64);
    const fd = f.data as Float32Array;
    (u.data as Uint8Array).forEach((v, i) => expect(Math.abs(v - fd[i])).toBeLessThanOrEqual(0.5));
    expect((u.data as Uint8Array).at(-1)).toBe(128);
  });
});

describe('crop-batch at a fixed width, split over several kernel calls (calls)', () => {
  it('writes what one kernel call over all regions writes, within float rounding; f32 and uint8', async () => {
    // five regions found by db-postprocess: the op crops them in 4 calls on windows of the image into one tensor
    const [w, h] = [96, 80];
    const img = {
      data: Uint8Array.from({ length: w * h * 3 }, () => Math.floor(r() * 256)),
      width: w,
      height: h,
      channels: 3,
    };
    const map = new Float32Array(w * h);
    for (let k = 0; k < 5; k++)
      for (let y = 4 + 15 * k; y < 12 + 15 * k; y++) for (let x = 3 + 5 * k; x < 60 + 6 * k; x++) map[y * w + x] = 0.9;
    const crop = {
      image: 'rgb',
      regions: 'regions',
      height: 12,
      width: 160,
      padValue: 128,
      channelOrder: 'bgr',
      calls: 4,
    };
    const ctx = context(
      [
        { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
        { op: 'db-postprocess', params: { input: 'map', output: 'regions', unclipRatio: 0.5 } },
        { op: 'crop-batch', params: { ...crop, output: 'f', regionsOutput: 'quads', mean: [0.5], std: [0.5] } },
        { op: 'crop-batch', params: { ...crop, output: 'u', dtype: 'uint8', layout: 'nhwc' } },
      ],
      [
        ['image', 'image'],
        ['map', 'tensor'],
      ],
      [
        ['f', 'json'],
        ['u', 'json'],
        ['quads', 'json'],
      ],
    );
    const { outputs } = await runPipeline(ctx, { image: img, map: { type: 'float32', dims: [1, 1, h, w], data: map } });
    const quads = (outputs.quads as { quads: Float32Array }).quads;
    expect(quads.length).toBe(5 * 8);
    const image = { data: img.data, width: w, height: h, format: 'rgb' as const };
    const common = { height: 12, width: 160, channelOrder: 'bgr' as const, verticalRatio: 1.5 };
    const f = cropBatchSync(image, quads, { ...common, mean: [0.5], std: [0.5], padValue: 128 });
    const u = cropBatchSync(image, quads, { ...common, dtype: 'u8', scale: 1, layout: 'nhwc', padValue: 128 });
    expect((outputs.f as Tensor).dims).toEqual(f.dims);
    const fd = (outputs.f as Tensor).data as Float32Array;
    let worst = 0;
    for (let i = 0; i < fd.length; i++) worst = Math.max(worst, Math.abs(fd[i] - f.data[i]));
    expect(worst).toBeLessThan(1e-5);
    expect((outputs.f as Tensor & { widths: Int32Array }).widths).toEqual(f.widths);
    const ud = (outputs.u as Tensor).data as Uint8Array;
    ud.forEach((v, i) => expect(Math.abs(v - u.data[i])).toBeLessThanOrEqual(1));
  });

  it('refuses calls without a fixed width, or on a list; runs the same pipeline without calls', async () => {
    const map = new Float32Array(W * H);
    for (let y = 6; y < 16; y++) for (let x = 4; x < 30; x++) map[y * W + x] = 0.9;
    const go = (params: object) =>
      runPipeline(
        context(
          [
            { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
            { op: 'db-postprocess', params: { input: 'map', output: 'regions', unclipRatio: 0.5 } },
            { op: 'crop-batch', params: { image: 'rgb', regions: 'regions', output: 'c', height: 12, ...params } },
          ],
          [
            ['image', 'image'],
            ['map', 'tensor'],
          ],
          [['c', 'json']],
        ),
        { image: pixels, map: { type: 'float32', dims: [1, 1, H, W], data: map } },
      );
    expect(await codeOf(go({ calls: 2, batch: false, width: 64 }))).toBe('E_RUN_PIPELINE');
    expect(await codeOf(go({ calls: 2 }))).toBe('E_RUN_PIPELINE');
    expect(await codeOf(go({ calls: 0, width: 64 }))).toBe('E_RUN_PIPELINE');
    expect(((await go({ calls: 2, width: 64 })).outputs.c as Tensor).dims).toEqual([1, 3, 12, 64]);
    expect(((await go({ batch: false })).outputs.c as { items: Tensor[] }).items).toHaveLength(1);
  });
});

describe('db-postprocess on a uint8 map', () => {
  it('finds the regions of the float map q / 255', async () => {
    const [w, h] = [64, 48];
    const q = new Uint8Array(w * h);
    // two text-like blobs above the threshold (77 = 0.302) on a background below it (76 = 0.298)
    q.fill(76);
    for (let y = 10; y < 20; y++) for (let x = 5; x < 40; x++) q[y * w + x] = 200;
    for (let y = 30; y < 38; y++) for (let x = 20; x < 60; x++) q[y * w + x] = 77;
    const f = Float32Array.from(q, (v) => v / 255);
    const steps = (input: string): Step[] => [
      { op: 'db-postprocess', params: { input, output: 'regions', threshold: 0.3, boxThreshold: 0.2 } },
    ];
    const run = (input: string, t: Tensor) =>
      runPipeline(context(steps(input), [[input, 'tensor']], [['regions', 'json']]), { [input]: t });
    const a = (await run('map', { type: 'float32', dims: [1, 1, h, w], data: f })).outputs.regions as {
      count: number;
      quads: Float32Array;
      scores: Float32Array;
    };
    const b = (await run('map', { type: 'uint8', dims: [1, 1, h, w], data: q })).outputs.regions as typeof a;
    expect(a.count).toBe(2);
    expect(b).toEqual(a);
  });
});

describe('db-postprocess on a sparse map (8×8 mask blocks with their means)', () => {
  /** What fixtures/onnx-prepost.ts sparseMap sends for `p` (gpu-graphs.test.ts checks the graph against it). */
  function sparse(p: Float32Array, w: number, h: number, t = 0.3) {
    const bw = w / 8;
    const flags = new Uint8Array((bw * h) / 64);
    const blocks: number[] = [];
    const means: number[] = [];
    for (let b = 0; b < flags.length * 8; b++) {
      const x0 = (b % bw) * 8,
        y0 = Math.floor(b / bw) * 8;
      const rows: number[] = [];
      let sum = 0,
        n = 0;
      for (let y = y0; y < y0 + 8; y++) {
        let row = 0;
        for (let x = x0; x < x0 + 8; x++) if (p[y * w + x] > t) (row |= 0x80 >> (x - x0)), (sum += p[y * w + x]), n++;
        rows.push(row);
      }
      if (!n) continue;
      flags[b >> 3] |= 0x80 >> (b & 7);
      blocks.push(...rows);
      means.push(Math.round((255 * sum) / n));
    }
    const u8 = (data: number[] | Uint8Array, dims: number[]): Tensor => ({
      type: 'uint8',
      dims,
      data: Uint8Array.from(data),
    });
    return {
      flags: u8(flags, [h / 32, w / 16]),
      blocks: u8(blocks, [means.length, 8]),
      means: u8(means, [means.length]),
    };
  }
  const [w, h] = [64, 64];
  const map = new Float32Array(w * h);
  for (let y = 10; y < 20; y++) for (let x = 5; x < 40; x++) map[y * w + x] = 0.9;
  for (let y = 30; y < 38; y++) for (let x = 20; x < 60; x++) map[y * w + x] = y === 30 ? 0.35 : 0.8;
  const post = { output: 'regions', threshold: 0.3, boxThreshold: 0.2 };
  const run = (step: Record<string, unknown>, feeds: Record<string, Tensor>) =>
    runPipeline(
      context(
        [{ op: 'db-postprocess', params: { ...post, ...step } }],
        Object.keys(feeds).map((k) => [k, 'tensor']),
        [['regions', 'json']],
      ),
      feeds,
    );
  type Regions = { count: number; quads: Float32Array; scores: Float32Array };

  it('finds the regions of the float map, scores within a 255th', async () => {
    const s = sparse(map, w, h);
    expect(s.means.dims).toEqual([2 * 5 + 2 * 6]); // 8×8 blocks touched by each bar
    const a = (await run({ input: 'map' }, { map: { type: 'float32', dims: [1, 1, h, w], data: map } })).outputs
      .regions as Regions;
    const b = (await run({ input: 'f', blocks: 'b', blockMeans: 'm' }, { f: s.flags, b: s.blocks, m: s.means })).outputs
      .regions as Regions;
    expect(a.count).toBe(2);
    expect(b.quads).toEqual(a.quads);
    b.scores.forEach((v, i) => expect(Math.abs(v - a.scores[i])).toBeLessThan(1 / 255));
  });

  it('refuses blocks without means, a count that is not the flags', async () => {
    const s = sparse(map, w, h);
    const code = (step: Record<string, unknown>, feeds: Record<string, Tensor>) => codeOf(run(step, feeds));
    expect(await code({ input: 'f', blocks: 'b' }, { f: s.flags, b: s.blocks })).toBe('E_RUN_PIPELINE');
    const fewer = { ...s.means, dims: [21], data: s.means.data.subarray(1) };
    expect(await code({ input: 'f', blocks: 'b', blockMeans: 'm' }, { f: s.flags, b: s.blocks, m: fewer })).toBe(
      'E_RUN_PIPELINE',
    );
    const flat = { ...s.flags, dims: [s.flags.data.length] };
    expect(await code({ input: 'f', blocks: 'b', blockMeans: 'm' }, { f: flat, b: s.blocks, m: s.means })).toBe(
      'E_RUN_PIPELINE',
    );
    const floats: Tensor = {
      type: 'float32',
      dims: s.blocks.dims,
      data: Float32Array.from(s.blocks.data as Uint8Array),
    };
    expect(await code({ input: 'f', blocks: 'b', blockMeans: 'm' }, { f: s.flags, b: floats, m: s.means })).toBe(
      'E_RUN_PIPELINE',
    );
  });
});

describe('ctc-decode of in-graph best classes', () => {
  /** Random [N, T, C] probabilities, and their per-step best classes and scores. */
  function scores(n: number, t: number, c: number) {
    const p = new Float32Array(n * t * c);
    const ids = new Int32Array(n * t);
    const best = new Float32Array(n * t);
    for (let s = 0; s < n * t; s++) {
      // mostly blanks and repeats, as a recogniser's output is
      const k = r() < 0.5 ? 0 : Math.floor(r() * (c + 1)) % c;
      let sum = 0;
      for (let j = 0; j < c; j++) sum += p[s * c + j] = j === k ? 2 + r() : r();
      for (let j = 0; j < c; j++) p[s * c + j] /= sum;
      ids[s] = k;
      best[s] = p[s * c + k];
    }
    return { p, ids, best };
  }

  const decode = (params: Record<string, unknown>, inputs: Record<string, Tensor>) =>
    runPipeline(
      context(
        [{ op: 'ctc-decode', params: { output: 'texts', vocabulary: 'vocab', ...params } }],
        Object.keys(inputs).map((k) => [k, 'tensor']),
        [['texts', 'json']],
      ),
      inputs,
    );

  it('gives the texts and scores of the full scan, with and without widths', async () => {
    const [n, t, c] = [6, 40, 5];
    const { p, ids, best } = scores(n, t, c);
    const full = await decode(
      { input: 'p', probabilities: true },
      { p: { type: 'float32', dims: [n, t, c], data: p } },
    );
    const fromBest = await decode(
      { input: 'ids', scores: 's' },
      { ids: { type: 'int32', dims: [n, t], data: ids }, s: { type: 'float32', dims: [n, t], data: best } },
    );
    expect(fromBest.outputs.texts).toEqual(full.outputs.texts);
    expect((full.outputs.texts as { texts: string[] }).texts.some((x) => x.length > 3)).toBe(true);
    // int64 ids (ArgMax's own type) read the same
    const wide = await decode(
      { input: 'ids', scores: 's' },
      {
        ids: { type: 'int64', dims: [n, t], data: BigInt64Array.from(ids, BigInt) },
        s: { type: 'float32', dims: [n, t], data: best },
      },
    );
    expect(wide.outputs.texts).toEqual(full.outputs.texts);
  });

  it('packed (class × 256 + 8-bit score): the texts of the full scan, mean scores within 1/510', async () => {
    const [n, t, c] = [6, 40, 5];
    const { p, ids, best } = scores(n, t, c);
    const full = (
      await decode({ input: 'p', probabilities: true }, { p: { type: 'float32', dims: [n, t, c], data: p } })
    ).outputs.texts as { texts: string[]; scores: Float32Array };
    const packed = Int32Array.from(ids, (k, i) => k * 256 + Math.round(best[i] * 255));
    const got = (await decode({ input: 'best', packed: true }, { best: { type: 'int32', dims: [n, t], data: packed } }))
      .outputs.texts as typeof full;
    expect(got.texts).toEqual(full.texts);
    got.scores.forEach((v, i) => expect(Math.abs(v - full.scores[i])).toBeLessThanOrEqual(1 / 510 + 1e-6));
  });

  it('refuses packed input that is not int32 [N, T], and packed with scores or probabilities', async () => {
    const f: Tensor = { type: 'float32', dims: [1, 4], data: new Float32Array(4) };
    const i3: Tensor = { type: 'int32', dims: [1, 2, 2], data: new Int32Array(4) };
    const ok: Tensor = { type: 'int32', dims: [1, 4], data: new Int32Array(4) };
    expect(await codeOf(decode({ input: 'b', packed: true }, { b: f }))).toBe('E_RUN_PIPELINE');
    expect(await codeOf(decode({ input: 'b', packed: true }, { b: i3 }))).toBe('E_RUN_PIPELINE');
    expect(await codeOf(decode({ input: 'b', packed: true, scores: 's' }, { b: ok, s: f }))).toBe('E_RUN_PIPELINE');
    expect(await codeOf(decode({ input: 'b', packed: true, probabilities: true }, { b: ok }))).toBe('E_RUN_PIPELINE');
  });

  it('refuses float ids, mismatched scores, and scores with softmax or probabilities', async () => {
    const s: Tensor = { type: 'float32', dims: [1, 4], data: new Float32Array(4) };
    expect(await codeOf(decode({ input: 'ids', scores: 's' }, { ids: s, s }))).toBe('E_RUN_PIPELINE');
    const ids: Tensor = { type: 'int32', dims: [1, 3], data: new Int32Array(3) };
    expect(await codeOf(decode({ input: 'ids', scores: 's' }, { ids, s }))).toBe('E_RUN_PIPELINE');
    expect(await codeOf(decode({ input: 'ids', scores: 's', probabilities: true }, { ids, s }))).toBe('E_RUN_PIPELINE');
  });
});
