/**
 * Model layouts beyond test/pipeline-layouts*.test.ts: classifier heads without Flatten
 * ([1, C, 1, 1]), segmenters that return class ids (their own ArgMax) or one probability channel,
 * and models exported without a batch dim ([3, H, W]). Real tiny ONNX models, values checked by hand.
 */
import { describe, expect, it } from 'vitest';
import { encodeModel } from '../fixtures/onnx-tiny.js';
import { setNativeBackend } from '../native/index.js';
import { type Classification, type DetectedBox, type Mask, runPipeline } from '../runner/pipeline/index.js';
import { pipelineShapes } from '../runner/pipeline/shapes.js';
import { prewarmPlan } from '../runner/prewarm.js';
import type { Tensor } from '../runner/types.js';
import type { Step } from '../spec/schema.js';
import {
  asFloats,
  BACKENDS,
  close,
  DETS,
  detSteps,
  echo,
  P,
  pkg,
  png,
  pre,
  stripes,
  toPlane,
  useLayoutPackages,
} from './helpers/layouts.js';
import { pipelineContext, pipelineManifest } from './helpers/pipeline.js';

useLayoutPackages();

const infer: Step = { op: 'infer', model: 'net', params: { inputs: 'head', outputs: 'out' } };

describe('a classifier head without Flatten: [1, C, 1, 1] (SqueezeNet)', () => {
  const logits = Float32Array.of(0.5, 2, -1, 2.5, 1);
  const head = { type: 'float32', dims: [1, 5, 1, 1], data: logits };

  it('top-k ranks the C classes of the one image', async () => {
    const ctx = await pkg(
      echo('float32', [1, 'c', 1, 1]),
      [infer, { op: 'top-k', params: { input: 'out', output: 'top', k: 2, labels: ['a', 'b', 'c', 'd', 'e'] } }],
      [{ name: 'top', type: 'classification' }],
      ['head'],
    );
    const top = (await runPipeline(ctx, { image: await stripes(), head })).outputs.top as Classification;
    expect(top).toEqual({ indices: [3, 1], labels: ['d', 'b'], scores: [2.5, 2] });
  });

  it('softmax runs over the C classes (then top-k reads probabilities)', async () => {
    const ctx = await pkg(
      echo('float32', [1, 'c', 1, 1]),
      [
        infer,
        { op: 'softmax', params: { input: 'out', output: 'p' } },
        { op: 'top-k', params: { input: 'p', output: 'top', k: 1 } },
      ],
      [
        { name: 'p', type: 'tensor' },
        { name: 'top', type: 'classification' },
      ],
      ['head'],
    );
    const r = await runPipeline(ctx, { image: await stripes(), head });
    const e = Array.from(logits, Math.exp);
    const sum = e.reduce((a, b) => a + b, 0);
    const p = r.outputs.p as Tensor;
    expect(p.dims).toEqual([1, 5, 1, 1]);
    asFloats(p).forEach((v, i) => expect(v).toBeCloseTo(e[i] / sum, 6));
    const top = r.outputs.top as Classification;
    expect(top.indices).toEqual([3]);
    expect(top.scores[0]).toBeCloseTo(e[3] / sum, 6);
  });
});

/** Y = ArgMax(X, axis 1, keepdims 0): int64 [1, H, W] class ids from a [1, C, H, W] score map. */
const argmaxModel = () =>
  encodeModel({
    name: 'argmax',
    nodes: [{ op: 'ArgMax', inputs: ['X'], outputs: ['Y'], intAttrs: { axis: 1, keepdims: 0 } }],
    inputs: [{ name: 'X', type: 'float32', shape: [1, 'c', 'h', 'w'] }],
    outputs: [{ name: 'Y', type: 'int64', shape: [1, 'h', 'w'] }],
  });

/**
 * A 16×16 map (a quarter of the 64×64 letterbox of the 120×60 image): class 2 in the bottom-right
 * quarter (cells ≥ 8, plane ≥ 32: original x ≥ 60, y ≥ 30), class 1 in the top-left one, else 0.
 */
const M = 16;
const classAt = (i: number, j: number) => (i >= 8 && j >= 8 ? 2 : i < 8 && j < 8 ? 1 : 0);
const scores = () => {
  const d = new Float32Array(3 * M * M);
  for (let i = 0; i < M; i++) for (let j = 0; j < M; j++) d[(classAt(i, j) * M + i) * M + j] = 1;
  return { type: 'float32', dims: [1, 3, M, M], data: d };
};
/** The class of original pixel (u, v) of the 120×60 image, from the quarters above. */
const wantAt = (u: number, v: number) => (u >= 60 && v >= 30 ? 2 : u < 60 && v < 30 ? 1 : 0);
function expectQuarters(m: Mask): void {
  expect([m.width, m.height]).toEqual([120, 60]);
  let bad = 0;
  for (let v = 0; v < 60; v++) for (let u = 0; u < 120; u++) if (m.data[v * 120 + u] !== wantAt(u, v)) bad++;
  expect(bad).toBe(0);
}

describe('segmenters that return class ids (their own ArgMax)', () => {
  for (const backend of BACKENDS)
    it(`segment-argmax maps int64 [1, H, W] ids back through the letterbox like the score map (${backend})`, async () => {
      const post = (input: string): Step => ({
        op: 'segment-argmax',
        params: { input, output: 'mask', image: 'x' },
      });
      setNativeBackend(backend);
      const ids = await pkg(argmaxModel(), detSteps([post('out')]), [{ name: 'mask', type: 'mask' }], ['head']);
      expectQuarters((await runPipeline(ids, { image: await stripes(), head: scores() })).outputs.mask as Mask);
      const sc = await pkg(
        echo('float32', [1, 3, 'h', 'w']),
        detSteps([post('out')]),
        [{ name: 'mask', type: 'mask' }],
        ['head'],
      );
      expectQuarters((await runPipeline(sc, { image: await stripes(), head: scores() })).outputs.mask as Mask);
    });

  it('argmax keeps int64 ids as the mask ([1, H, W] and NHWC [1, H, W, 1])', async () => {
    const ids = BigInt64Array.of(0n, 4n, 2n, 1n, 3n, 0n);
    for (const [dims, layout] of [
      [[1, 2, 3], undefined],
      [[1, 2, 3, 1], 'nhwc'],
    ] as const) {
      const ctx = await pkg(
        echo(
          'int64',
          dims.map((_, i) => `d${i}`),
        ),
        [infer, { op: 'argmax', params: { input: 'out', output: 'mask', ...(layout ? { layout } : {}) } }],
        [{ name: 'mask', type: 'mask' }],
        ['head'],
      );
      const m = (
        await runPipeline(ctx, { image: await stripes(), head: { type: 'int64', dims: [...dims], data: ids } })
      ).outputs.mask as Mask;
      expect([m.width, m.height]).toEqual([3, 2]);
      expect(Array.from(m.data)).toEqual([0, 4, 2, 1, 3, 0]);
    }
  });
});

describe('a binary segmenter: one probability channel [1, 1, H, W]', () => {
  const matte = () => {
    const d = new Float32Array(M * M);
    for (let i = 0; i < M; i++) for (let j = 0; j < M; j++) d[i * M + j] = classAt(i, j) === 2 ? 0.8 : 0.3;
    return { type: 'float32', dims: [1, 1, M, M], data: d };
  };

  it('segment-argmax with threshold marks the pixels above it, mapped back to the image', async () => {
    const ctx = await pkg(
      echo('float32', [1, 1, 'h', 'w']),
      detSteps([{ op: 'segment-argmax', params: { input: 'out', output: 'mask', image: 'x', threshold: 0.5 } }]),
      [{ name: 'mask', type: 'mask' }],
      ['head'],
    );
    const m = (await runPipeline(ctx, { image: await stripes(), head: matte() })).outputs.mask as Mask;
    expect([m.width, m.height]).toEqual([120, 60]);
    for (let v = 0; v < 60; v++)
      for (let u = 0; u < 120; u++) expect(m.data[v * 120 + u]).toBe(wantAt(u, v) === 2 ? 1 : 0);
  });

  it('refuses one float channel without threshold (its best class is 0 everywhere)', async () => {
    for (const op of ['segment-argmax', 'argmax']) {
      const ctx = await pkg(
        echo('float32', [1, 1, 'h', 'w']),
        detSteps([{ op, params: { input: 'out', output: 'mask' } } as Step]),
        [{ name: 'mask', type: 'mask' }],
        ['head'],
      );
      const err = await runPipeline(ctx, { image: await stripes(), head: matte() }).catch((e) => e);
      expect(err).toMatchObject({ code: 'E_RUN_PIPELINE', detail: { step: 3 } });
    }
  });

  it('refuses threshold beside a score map of several classes', async () => {
    const ctx = await pkg(
      echo('float32', [1, 3, 'h', 'w']),
      detSteps([{ op: 'segment-argmax', params: { input: 'out', output: 'mask', threshold: 0.5 } }]),
      [{ name: 'mask', type: 'mask' }],
      ['head'],
    );
    const err = await runPipeline(ctx, { image: await stripes(), head: scores() }).catch((e) => e);
    expect(err).toMatchObject({ code: 'E_RUN_PIPELINE', detail: { step: 3 } });
  });
});

describe('a model exported without a batch dim: input [3, H, W] (torchvision detectors)', () => {
  const S = 16;
  for (const backend of BACKENDS)
    it(`preprocess's [1, 3, H, W] is fed as [3, H, W] (${backend})`, async () => {
      const { file, rgb } = await png(S, S);
      const ctx = await pkg(echo('float32', [3, 'h', 'w']), pre({ mode: 'fixed', width: S, height: S }), [
        { name: 'y', type: 'tensor' },
      ]);
      setNativeBackend(backend);
      const y = (await runPipeline(ctx, { image: file })).outputs.y as Tensor;
      expect(y.dims).toEqual([3, S, S]);
      const v = asFloats(y);
      for (let k = 0; k < 3; k++)
        for (let i = 0; i < S * S; i++) expect(v[k * S * S + i]).toBeCloseTo(rgb[i * 3 + k] / 255, 6);
    });

  it('a fixed [3, 64, 64] input, its [N, 6] detections mapped back through the letterbox', async () => {
    // Y = X (the image), Z = D (the detections): what a torchvision export returns beside its input
    const model = encodeModel({
      name: 'unbatched',
      nodes: [
        { op: 'Identity', inputs: ['X'], outputs: ['Y'] },
        { op: 'Identity', inputs: ['D'], outputs: ['Z'] },
      ],
      inputs: [
        { name: 'X', type: 'float32', shape: [3, P, P] },
        { name: 'D', type: 'float32', shape: ['n', 6] },
      ],
      outputs: [
        { name: 'Y', type: 'float32', shape: [3, P, P] },
        { name: 'Z', type: 'float32', shape: ['n', 6] },
      ],
    });
    const ctx = await pkg(
      model,
      [
        { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
        { op: 'preprocess', params: { input: 'rgb', output: 'x', mode: 'letterbox', width: P, height: P } },
        { op: 'infer', model: 'net', params: { inputs: { X: 'x', D: 'head' }, outputs: { Y: 'y', Z: 'dets' } } },
        {
          op: 'nms',
          params: { input: 'dets', output: 'boxes', image: 'x', layout: 'box-score-class', iouThreshold: 0.5 },
        },
      ],
      [
        { name: 'y', type: 'tensor' },
        { name: 'boxes', type: 'boxes' },
      ],
      ['head'],
    );
    // the 120×60 image at scale 64/120 with 16 rows of padding above: (30, 15)-(90, 45) in it
    const s = P / 120;
    const r = await runPipeline(ctx, {
      image: await stripes(),
      head: { type: 'float32', dims: [1, 6], data: Float32Array.of(30 * s, 15 * s + 16, 90 * s, 45 * s + 16, 0.9, 1) },
    });
    expect((r.outputs.y as Tensor).dims).toEqual([3, P, P]);
    const [b] = r.outputs.boxes as { box: number[]; class: number }[];
    expect(b.class).toBe(1);
    b.box.forEach((v, i) => expect(v).toBeCloseTo([30, 15, 90, 45][i], 3));
  });

  it('a GPU pre-warm plans the shape the run feeds, [3, 64, 64]', async () => {
    const ctx = await pkg(echo('float32', [3, 'h', 'w']), pre({ mode: 'fixed', width: P, height: P }), [
      { name: 'y', type: 'tensor' },
    ]);
    const plan = prewarmPlan(pipelineShapes(ctx.manifest).net, await ctx.session('net'), 32);
    expect(plan).toMatchObject({ feeds: [{ X: [3, P, P] }] });
  });

  it('with maxBatch (which cuts a batch dim) the rank is still refused before the model runs', async () => {
    const ctx = await pkg(
      echo('float32', [3, 'h', 'w']),
      [
        { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
        { op: 'preprocess', params: { input: 'rgb', output: 'x', mode: 'fixed', width: 8, height: 8 } },
        { op: 'infer', model: 'net', params: { inputs: 'x', outputs: 'y', maxBatch: 4 } },
      ],
      [{ name: 'y', type: 'tensor' }],
    );
    const err = await runPipeline(ctx, { image: (await png(8, 8)).file }).catch((e) => e);
    expect(err).toMatchObject({ code: 'E_RUN_PIPELINE', detail: { step: 2, input: 'X' } });
  });
});

describe('normalised box coordinates (RT-DETR: [1, N, 4 + C], cxcywh as fractions of the input)', () => {
  // DETS in the 64×64 letterbox plane, divided by its size
  const head = () => {
    const C = 3,
      d = new Float32Array(DETS.length * (4 + C));
    DETS.forEach(([b, c, s], i) => {
      const [x1, y1, x2, y2] = toPlane(b).map((v) => v / P);
      d.set([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], i * (4 + C));
      d[i * (4 + C) + 4 + c] = s;
    });
    return { type: 'float32', dims: [1, DETS.length, 4 + C], data: d };
  };
  const posts: Record<string, Step> = {
    'detect-decode': {
      op: 'detect-decode',
      params: { input: 'out', output: 'boxes', image: 'x', layout: 'anchors-first', normalized: true },
    },
    nms: {
      op: 'nms',
      params: {
        input: 'out',
        output: 'boxes',
        image: 'x',
        format: 'cxcywh',
        layout: 'box-class-scores',
        iouThreshold: 0.45,
        classAware: true,
        normalized: true,
      },
    },
  };
  for (const [op, post] of Object.entries(posts))
    it(`${op} scales them to the plane, then maps them back through the letterbox`, async () => {
      const ctx = await pkg(
        echo('float32', ['a', 'b', 'c']),
        detSteps([post]),
        [{ name: 'boxes', type: 'boxes' }],
        ['head'],
      );
      const boxes = (await runPipeline(ctx, { image: await stripes(), head: head() })).outputs.boxes as DetectedBox[];
      expect(boxes.map((b) => b.class)).toEqual([0, 1, 2]);
      close(boxes[0].box as number[], DETS[0][0]);
      close(boxes[1].box as number[], DETS[2][0]);
      close(boxes[2].box as number[], DETS[3][0]);
    });

  it('normalized without image is refused before any step runs (nothing to scale by)', async () => {
    const ctx = await pkg(
      echo('float32', ['a', 'b', 'c']),
      detSteps([{ op: 'nms', params: { input: 'out', output: 'boxes', iouThreshold: 0.5, normalized: true } }]),
      [{ name: 'boxes', type: 'boxes' }],
      ['head'],
    );
    const err = await runPipeline(ctx, { image: await stripes(), head: head() }).catch((e) => e);
    expect(err).toMatchObject({ code: 'E_RUN_PIPELINE', detail: { step: 3 } });
  });
});

describe('ctc-decode of a recogniser without a batch dim: [T, C]', () => {
  // a vocabulary file as Windows editors write it: BOM, CRLF, a final line break
  const ctx = (blank: number) =>
    pipelineContext(
      pipelineManifest({
        name: 'ctc',
        tensors: ['t'],
        outputs: ['text'],
        outputType: 'text',
        steps: [{ op: 'ctc-decode', params: { input: 't', output: 'text', vocabulary: 'v', blank } }],
        assets: [{ id: 'v', path: 'v.txt', kind: 'vocabulary' }],
      }),
      { asset: async () => Buffer.from('\ufeffa\r\nb\r\nc\r\n') },
    );
  /** One-hot [T, C] scores of these classes. */
  const steps = (ids: number[], C = 4) => {
    const d = new Float32Array(ids.length * C);
    ids.forEach((c, i) => (d[i * C + c] = 1));
    return { type: 'float32', dims: [ids.length, C], data: d };
  };

  it('blank 0 (PaddleOCR): class i is token i − 1', async () => {
    const r = await runPipeline(ctx(0), { image: 'x', t: steps([1, 1, 0, 1, 3, 0, 2]) });
    expect(r.outputs.text).toBe('aacb');
  });
  it('blank last: class i is token i', async () => {
    const r = await runPipeline(ctx(3), { image: 'x', t: steps([0, 0, 3, 0, 2, 3, 1]) });
    expect(r.outputs.text).toBe('aacb');
  });
});
