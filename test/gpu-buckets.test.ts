/**
 * Shape buckets for accelerators, on real kernels and a real onnxruntime session: `crop-batch`
 * `widthBuckets` (a line padded to the narrowest bucket that holds it), `infer` `batchList` and
 * `padBatch` (a list's items of one shape in one call, each call exactly maxBatch items), and
 * `ctc-decode` ignoring the padded steps of each item of a list. Then the OCR package's GPU
 * variants: the shapes their pipeline can make are few, so open can pre-warm all of them.
 */
import { describe, expect, it } from 'vitest';
import { encodeModel } from '../fixtures/onnx-tiny.js';
import { rng } from '../fixtures/random.js';
import { PackageReader } from '../pack/reader.js';
import { OnnxruntimeBackend } from '../runner/backends/onnxruntime.js';
import { runPipeline } from '../runner/pipeline/index.js';
import { withVariants } from '../runner/pipeline/patch.js';
import { RestartPipeline } from '../runner/pipeline/registry.js';
import { enumerateShapes, pipelineShapes } from '../runner/pipeline/shapes.js';
import { prewarmPlan } from '../runner/prewarm.js';
import type { ModelSession, Tensor } from '../runner/types.js';
import type { Step, Variant } from '../spec/schema.js';
import { codeOf } from './helpers/errors.js';
import { lineMap } from './helpers/line-map.js';
import { pipelineContext, pipelineManifest } from './helpers/pipeline.js';

/** ids = int32(max over C and H of X), scores = that max: [N, W] from [N, C, H, W]. */
const columnMax = encodeModel({
  name: 'colmax',
  opset: 18,
  irVersion: 8,
  nodes: [
    { op: 'ReduceMax', inputs: ['X', 'axes'], outputs: ['S'], intAttrs: { keepdims: 0 } },
    { op: 'Cast', inputs: ['S'], outputs: ['I'], intAttrs: { to: 6 } },
  ],
  inputs: [{ name: 'X', type: 'float32', shape: ['N', 'C', 'H', 'W'] }],
  outputs: [
    { name: 'I', type: 'int32', shape: ['N', 'W'] },
    { name: 'S', type: 'float32', shape: ['N', 'W'] },
  ],
  initializers: [{ name: 'axes', type: 'int64', dims: [2], raw: new Uint8Array(new BigInt64Array([1n, 2n]).buffer) }],
});

// three text lines in a map the size of the image: two short (one bucket), one long
const W = 200,
  H = 42;
const r = rng(12);
const pixels = { data: Uint8Array.from({ length: W * H * 3 }, () => Math.floor(r() * 256)), width: W, height: H };
const map = lineMap(W, H, [
  [3, 11, 60],
  [16, 24, 66],
  [29, 37, 190],
]);
const BUCKETS = [24, 64, 128, 160, 384];

/** Runs `steps` after db-postprocess on the map, with the column-max model as `m`; counts its calls. */
async function run(
  steps: Step[],
  outputs: string[],
  probability = map,
  wrap: (s: ModelSession) => ModelSession = (s) => s,
) {
  const backend = new OnnxruntimeBackend({ placement: 'never' });
  await backend.init();
  const variant = { id: 'v', runtime: 'onnxruntime', precision: 'fp32', files: ['m.onnx'] } as Variant;
  const session = await backend.load(variant, new Map([['m.onnx', columnMax]]), { threads: 1 });
  const calls: number[][] = [];
  const counted: ModelSession = Object.assign(Object.create(session) as ModelSession, {
    run: (feeds: Record<string, Tensor>) => (calls.push([...feeds.X.dims]), session.run(feeds)),
  });
  const manifest = pipelineManifest({
    name: 'buckets',
    tensors: ['map'],
    outputs,
    models: [{ id: 'm', variants: [variant] }],
    assets: [{ id: 'vocab', path: 'vocab.txt', kind: 'vocabulary' }],
    steps: [
      { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
      { op: 'db-postprocess', params: { input: 'map', output: 'regions', unclipRatio: 0.5 } },
      ...steps,
    ],
  });
  const ctx = pipelineContext(manifest, {
    session: async () => wrap(counted),
    // ids 1…4 of the column maxima (scale 4/255: pixels 0…4) are a…d
    asset: async () => Buffer.from('a\nb\nc\nd\n'),
  });
  try {
    const res = await runPipeline(ctx, {
      image: { ...pixels, channels: 3 },
      map: { type: 'float32', dims: [1, 1, H, W], data: probability },
    });
    return { outputs: res.outputs, calls };
  } finally {
    await session.release();
  }
}

const crop = { image: 'rgb', regions: 'regions', height: 8, batch: false, scale: 4 / 255, padValue: 2 };
type Item = Tensor & { widths: Int32Array; paddedWidth: number };
const items = (v: unknown) => (v as { items: Item[] }).items;

describe('crop-batch widthBuckets', () => {
  it('pads each line to the narrowest bucket that holds it; its own columns are the unbucketed crop', async () => {
    const { outputs } = await run(
      [
        { op: 'crop-batch', params: { ...crop, output: 'own' } },
        { op: 'crop-batch', params: { ...crop, output: 'b', widthBuckets: BUCKETS } },
        { op: 'crop-batch', params: { ...crop, output: 'one', batch: true, widthBuckets: BUCKETS } },
        { op: 'crop-batch', params: { ...crop, output: 'squeezed', widthBuckets: [24] } },
      ],
      ['own', 'b', 'one', 'squeezed'],
    );
    const own = items(outputs.own);
    const b = items(outputs.b);
    expect(own).toHaveLength(3);
    const widths = own.map((t) => t.dims[3]);
    // two short lines share a bucket, the long one has another
    expect(new Set(b.map((t) => t.dims[3])).size).toBe(2);
    own.forEach((o, i) => {
      const w = widths[i];
      const bucket = BUCKETS.find((x) => x >= w)!;
      expect(b[i].dims).toEqual([1, 3, 8, bucket]);
      expect([...b[i].widths]).toEqual([w]);
      expect(b[i].paddedWidth).toBe(bucket);
      const got = b[i].data as Float32Array;
      const want = o.data as Float32Array;
      for (let row = 0; row < 3 * 8; row++) {
        expect([...got.subarray(row * bucket, row * bucket + w)]).toEqual([...want.subarray(row * w, row * w + w)]);
        expect(got.subarray(row * bucket + w, (row + 1) * bucket).every((v) => v === 2)).toBe(true);
      }
    });
    // a padded batch takes the bucket of its widest line
    const one = outputs.one as Item;
    expect(one.dims).toEqual([3, 3, 8, BUCKETS.find((x) => x >= Math.max(...widths))]);
    expect([...one.widths]).toEqual(widths);
    // lines wider than the last bucket are squeezed into it
    expect(items(outputs.squeezed).map((t) => [t.dims[3], t.widths[0]])).toEqual(
      widths.map((w) => [24, Math.min(w, 24)]),
    );
  });

  it('refuses buckets that do not ascend, or beside a fixed width', async () => {
    for (const params of [
      { ...crop, output: 'b', widthBuckets: [64, 32] },
      { ...crop, output: 'b', widthBuckets: [32, 64], width: 64 },
    ])
      expect(await codeOf(run([{ op: 'crop-batch', params }], ['b']))).toBe('E_RUN_PIPELINE');
  });
});

describe('crop-batch groupSize', () => {
  // the long line on top: sorting by width moves it last
  const longFirst = new Float32Array(W * H);
  for (const [y0, y1, x1] of [
    [3, 11, 190],
    [16, 24, 60],
    [29, 37, 66],
  ])
    for (let y = y0; y < y1; y++) for (let x = 5; x < x1; x++) longFirst[y * W + x] = 0.9;
  const quads = (v: unknown) => Array.from((v as { quads: Float32Array }).quads);
  const texts = (v: unknown) => (v as { texts: string[] }).texts;

  it('cuts the lines sorted by width into batches at the bucket of each one’s widest; regions follow that order', async () => {
    const { outputs, calls } = await run(
      [
        { op: 'crop-batch', params: { ...crop, output: 'own', regionsOutput: 'q', widthsOutput: 'ow' } },
        { op: 'infer', model: 'm', params: { inputs: 'own', outputs: { I: 'oi', S: 'os' } } },
        {
          op: 'ctc-decode',
          params: { input: 'oi', scores: 'os', output: 'ownTexts', widths: 'own', vocabulary: 'vocab' },
        },
        {
          op: 'crop-batch',
          params: {
            ...crop,
            output: 'g',
            regionsOutput: 'gq',
            widthsOutput: 'gw',
            batch: true,
            widthBuckets: BUCKETS,
            groupSize: 2,
          },
        },
        {
          op: 'infer',
          model: 'm',
          params: { inputs: 'g', outputs: { I: 'gi', S: 'gs' }, maxBatch: 2, padBatch: true, parallel: true },
        },
        { op: 'ctc-decode', params: { input: 'gi', scores: 'gs', output: 'gTexts', widths: 'g', vocabulary: 'vocab' } },
      ],
      ['own', 'q', 'ownTexts', 'g', 'gq', 'gTexts', 'ow', 'gw'],
      longFirst,
    );
    const own = items(outputs.own);
    const widths = own.map((t) => t.dims[3]);
    const order = widths.map((_, i) => i).sort((a, b) => widths[a] - widths[b]);
    expect(order).not.toEqual([0, 1, 2]);
    const g = items(outputs.g);
    // two short lines at their bucket, then the long one alone at its own
    const bucket = (w: number) => BUCKETS.find((x) => x >= w)!;
    expect(g.map((t) => t.dims)).toEqual([
      [2, 3, 8, bucket(Math.max(widths[order[0]], widths[order[1]]))],
      [1, 3, 8, bucket(widths[order[2]])],
    ]);
    expect(g.flatMap((t) => [...t.widths])).toEqual(order.map((i) => widths[i]));
    // widthsOutput: the same widths as int32 tensors, one per item of the list
    const asTensors = (v: unknown) => items(v).map((t) => [t.type, t.dims, [...t.data]]);
    expect(asTensors(outputs.gw)).toEqual(g.map((t) => ['int32', [t.dims[0]], [...t.widths]]));
    expect(asTensors(outputs.ow)).toEqual(widths.map((w) => ['int32', [1], [w]]));
    // each row's own columns are the line's own crop; the rest is padding
    let row = 0;
    for (const t of g)
      for (let k = 0; k < t.dims[0]; k++, row++) {
        const o = own[order[row]];
        const w = widths[order[row]];
        const bw = t.dims[3];
        const got = t.data as Float32Array;
        const want = o.data as Float32Array;
        for (let r = 0; r < 3 * 8; r++) {
          const at = (k * 3 * 8 + r) * bw;
          expect([...got.subarray(at, at + w)]).toEqual([...want.subarray(r * w, r * w + w)]);
          expect(got.subarray(at + w, at + bw).every((v) => v === 2)).toBe(true);
        }
      }
    // the regions come in the batches' order, so texts and regions still pair up
    const q = quads(outputs.q);
    expect(quads(outputs.gq)).toEqual(order.flatMap((i) => q.slice(8 * i, 8 * i + 8)));
    expect(texts(outputs.gTexts)).toEqual(order.map((i) => texts(outputs.ownTexts)[i]));
    // three calls of one line each and two of exactly maxBatch (the two branches run side by side)
    expect(calls.map((d) => d[0]).sort()).toEqual([1, 1, 1, 2, 2]);
  });

  it('parallel: when one call asks for a restart and another fails (the replaced session), the restart wins', async () => {
    let calls = 0;
    const failing = (s: ModelSession): ModelSession =>
      Object.assign(Object.create(s) as ModelSession, {
        run: async () => {
          const k = calls++;
          // the first call fails first, with the error a CPU session gives a GPU variant's feeds
          await new Promise((r) => setTimeout(r, k === 0 ? 1 : 30));
          throw k === 0 ? new Error('invalid dimensions') : new RestartPipeline('rec failed on cuda');
        },
      });
    const steps: Step[] = [
      { op: 'crop-batch', params: { ...crop, output: 'g', batch: true, widthBuckets: BUCKETS, groupSize: 2 } },
      { op: 'infer', model: 'm', params: { inputs: 'g', outputs: { I: 'i', S: 's' }, parallel: true } },
    ];
    await expect(run(steps, ['i'], longFirst, failing)).rejects.toBeInstanceOf(RestartPipeline);
    expect(calls).toBe(2);
    // in turn, the first error stops the step
    calls = 0;
    const inTurn = [steps[0], { ...steps[1], params: { ...steps[1].params, parallel: false } }] as Step[];
    expect(await codeOf(run(inTurn, ['i'], longFirst, failing))).toBe('E_RUN_PIPELINE');
    expect(calls).toBe(1);
  });

  it('an empty page makes an empty list; groupSize needs widthBuckets and a batch, not calls', async () => {
    const { outputs } = await run(
      [
        { op: 'crop-batch', params: { ...crop, output: 'g', batch: true, widthBuckets: BUCKETS, groupSize: 2 } },
        { op: 'crop-batch', params: { ...crop, output: 'b', widthsOutput: 'bw', batch: true } },
      ],
      ['g', 'b', 'bw'],
      new Float32Array(W * H),
    );
    expect(items(outputs.g)).toEqual([]);
    expect((outputs.b as Tensor).dims[0]).toBe(0);
    expect(outputs.bw).toMatchObject({ type: 'int32', dims: [0] });
    for (const params of [
      { ...crop, output: 'g', batch: true, groupSize: 2 },
      { ...crop, output: 'g', widthBuckets: BUCKETS, groupSize: 2 },
      { ...crop, output: 'g', batch: true, widthBuckets: BUCKETS, groupSize: 2, calls: 2 },
    ])
      expect(await codeOf(run([{ op: 'crop-batch', params }], ['g']))).toBe('E_RUN_PIPELINE');
  });

  it('its shapes: one per bucket at maxBatch when padded, else every batch size up to groupSize', () => {
    const manifest = (infer: object) =>
      ({
        inputs: [{ name: 'image', type: 'image' }],
        pipeline: {
          steps: [
            { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
            {
              op: 'crop-batch',
              params: {
                ...crop,
                image: 'rgb',
                regions: 'r',
                output: 'x',
                batch: true,
                widthBuckets: [32, 64],
                groupSize: 3,
                widthsOutput: 'w',
              },
            },
            { op: 'infer', model: 'm', params: { inputs: { X: 'x', widths: 'w' }, outputs: 'y', ...infer } },
          ],
        },
      }) as never;
    const padded = pipelineShapes(manifest({ maxBatch: 3, padBatch: true })).m;
    expect(padded.map((f) => [f.input, enumerateShapes(f.dims!)])).toEqual([
      [
        'X',
        [
          [3, 3, 8, 64],
          [3, 3, 8, 32],
        ],
      ],
      ['widths', [[3]]],
    ]);
    const unpadded = pipelineShapes(manifest({})).m;
    expect(enumerateShapes(unpadded[0].dims!)).toHaveLength(6);
    expect(enumerateShapes(unpadded[1].dims!)).toEqual([[3], [2], [1]]);
  });
});

describe('infer batchList / padBatch, ctc-decode over bucketed items', () => {
  it('runs a bucket’s lines together, maxBatch a call padded to maxBatch, with the outputs of one call per line', async () => {
    const infer = (outputs: Record<string, string>, extra: object = {}): Step => ({
      op: 'infer',
      model: 'm',
      params: { inputs: 'x', outputs, ...extra },
    });
    const ctc = (input: string, scores: string, output: string, widths: string): Step => ({
      op: 'ctc-decode',
      params: { input, scores, output, widths, vocabulary: 'vocab' },
    });
    const each = await run(
      [
        { op: 'crop-batch', params: { ...crop, output: 'own' } },
        { op: 'infer', model: 'm', params: { inputs: 'own', outputs: { I: 'oi', S: 'os' } } },
        ctc('oi', 'os', 'texts', 'own'),
      ],
      ['oi', 'texts'],
    );
    const together = await run(
      [
        { op: 'crop-batch', params: { ...crop, output: 'x', widthBuckets: BUCKETS } },
        infer({ I: 'i', S: 's' }, { batchList: true, maxBatch: 4, padBatch: true }),
        ctc('i', 's', 'texts', 'x'),
        // without widths, the padded steps (class 2, "b") are read as text
        ctc('i', 's', 'raw', 'i'),
      ],
      ['i', 'texts', 'raw'],
    );
    // one call per bucket, each of exactly maxBatch items
    expect(each.calls.map((d) => d[0])).toEqual([1, 1, 1]);
    expect(together.calls).toHaveLength(2);
    expect(together.calls.every((d) => d[0] === 4)).toBe(true);
    // each line's ids over its own columns are the ones it had alone
    const a = items(each.outputs.oi);
    const b = items(together.outputs.i);
    expect(b.map((t) => t.dims[0])).toEqual([1, 1, 1]);
    a.forEach((t, i) => expect([...b[i].data.subarray(0, t.dims[1])]).toEqual([...t.data]));
    const texts = (v: unknown) => (v as { texts: string[] }).texts;
    expect(texts(together.outputs.texts)).toEqual(texts(each.outputs.texts));
    expect(texts(each.outputs.texts).every((t) => t.length > 0)).toBe(true);
    expect(texts(together.outputs.raw)).not.toEqual(texts(each.outputs.texts));
  });

  it('padBatch needs maxBatch', async () => {
    const steps: Step[] = [
      { op: 'crop-batch', params: { ...crop, output: 'x' } },
      { op: 'infer', model: 'm', params: { inputs: 'x', outputs: 'y', padBatch: true } },
    ];
    expect(await codeOf(run(steps, ['y']))).toBe('E_RUN_PIPELINE');
  });
});

describe('the OCR package on a GPU', () => {
  it('its GPU variants make few shapes: 25 page sizes for det, one for cls, one per width bucket for rec (8 lines a call)', async () => {
    const reader = await PackageReader.open('fixtures/dist/paddleocr-v4.xpkg');
    const m = reader.manifest;
    await reader.close();
    const gpu = m.models.map((x) => x.variants.find((v) => v.id.includes('cuda'))!);
    const shapes = pipelineShapes(withVariants(m, gpu));
    const recGpu = m.models.find((x) => x.id === 'rec')!.variants.find((v) => v.id.includes('cuda'))!;
    const buckets = (recGpu.steps!['rec-crop'].params as { widthBuckets: number[] }).widthBuckets;
    expect(shapes.cls.map((f) => enumerateShapes(f.dims!))).toEqual([[[32, 48, 192, 3]]]);
    // det: a page padded to 5 sizes a side, its own size beside it (the model masks the padding)
    const pad = (
      m.models[0].variants.find((v) => v.id === 'det-cuda-fp32')!.steps!['det-pre'].params as {
        padBuckets: number[];
      }
    ).padBuckets;
    const det = Object.fromEntries(shapes.det.map((f) => [f.input, enumerateShapes(f.dims!)]));
    expect(det.heights).toEqual([[1]]);
    expect(det.widths).toEqual([[1]]);
    expect(new Set(det.x.map((d: number[]) => JSON.stringify(d)))).toEqual(
      new Set(pad.flatMap((h) => pad.map((w) => JSON.stringify([1, h, w, 3])))),
    );
    // the crops, and each line's valid width beside them (the model masks its padding)
    const rec = Object.fromEntries(shapes.rec.map((f) => [f.input, enumerateShapes(f.dims!)]));
    expect(rec).toEqual({ x: [...buckets].reverse().map((w) => [8, 48, w, 3]), widths: [[8]] });
    // so open warms each bucket with its widths beside it
    const session = {
      inputNames: ['x', 'widths'],
      inputShapes: [
        { name: 'x', type: 'uint8', shape: ['N', 48, 'W', 3] },
        { name: 'widths', type: 'int32', shape: ['N'] },
      ],
    } as unknown as ModelSession;
    const plan = prewarmPlan(shapes.rec, session, 32);
    expect('feeds' in plan && plan.feeds).toEqual(
      [...buckets].reverse().map((w) => ({ x: [8, 48, w, 3], widths: [8] })),
    );
    expect(buckets.length).toBeLessThanOrEqual(32);
  });
});

describe('preprocess padBuckets', () => {
  const ctx = (params: object) =>
    pipelineContext(
      pipelineManifest({
        name: 'pad',
        outputs: ['t', 'h', 'w'],
        steps: [
          { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
          {
            op: 'preprocess',
            params: { input: 'rgb', output: 't', mode: 'limit-side', limitSide: 96, multipleOf: 32, ...params },
          },
        ],
      }),
    );

  it('pads each side to its bucket and writes the page’s own size beside the tensor; the transform is unchanged', async () => {
    // 200×42 → 96×32 (sides rounded to 32), padded to 96×64
    const image = { ...pixels, channels: 3 };
    const p = { heightsOutput: 'h', widthsOutput: 'w', dtype: 'uint8', layout: 'nhwc' };
    const own = (await runPipeline(ctx(p), { image })).outputs;
    const padded = (await runPipeline(ctx({ ...p, padBuckets: [64, 96], padValue: 7 }), { image })).outputs;
    const [a, b] = [own.t as Tensor & { transform: unknown }, padded.t as Tensor & { transform: unknown }];
    expect(a.dims).toEqual([1, 32, 96, 3]);
    expect(b.dims).toEqual([1, 64, 96, 3]);
    expect(b.transform).toEqual(a.transform);
    expect([...(b.data as Uint8Array).subarray(0, a.data.length)]).toEqual([...(a.data as Uint8Array)]);
    expect((b.data as Uint8Array).subarray(a.data.length).every((v) => v === 7)).toBe(true);
    for (const o of [own, padded]) {
      expect(o.h).toMatchObject({ type: 'int32', dims: [1], data: Int32Array.of(32) });
      expect(o.w).toMatchObject({ type: 'int32', dims: [1], data: Int32Array.of(96) });
    }
  });

  it('goes with limit-side only, ascending', async () => {
    const image = { ...pixels, channels: 3 };
    for (const params of [{ padBuckets: [64, 32] }, { mode: 'fixed', width: 32, height: 32, padBuckets: [64] }])
      expect(await codeOf(runPipeline(ctx(params), { image }))).toBe('E_RUN_PIPELINE');
  });
});
