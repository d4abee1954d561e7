/**
 * Reused intermediate arrays (runner/pipeline/scratch.ts): a runner's runs share the preprocess
 * output array when nothing of a result refers to it, and never when a result does, a run failed,
 * or two runs overlap — a result keeps its values whatever later runs do.
 */
import { describe, expect, it } from 'vitest';
import { runPipeline } from '../runner/pipeline/index.js';
import { buffersIn, ScratchLease, ScratchPool } from '../runner/pipeline/scratch.js';
import type { ModelSession, Tensor } from '../runner/types.js';
import type { Manifest } from '../spec/schema.js';
import { lineMap } from './helpers/line-map.js';
import { pipelineContext, pipelineManifest } from './helpers/pipeline.js';

describe('ScratchPool and ScratchLease', () => {
  it('gives an array back for the next take of its type and length only', () => {
    const pool = new ScratchPool();
    const a = new ScratchLease(pool).take('f32', 12);
    const lease = new ScratchLease(pool);
    const b = lease.take('f32', 12);
    expect(b).not.toBe(a);
    lease.release({});
    expect(pool.bytes).toBe(48);
    expect(pool.take('u8', 48)).not.toBe(b);
    expect(pool.take('f32', 13)).not.toBe(b);
    expect(pool.take('f32', 12)).toBe(b);
    expect(pool.bytes).toBe(0);
  });

  it('keeps what the result refers to, through views, maps, sets and nesting', () => {
    for (const refer of [
      (a: Float32Array) => ({ t: { data: a } }),
      (a: Float32Array) => ({ t: [{ deep: [new Uint8Array(a.buffer, 4, 4)] }] }),
      (a: Float32Array) => new Map([['k', a.buffer]]),
      (a: Float32Array) => ({ s: new Set([a.subarray(1)]) }),
    ]) {
      const pool = new ScratchPool();
      const lease = new ScratchLease(pool);
      const a = lease.take('f32', 8);
      lease.release(refer(a));
      expect(pool.bytes).toBe(0);
      expect(pool.take('f32', 8)).not.toBe(a);
    }
  });

  it('drops a detached array, and holds at most perKey of a kind and maxBytes in all', () => {
    const pool = new ScratchPool(100, 2);
    const lease = new ScratchLease(pool);
    const gone = lease.take('u8', 16);
    structuredClone(gone.buffer, { transfer: [gone.buffer] });
    const kept = [lease.take('u8', 16), lease.take('u8', 16), lease.take('u8', 16)];
    const big = lease.take('f32', 20);
    lease.release(null);
    // two of the three 16-byte arrays (perKey), the 80-byte one would pass 100 bytes
    expect(pool.bytes).toBe(32);
    expect(kept).toContain(pool.take('u8', 16));
    expect(pool.take('f32', 20)).not.toBe(big);
  });

  it('buffersIn survives cycles', () => {
    const o: Record<string, unknown> = { a: new Uint8Array(2) };
    o.self = o;
    expect(buffersIn(o).size).toBe(1);
  });
});

describe('the preprocess step on a reused array', () => {
  const W = 40;
  const H = 30;
  const manifestOf = (outputs: string[]): Manifest =>
    pipelineManifest({
      name: 'scratch',
      outputs,
      outputType: 'tensor',
      models: [{ id: 'm', variants: [] }],
      steps: [
        { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
        { op: 'preprocess', params: { input: 'rgb', output: 'x', mode: 'letterbox', width: 16, height: 16 } },
        { op: 'infer', model: 'm', params: { inputs: 'x', outputs: 'y' } },
      ],
    });
  /** A context whose model records each feed and answers its sum (or fails when told to). */
  const contextOf = (manifest: Manifest) => {
    const feeds: Tensor[] = [];
    const ctl = { fail: false, delay: 0 };
    const session: ModelSession = {
      inputNames: ['x'],
      outputNames: ['y'],
      async run(f) {
        feeds.push(f.x);
        if (ctl.delay) await new Promise((r) => setTimeout(r, ctl.delay));
        if (ctl.fail) throw new Error('model failed');
        const sum = (f.x.data as Float32Array).reduce((a, b) => a + b, 0);
        return { y: { type: 'float32', dims: [1], data: new Float32Array([sum]) } };
      },
      release: async () => {},
    };
    const ctx = pipelineContext(manifest, { session: async () => session });
    return { ctx, feeds, ctl };
  };
  const image = (v: number) => ({ data: new Uint8Array(W * H * 3).fill(v), width: W, height: H, channels: 3 });

  it('runs of one runner share the array when the result leaves it, and each reads its own image', async () => {
    const { ctx, feeds } = contextOf(manifestOf(['y']));
    const a = await runPipeline(ctx, { image: image(10) });
    const b = await runPipeline(ctx, { image: image(200) });
    expect(feeds[1].data).toBe(feeds[0].data);
    expect((a.outputs.y as Tensor).data[0]).not.toBe((b.outputs.y as Tensor).data[0]);
  });

  it('a result that returns the tensor keeps it: the next run writes another array', async () => {
    const { ctx, feeds } = contextOf(manifestOf(['x', 'y']));
    const a = await runPipeline(ctx, { image: image(10) });
    const before = Float32Array.from((a.outputs.x as Tensor).data as Float32Array);
    await runPipeline(ctx, { image: image(200) });
    expect(feeds[1].data).not.toBe(feeds[0].data);
    expect((a.outputs.x as Tensor).data).toEqual(before);
  });

  it('a failed run gives nothing back, and the next run still succeeds', async () => {
    const { ctx, feeds, ctl } = contextOf(manifestOf(['y']));
    ctl.fail = true;
    await expect(runPipeline(ctx, { image: image(10) })).rejects.toMatchObject({ code: 'E_RUN_PIPELINE' });
    ctl.fail = false;
    await runPipeline(ctx, { image: image(20) });
    expect(feeds[1].data).not.toBe(feeds[0].data);
  });

  it('overlapping runs each have their own array', async () => {
    const { ctx, feeds, ctl } = contextOf(manifestOf(['y']));
    await runPipeline(ctx, { image: image(1) });
    ctl.delay = 30;
    const [a, b] = await Promise.all([runPipeline(ctx, { image: image(10) }), runPipeline(ctx, { image: image(200) })]);
    expect(feeds[2].data).not.toBe(feeds[1].data);
    // each run's sum is its own image's, not the other's written over it
    expect((a.outputs.y as Tensor).data[0]).toBeLessThan((b.outputs.y as Tensor).data[0]);
    const single = await runPipeline(contextOf(manifestOf(['y'])).ctx, { image: image(10) });
    expect((a.outputs.y as Tensor).data[0]).toBeCloseTo((single.outputs.y as Tensor).data[0] as number, 3);
  });
});

describe('crop-batch on reused arrays', () => {
  // three lines of a map over an image whose pixels change run to run
  const W = 120;
  const H = 40;
  const map = lineMap(W, H, [
    [3, 11, 60],
    [16, 24, 110],
    [29, 37, 90],
  ]);
  const manifestOf = (crop: Record<string, unknown>): Manifest =>
    pipelineManifest({
      name: 'crops',
      tensors: ['map'],
      outputs: ['x'],
      steps: [
        { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
        { op: 'db-postprocess', params: { input: 'map', output: 'regions', unclipRatio: 0.5 } },
        { op: 'crop-batch', params: { image: 'rgb', regions: 'regions', output: 'x', height: 10, ...crop } },
      ],
    });
  const ctxOf = (m: Manifest) => pipelineContext(m);
  const inputs = (v: number) => ({
    image: { data: new Uint8Array(W * H * 3).fill(v), width: W, height: H, channels: 3 },
    map: { type: 'float32', dims: [1, 1, H, W], data: map },
  });
  const arrays = (x: unknown) =>
    ('items' in (x as object) ? (x as { items: Tensor[] }).items : [x as Tensor]).map((t) => t.data as Float32Array);
  const values = (x: unknown) => arrays(x).map((d) => Array.from(d));

  for (const [name, crop] of [
    ['one batch', { width: 64 }],
    ['one batch in two calls', { width: 64, calls: 2 }],
    ['batches of similar width', { widthBuckets: [32, 64, 128], groupSize: 2, dtype: 'uint8', layout: 'nhwc' }],
  ] as const)
    it(`${name}: a result that returns the crops keeps them, whatever the next run cuts`, async () => {
      const ctx = ctxOf(manifestOf(crop));
      const a = await runPipeline(ctx, inputs(10));
      const kept = values(a.outputs.x);
      const b = await runPipeline(ctx, inputs(200));
      expect(values(a.outputs.x)).toEqual(kept);
      for (const d of arrays(b.outputs.x)) expect(arrays(a.outputs.x)).not.toContain(d);
      expect(values(b.outputs.x)).not.toEqual(kept);
    });
});
