/**
 * Steps of independent branches run side by side (runner/pipeline/schedule.ts): which steps wait
 * for which (read after write, write after read, write after write, one script's hooks in order,
 * late reads), that a failure stops new steps and reports the lowest-indexed one after the running
 * ones end, and crop-batch's half turn done after cutting (while the classifier runs) against the
 * lines cut with their corners turned.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { rng } from '../fixtures/random.js';
import { runPipeline } from '../runner/pipeline/index.js';
import { getOp } from '../runner/pipeline/registry.js';
import { planSchedule, runScheduled } from '../runner/pipeline/schedule.js';
import type { PipelineContext, Tensor } from '../runner/types.js';
import type { Manifest, Step } from '../spec/schema.js';
import { lineMap } from './helpers/line-map.js';

/** A manifest of `steps` over the named image and tensor inputs, every output as JSON. */
const manifestOf = (
  name: string,
  tensors: string[],
  outputs: string[],
  steps: Step[],
  models: unknown[] = [],
): Manifest =>
  ({
    name,
    version: '1.0.0',
    sequence: 1,
    license: 'MIT',
    task: 'test',
    inputs: [{ name: 'image', type: 'image' }, ...tensors.map((t) => ({ name: t, type: 'tensor' }))],
    outputs: outputs.map((o) => ({ name: o, type: 'json' })),
    models,
    pipeline: { steps },
  }) as unknown as Manifest;

const plan = (steps: Step[]) => planSchedule(steps, (s) => getOp(s.op)!);

describe('planSchedule', () => {
  it("the OCR package: the recogniser's crops start after detection, beside the orientation classifier", () => {
    const m = JSON.parse(readFileSync('fixtures/paddleocr-v4/xpkg.json', 'utf8')) as Manifest;
    const steps = m.pipeline.steps;
    const at = (id: string) => steps.findIndex((s) => s.id === id || s.op === id);
    const plans = plan(steps);
    const recCrop = plans[at('rec-crop')];
    expect(recCrop.after).toEqual([at('decode-image'), at('det-post')]);
    expect([...recCrop.lateWriters]).toEqual([['orientation', at('top-k')]]);
    // a chain stays a chain
    expect(plans[at('cls')].after).toEqual([at('cls-crop')]);
    expect(plans[at('rec')].after).toEqual([at('rec-crop')]);
    expect(plans[at('det-pre')].after).toEqual([at('decode-image')]);
  });

  it('waits for the writer of what it reads, the readers and writer of what it overwrites, and the previous script step', () => {
    const resize = (input: string, output: string): Step => ({
      op: 'resize',
      params: { input, output, mode: 'fixed', width: 2, height: 2 },
    });
    const script = (
      inputs: Record<string, string>,
      outputs: Record<string, string>,
      file = 'scripts/post.js',
    ): Step => ({
      op: 'script',
      script: file,
      hook: 'h',
      params: { inputs, outputs },
    });
    const plans = plan([
      resize('image', 'a'), // 0
      resize('image', 'b'), // 1: independent of 0
      resize('a', 'c'), // 2: reads a
      resize('b', 'a'), // 3: overwrites a, which 2 reads and 0 wrote
      script({ x: 'c' }, { y: 'd' }), // 4
      script({ x: 'b' }, { y: 'e' }, 'scripts/other.js'), // 5: independent data, another script (one runtime)
      resize('a', 'a'), // 6: reads and overwrites its own input
    ]);
    expect(plans.map((p) => p.after)).toEqual([[], [], [0], [0, 1, 2], [2], [1, 4], [3]]);
  });
});

/** A step that ends when told, recording when it started and ended. */
function gate() {
  let open!: () => void;
  let shut!: (e: Error) => void;
  const p = new Promise<void>((res, rej) => {
    open = res;
    shut = rej;
  });
  return { p, open, shut };
}

describe('runScheduled', () => {
  const diamond = [{ after: [] }, { after: [0] }, { after: [0] }, { after: [1, 2] }].map((p) => ({
    ...p,
    lateWriters: new Map<string, number>(),
  }));

  it('starts independent steps together and a joining step after both', async () => {
    const gates = diamond.map(() => gate());
    const log: string[] = [];
    const done = runScheduled(diamond, async (i) => {
      log.push(`start ${i}`);
      await gates[i].p;
      log.push(`end ${i}`);
    });
    const tick = () => new Promise((r) => setImmediate(r));
    gates[0].open();
    await tick();
    expect(log).toEqual(['start 0', 'end 0', 'start 1', 'start 2']);
    gates[2].open();
    await tick();
    expect(log).not.toContain('start 3');
    gates[1].open();
    gates[3].open();
    await done;
    expect(log.slice(4)).toEqual(['end 2', 'end 1', 'start 3', 'end 3']);
  });

  it('after a failure starts nothing more, waits for the running steps, and throws the lowest-indexed failure', async () => {
    const gates = diamond.map(() => gate());
    const log: string[] = [];
    let settled = false;
    const done = runScheduled(diamond, async (i) => {
      log.push(`start ${i}`);
      try {
        await gates[i].p;
      } finally {
        log.push(`end ${i}`);
      }
    }).finally(() => (settled = true));
    gates[0].open();
    await new Promise((r) => setImmediate(r));
    gates[2].shut(new Error('two')); // the later step fails first
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false); // step 1 still runs
    gates[1].shut(new Error('one'));
    await expect(done).rejects.toThrow('one');
    expect(log).not.toContain('start 3');
  });

  it('a late read waits for its writer; a failed writer fails the reader with its error', async () => {
    const plans = [
      { after: [], lateWriters: new Map() },
      { after: [], lateWriters: new Map([['v', 0]]) },
    ];
    const g = gate();
    const log: string[] = [];
    const done = runScheduled(plans, async (i, wait) => {
      log.push(`start ${i}`);
      if (i === 0) await g.p;
      else {
        await wait(0);
        log.push('read');
      }
    });
    await new Promise((r) => setImmediate(r));
    expect(log).toEqual(['start 0', 'start 1']);
    g.open();
    await done;
    expect(log).toEqual(['start 0', 'start 1', 'read']);
    const bad = gate();
    const failing = runScheduled(plans, async (i, wait) => (i === 0 ? bad.p : wait(0)));
    bad.shut(new Error('writer'));
    await expect(failing).rejects.toThrow('writer');
  });
});

describe('crop-batch turns the lines its classifier picks after cutting them', () => {
  // three lines of noise (a half turn shows), the middle one classified "180"
  const W = 120,
    H = 40;
  const r = rng(7);
  const image = { data: Uint8Array.from({ length: W * H * 3 }, () => Math.floor(r() * 256)), width: W, height: H };
  const map = lineMap(W, H, [
    [3, 11, 60],
    [16, 24, 110],
    [29, 37, 90],
  ]);
  const probs = new Float32Array([0.99, 0.01, 0.02, 0.98, 0.6, 0.4]);

  async function run(crop: Record<string, unknown>, classified = probs) {
    const step = (output: string, extra: Record<string, unknown>): Step => ({
      op: 'crop-batch',
      params: { image: 'rgb', regions: 'regions', height: 10, ...crop, output, regionsOutput: `${output}_q`, ...extra },
    });
    const turn = { classes: 'orientation', label: '180', angle: 180, minScore: 0.9 };
    const names = ['late', 'late_q', 'cornered', 'cornered_q', 'plain', 'plain_q'];
    const manifest = manifestOf('turns', ['map', 'probs'], names, [
      { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
      { op: 'db-postprocess', params: { input: 'map', output: 'regions', unclipRatio: 0.5 } },
      { op: 'order-regions', params: { input: 'regions', output: 'regions' } },
      { op: 'top-k', params: { input: 'probs', output: 'orientation', k: 1, labels: ['0', '180'] } },
      step('late', turn),
      // overflow 'crop' without a width limit cuts nothing off, but turns the corners before cutting
      step('cornered', { ...turn, overflow: 'crop' }),
      step('plain', {}),
    ]);
    const ctx: PipelineContext = {
      manifest,
      session: async () => undefined as never,
      asset: async () => Buffer.alloc(0),
      time: () => {},
    };
    const res = await runPipeline(ctx, {
      image: { ...image, channels: 3 },
      map: { type: 'float32', dims: [1, 1, H, W], data: map },
      probs: { type: 'float32', dims: [classified.length / 2, 2], data: classified },
    });
    return res.outputs as Record<string, unknown>;
  }
  type Item = Tensor & { widths: Int32Array };
  const rows = (v: unknown): Item[] => ('items' in (v as object) ? (v as { items: Item[] }).items : [v as Item]);
  const quads = (v: unknown) => [...(v as { quads: Float32Array }).quads];

  it('a classification of another count than the lines fails the step after cutting (E_RUN_PIPELINE)', async () => {
    const e = await run({}, probs.subarray(0, 4)).catch((x) => x);
    expect(e.code).toBe('E_RUN_PIPELINE');
    expect(e.detail).toMatchObject({ op: 'crop-batch', step: 4 });
  });

  it('starts beside a slow classifier, turns after it, and its time leaves out the wait', async () => {
    const slow = 600;
    let classified = 0;
    const manifest = manifestOf(
      'slow',
      ['map'],
      ['late'],
      [
        { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
        { op: 'db-postprocess', params: { input: 'map', output: 'regions', unclipRatio: 0.5 } },
        { op: 'crop-batch', params: { image: 'rgb', regions: 'regions', output: 'x', height: 8, width: 32 } },
        { op: 'infer', model: 'orient', params: { inputs: 'x', outputs: 'probs' } },
        { op: 'top-k', params: { input: 'probs', output: 'orientation', k: 1, labels: ['0', '180'] } },
        {
          op: 'crop-batch',
          params: {
            image: 'rgb',
            regions: 'regions',
            output: 'late',
            height: 10,
            classes: 'orientation',
            label: '180',
            angle: 180,
          },
        },
      ],
      [{ id: 'orient', variants: [{ id: 'v', runtime: 'onnxruntime', precision: 'fp32', files: ['m.onnx'] }] }],
    );
    const session = {
      inputNames: ['x'],
      outputNames: ['probs'],
      async run(feeds: Record<string, Tensor>) {
        const n = feeds.x.dims[0];
        await new Promise((r) => setTimeout(r, slow));
        classified = performance.now();
        return {
          probs: { type: 'float32', dims: [n, 2], data: Float32Array.from({ length: 2 * n }, (_, i) => i % 2) },
        } as Record<string, Tensor>;
      },
      release: async () => {},
    };
    const stages: Record<string, number> = {};
    const ctx: PipelineContext = {
      manifest,
      session: async () => session as never,
      asset: async () => Buffer.alloc(0),
      time: (stage, ms) => (stages[stage] = (stages[stage] ?? 0) + ms),
    };
    const t = performance.now();
    const res = await runPipeline(ctx, {
      image: { ...image, channels: 3 },
      map: { type: 'float32', dims: [1, 1, H, W], data: map },
    });
    const wall = performance.now() - t;
    expect(classified).toBeGreaterThan(0);
    expect(wall).toBeGreaterThanOrEqual(slow);
    // both crops together are far below the classifier's wait: the second one's wait is not its time
    expect(res.timings.pre).toBeLessThan(slow / 2);
    expect(rows(res.outputs.late)).toHaveLength(1);
  });

  for (const [name, crop, tolerance] of [
    ['one tensor per line, float32 NCHW', { batch: false }, 1e-4],
    ['one batch, float32 NCHW', {}, 1e-4],
    [
      'batches of similar width, uint8 NHWC',
      { dtype: 'uint8', layout: 'nhwc', widthBuckets: [32, 64, 128, 256], groupSize: 2, padValue: 128 },
      1,
    ],
  ] as const)
    it(`${name}: the same pixels (to rounding) and corners as cutting the turned corners`, async () => {
      const o = await run(crop);
      const [late, cornered, plain] = [rows(o.late), rows(o.cornered), rows(o.plain)];
      expect(late.map((t) => t.dims)).toEqual(cornered.map((t) => t.dims));
      let differs = 0;
      for (let k = 0; k < late.length; k++) {
        expect([...late[k].widths]).toEqual([...cornered[k].widths]);
        const a = late[k].data as Float32Array,
          b = cornered[k].data as Float32Array;
        for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(tolerance);
        // the turned line is not the plain one: the turn happened
        const c = plain[k].data as Float32Array;
        for (let i = 0; i < a.length; i++) if (a[i] !== c[i]) differs++;
      }
      expect(differs).toBeGreaterThan(100);
      expect(quads(o.late_q)).toEqual(quads(o.cornered_q));
      expect(quads(o.late_q)).not.toEqual(quads(o.plain_q));
    });
});
