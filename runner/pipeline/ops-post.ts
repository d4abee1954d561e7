/**
 * Post-processing ops on scores and boxes: softmax, top-k, argmax, nms; and the helpers the other
 * post ops share (ops-regions.ts: db-postprocess, order-regions, text-lines; ops-ctc.ts; ops-detect.ts).
 */

import { halvesToFloats, nms, segmentArgmax, softmaxTopK } from '../../native/index.js';
import { Type } from '../../spec/typebox-lite.js';
import { softmax } from '../ops/classify.js';
import { parseVocabulary } from '../ops/ctc.js';
import { AssetId, defineOp, Labels, Name, type OpRun } from './registry.js';
import type { ImageTransform, TensorValue } from './values.js';

const Opt = Type.Optional;

/** The most box pairs `nms` may compare (~1 s on one core; count × min(count, maxOutput)). */
export const MAX_NMS_PAIRS = 2.5e9;

/** Whether `a` holds a NaN (a model's output gone wrong: it has no order, no box, no meaning). */
export function hasNaN(a: ArrayLike<number>): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== a[i]) return true;
  return false;
}

/**
 * The tensor as float32: float16 (an fp16 model's outputs, kept as half bits) decoded, integers
 * converted. Reading the bits as numbers would give scores of thousands and boxes far off the image.
 */
export function floats(t: TensorValue, _x?: OpRun): Float32Array {
  if (t.data instanceof Float32Array) return t.data;
  if (t.type === 'float16') return halvesToFloats(t.data as Uint16Array);
  return Float32Array.from(t.data as ArrayLike<number> & Iterable<number>, Number);
}

/**
 * Rows × columns view of a tensor over its class axis: the last one, trailing 1s past rank 2 left
 * out. A convolutional head without Flatten (SqueezeNet: [1, 1000, 1, 1]) read over its last axis
 * was 1000 rows of one class, each "class 0".
 */
function matrix(t: TensorValue): { rows: number; cols: number } {
  let r = t.dims.length;
  while (r > 2 && t.dims[r - 1] === 1) r--;
  const cols = r ? t.dims[r - 1] : 1;
  const rows = r > 1 ? t.dims.slice(0, r - 1).reduce((a, b) => a * b, 1) : 1;
  return { rows: cols === 0 ? 0 : rows, cols };
}

const INTEGER_TYPES: ReadonlySet<string> = new Set(['int64', 'int32', 'int8', 'uint8', 'bool']);

/**
 * The labels of a one-channel map ([1, 1, H, W], [1, H, W]), or undefined when it has several
 * channels (scores to take the best of): class ids as they are when it is of an integer type (a
 * model with its own ArgMax), channel > `threshold` when given. One channel of float scores
 * without a threshold fails: its best class would be 0 at every pixel.
 */
export function oneChannelLabels(
  t: TensorValue,
  channels: number,
  threshold: number | undefined,
  x: OpRun,
): Int32Array | undefined {
  if (channels !== 1) return undefined;
  if (threshold === undefined) {
    if (INTEGER_TYPES.has(t.type))
      return Int32Array.from(t.data as ArrayLike<number | bigint> & Iterable<number | bigint>, Number);
    return x.fail(
      `a one-channel ${t.type} map [${t.dims.join(', ')}] has no other class to pick: set threshold (a probability map), or give class ids as an integer tensor`,
      { dims: [...t.dims] },
    );
  }
  return Int32Array.from(floats(t, x), (v) => (v > threshold ? 1 : 0));
}

/**
 * The most tokens a labels or vocabulary asset may hold (the largest OCR vocabularies have ~20 000;
 * `labels` in params at most 100 000). Each line costs a string slot: an asset of 500 M newlines,
 * a package's to ship, was 4 GB of heap and a fatal out-of-memory before this cap.
 */
export const MAX_TOKENS = 1_000_000;

/** The asset's tokens (parseVocabulary), its lines counted first: E_RUN_PIPELINE above MAX_TOKENS. */
export function tokensOf(text: string, id: string, x: OpRun, options?: { appendSpace?: boolean }): string[] {
  let lines = 1;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1))
    // +1: a trailing newline ends the last token rather than starting one
    if (++lines > MAX_TOKENS + 1) x.fail(`asset ${id} holds more than ${MAX_TOKENS} tokens`, { asset: id });
  const tokens = parseVocabulary(text, options);
  if (tokens.length > MAX_TOKENS) x.fail(`asset ${id} holds more than ${MAX_TOKENS} tokens`, { asset: id });
  return tokens;
}

export async function labelsOf(
  p: { labels?: string[]; labelsAsset?: string },
  x: OpRun,
): Promise<string[] | undefined> {
  if (p.labels) return p.labels;
  if (p.labelsAsset) {
    const id = p.labelsAsset;
    return x.memo(`labels:${id}`, async () => tokensOf(await x.text(id), id, x));
  }
  return undefined;
}

/** Width and height of an image tensor's plane (NCHW or NHWC, batch 1). */
export function planeOf(t: TensorValue, x: OpRun): { width: number; height: number } {
  const d = t.dims;
  if (d.length !== 4) x.fail(`expected an image tensor [1, C, H, W] or [1, H, W, C], got [${d.join(', ')}]`);
  // NHWC when the last axis looks like channels.
  return d[3] <= 4 && d[1] > 4 ? { width: d[2], height: d[1] } : { width: d[3], height: d[2] };
}

/** The transform and plane size of the image (or `preprocess` tensor) a model saw. */
export function frameOf(
  name: string | undefined,
  x: OpRun,
): { transform?: ImageTransform; width: number; height: number } | undefined {
  if (!name) return undefined;
  const v = x.get(name, 'image', 'tensor');
  if (v.kind === 'image') return { transform: v.transform, width: v.width, height: v.height };
  return { transform: (v as TensorValue).transform, ...planeOf(v, x) };
}

export function mapBack(t: ImageTransform | undefined, x: number, y: number): [number, number] {
  if (!t) return [x, y];
  return [(x - t.offsetX) / t.scaleX, (y - t.offsetY) / t.scaleY];
}

defineOp({
  op: 'softmax',
  stage: 'post',
  summary: 'Softmax over the last axis of a tensor.',
  params: Type.Object({ input: Name, output: Name }, { additionalProperties: false }),
  reads: (p) => [p.input],
  writes: (p) => [p.output],
  run(p, x) {
    const t = x.get(p.input, 'tensor');
    const { rows, cols } = matrix(t);
    x.set(p.output, { kind: 'tensor', type: 'float32', dims: t.dims, data: softmax(floats(t, x), rows, cols) });
  },
});

export const LabelParams = { labels: Opt(Labels), labelsAsset: Opt(AssetId) };
/** Hooks of an op taking LabelParams: the asset it reads, and labels given one way only. */
export const labelAssets = (p: { labelsAsset?: string }): string[] => (p.labelsAsset ? [p.labelsAsset] : []);
export const labelHooks = {
  assets: labelAssets,
  check: (p: { labels?: string[]; labelsAsset?: string }): string | undefined =>
    p.labels && p.labelsAsset ? 'give labels or labelsAsset, not both' : undefined,
};

defineOp({
  op: 'top-k',
  stage: 'post',
  summary:
    'The k best classes of each row of a [N, C] tensor (softmax first if asked), with labels from params or a labels asset.',
  params: Type.Object(
    {
      input: Name,
      output: Name,
      k: Opt(Type.Integer({ minimum: 1, maximum: 1000 })),
      softmax: Opt(Type.Boolean()),
      ...LabelParams,
    },
    { additionalProperties: false },
  ),
  reads: (p) => [p.input],
  writes: (p) => [p.output],
  ...labelHooks,
  async run(p, x) {
    const v = x.get(p.input, 'tensor', 'tensors');
    const indices: number[] = [];
    const scores: number[] = [];
    let count = 0;
    let k = p.k ?? 1;
    for (const t of v.kind === 'tensor' ? [v] : v.items) {
      const { rows, cols } = matrix(t);
      if (!rows) continue;
      const kk = Math.min(p.k ?? 1, cols);
      const f = floats(t, x);
      // a NaN score has no rank: the classes picked around it would be an accident of the scan
      if (hasNaN(f)) x.fail('the scores hold NaN', { nan: true });
      const r = await softmaxTopK(f, { dims: [rows, cols], k: kk, softmax: p.softmax ?? false });
      if (count && kk !== k) x.fail('tensors in the list have different class counts');
      if (hasNaN(r.values)) x.fail('the scores hold NaN', { nan: true });
      k = kk;
      count += rows;
      // one at a time: a spread of a large batch's rows overflows the call stack
      for (let i = 0; i < r.values.length; i++) {
        indices.push(r.indices[i]);
        scores.push(r.values[i]);
      }
    }
    const labels = await labelsOf(p, x);
    x.set(p.output, {
      kind: 'classes',
      count,
      k,
      indices: Int32Array.from(indices),
      scores: Float32Array.from(scores),
      ...(labels ? { labels } : {}),
    });
  },
});

defineOp({
  op: 'argmax',
  stage: 'post',
  summary:
    'Per-pixel class of a [1, C, H, W] score map (or [1, H, W, C] with layout nhwc; channel 0 > threshold when given) as a label mask.',
  params: Type.Object(
    {
      input: Name,
      output: Name,
      threshold: Opt(Type.Number()),
      layout: Opt(Type.Union([Type.Literal('nchw'), Type.Literal('nhwc')])),
      ...LabelParams,
    },
    { additionalProperties: false },
  ),
  reads: (p) => [p.input],
  writes: (p) => [p.output],
  assets: labelAssets,
  async run(p, x) {
    const t = x.get(p.input, 'tensor');
    const d = t.dims.length === 4 ? t.dims : t.dims.length === 3 ? [1, ...t.dims] : [];
    const nhwc = p.layout === 'nhwc';
    if (d.length !== 4 || d[0] !== 1)
      x.fail(
        `expected ${nhwc ? '[1, H, W, C] or [H, W, C]' : '[1, C, H, W] or [C, H, W]'}, got [${t.dims.join(', ')}]`,
      );
    // an NHWC map read as NCHW would take its rows for classes: a mask of the wrong size, no error
    const [c, h, w] = nhwc ? [d[3], d[1], d[2]] : [d[1], d[2], d[3]];
    const plane = h * w;
    let mask = oneChannelLabels(t, c, p.threshold, x);
    if (!mask && p.threshold !== undefined) {
      const src = floats(t, x);
      mask = new Int32Array(plane);
      const step = nhwc ? c : 1;
      for (let i = 0; i < plane; i++) mask[i] = src[i * step] > p.threshold ? 1 : 0;
    } else if (!mask)
      mask = Int32Array.from(
        (await segmentArgmax(floats(t, x), { dims: [...d], layout: nhwc ? 'nhwc' : 'nchw' })).labels,
      );
    const labels = await labelsOf(p, x);
    x.set(p.output, { kind: 'mask', width: w, height: h, data: mask, ...(labels ? { labels } : {}) });
  },
});

/**
 * Split detector outputs as one row per box: columns 0-3 from the boxes, then the `scores` tensor's
 * C columns ([N] or [N, C]; `transpose`: [C, N]), then the `classes` tensor's id. One score is
 * `box-score` (`box-score-class` with classes), several are `box-class-scores`.
 */
function splitRows(
  p: { scores?: string; classes?: string; transpose?: boolean },
  x: OpRun,
  n: number,
  kb: number,
  box: (i: number, j: number) => number,
) {
  if (kb !== 4) x.fail(`expected [N, 4] boxes beside scores, got ${kb} values per box`);
  const st = x.get(p.scores!, 'tensor');
  const sc = floats(st, x);
  const c = n ? sc.length / n : 1;
  const last = st.dims[st.dims.length - 1];
  // the scores must be one per box, or per box and class along the axis `transpose` names
  if (!Number.isInteger(c) || c < 1 || (c > 1 && st.dims.length > 1 && last !== (p.transpose ? n : c)))
    x.fail(
      `scores [${st.dims.join(', ')}] are not [${n}] or [${n}, C]${p.transpose ? ' transposed' : ''} for ${n} boxes`,
    );
  const score = (i: number, j: number) => (p.transpose ? sc[j * n + i] : sc[i * c + j]);
  let ids: Float32Array | undefined;
  if (p.classes) {
    const ct = x.get(p.classes, 'tensor');
    if (c > 1) x.fail('classes goes with one score per box; these scores have one per class');
    ids = floats(ct, x);
    if (ids.length !== n) x.fail(`classes [${ct.dims.join(', ')}] hold ${ids.length} ids for ${n} boxes`);
  }
  const at = (i: number, j: number) => (j < 4 ? box(i, j) : j < 4 + c ? score(i, j - 4) : ids![i]);
  const layout: 'box-score' | 'box-score-class' | 'box-class-scores' =
    c > 1 ? 'box-class-scores' : ids ? 'box-score-class' : 'box-score';
  return { k: 4 + c + (ids ? 1 : 0), at, layout };
}

defineOp({
  op: 'nms',
  stage: 'post',
  summary:
    "Non-maximum suppression of boxes (a boxes value or a detector tensor laid out box+score, box+score+class or box+class-scores), optionally mapped back through an image's resize.",
  params: Type.Object(
    {
      input: Name,
      output: Name,
      iouThreshold: Type.Number({ minimum: 0, maximum: 1 }),
      scoreThreshold: Opt(Type.Number()),
      maxOutput: Opt(Type.Integer({ minimum: 0 })),
      format: Opt(Type.Union([Type.Literal('xyxy'), Type.Literal('cxcywh')])),
      layout: Opt(Type.Union(['box-score', 'box-score-class', 'box-class-scores'].map((l) => Type.Literal(l)))),
      transpose: Opt(Type.Boolean()),
      // split outputs: `input` holds the [N, 4] boxes, `scores` [N] or [N, C], `classes` [N] ids
      scores: Opt(Name),
      classes: Opt(Name),
      classAware: Opt(Type.Boolean()),
      image: Opt(Name),
      // coordinates are fractions of the model input's width and height (RT-DETR, TF detectors), not pixels
      normalized: Opt(Type.Boolean()),
      ...LabelParams,
    },
    { additionalProperties: false },
  ),
  reads: (p) => [p.input, ...[p.scores, p.classes, p.image].filter((n): n is string => n !== undefined)],
  writes: (p) => [p.output],
  assets: labelAssets,
  check(p) {
    if (p.normalized && !p.image) return 'normalized needs image: the model input whose size the fractions are of';
    if (p.classes && !p.scores) return 'classes goes with scores (split boxes, scores and classes tensors)';
    if (p.scores && p.layout) return 'layout describes one detection tensor; with scores the boxes are [N, 4]';
    return undefined;
  },
  async run(p, x) {
    const v = x.get(p.input, 'boxes', 'tensor');
    let boxes: Float32Array, scores: Float32Array, classes: Int32Array | undefined, count: number;
    if (v.kind === 'boxes') {
      if (p.scores) x.fail('scores goes with a boxes tensor, not a boxes value');
      ({ boxes, scores, classes, count } = v);
    } else {
      const d = v.dims.filter((n, i) => !(n === 1 && i < v.dims.length - 2));
      if (d.length !== 2) x.fail(`expected a [N, K] detection tensor, got [${v.dims.join(', ')}]`);
      const src = floats(v, x);
      const [n, kb] = p.transpose ? [d[1], d[0]] : [d[0], d[1]];
      let k = kb;
      let at = (i: number, j: number) => (p.transpose ? src[j * n + i] : src[i * kb + j]);
      let layout = p.layout ?? 'box-score';
      if (p.scores) ({ k, at, layout } = splitRows(p, x, n, kb, at));
      if (k < (layout === 'box-score-class' ? 6 : 5)) x.fail(`layout ${layout} needs more than ${k} values per box`);
      count = n;
      boxes = new Float32Array(4 * n);
      scores = new Float32Array(n);
      classes = layout === 'box-score' ? undefined : new Int32Array(n);
      for (let i = 0; i < n; i++) {
        let [a, b, c, e] = [at(i, 0), at(i, 1), at(i, 2), at(i, 3)];
        if (p.format === 'cxcywh') [a, b, c, e] = [a - c / 2, b - e / 2, a + c / 2, b + e / 2];
        // a box with a NaN or infinite corner has no overlap to suppress by, nor a place to report
        if (!Number.isFinite(a + b + c + e)) x.fail(`box ${i} has a non-finite coordinate`, { box: i });
        boxes.set([a, b, c, e], 4 * i);
        if (layout === 'box-class-scores') {
          let best = 4;
          for (let j = 5; j < k; j++) if (at(i, j) > at(i, best)) best = j;
          scores[i] = at(i, best);
          classes![i] = best - 4;
        } else {
          scores[i] = at(i, 4);
          if (classes) classes[i] = at(i, 5);
        }
      }
    }
    if (v.kind === 'boxes' && !Number.isFinite(boxes.subarray(0, 4 * count).reduce((s, c) => s + c, 0)))
      x.fail('a box has a non-finite coordinate');
    if (hasNaN(scores.subarray(0, count))) x.fail('the scores hold NaN', { nan: true });
    // each box is compared with every one kept before it: boxes that overlap without suppressing
    // each other cost count² (300 000 took a minute), so count × the most kept is bounded
    const pairs = count * Math.min(count, p.maxOutput ?? count);
    if (pairs > MAX_NMS_PAIRS)
      x.fail(`${count} boxes could need ${pairs} comparisons, above ${MAX_NMS_PAIRS}: set a smaller maxOutput`, {
        boxes: count,
      });
    const keep = count
      ? (
          await nms(boxes, scores, {
            iouThreshold: p.iouThreshold,
            ...(p.scoreThreshold !== undefined ? { scoreThreshold: p.scoreThreshold } : {}),
            ...(p.maxOutput !== undefined ? { maxOutput: p.maxOutput } : {}),
            ...(p.classAware && classes ? { classes } : {}),
          })
        ).keep
      : new Int32Array(0);
    // the model's input: a resized image or a `preprocess`/`normalize` tensor, both carry the transform
    const img = frameOf(p.image, x);
    const t = img?.transform;
    // Boxes are clipped to the image they refer to when it is known.
    const W = t?.width ?? img?.width ?? Infinity,
      H = t?.height ?? img?.height ?? Infinity;
    const clip = (v: number, max: number) => (img ? Math.min(Math.max(v, 0), max) : v);
    // fractions → pixels of the plane the model saw (IoU is the same in either unit)
    const [sx, sy] = p.normalized && img ? [img.width, img.height] : [1, 1];
    const ob = new Float32Array(keep.length * 4);
    keep.forEach((i, j) => {
      const [x1, y1] = mapBack(t, boxes[4 * i] * sx, boxes[4 * i + 1] * sy);
      const [x2, y2] = mapBack(t, boxes[4 * i + 2] * sx, boxes[4 * i + 3] * sy);
      ob.set([clip(x1, W), clip(y1, H), clip(x2, W), clip(y2, H)], 4 * j);
    });
    const labels = await labelsOf(p, x);
    x.set(p.output, {
      kind: 'boxes',
      count: keep.length,
      boxes: ob,
      scores: Float32Array.from(keep, (i) => scores[i]),
      ...(classes ? { classes: Int32Array.from(keep, (i) => classes![i]) } : {}),
      ...(labels ? { labels } : {}),
    });
  },
});
