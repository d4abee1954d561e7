/**
 * Post-processing ops: db-postprocess, order-regions, softmax, top-k, argmax, nms,
 * text-lines.
 */

import { dbPostprocess, nms, segmentArgmax, softmaxTopK } from '../../native/index.js';
import { Type } from '../../spec/typebox-lite.js';
import { softmax } from '../ops/classify.js';
import { latinAscii, parseVocabulary } from '../ops/ctc.js';
import { enclosingQuad, orderQuad, quadSize } from '../ops/geometry.js';
import { readingLayout, readingOrder } from '../ops/order.js';
import { denseFromSparse, SparseMapError } from '../ops/sparse-map.js';
import { AssetId, defineOp, Labels, Name, type OpRun } from './registry.js';
import type { ImageTransform, RegionsValue, TensorValue, TextLine } from './values.js';

const Opt = Type.Optional;

/** The most box pairs `nms` may compare (~1 s on one core; count × min(count, maxOutput)). */
export const MAX_NMS_PAIRS = 2.5e9;

/** Whether `a` holds a NaN (a model's output gone wrong: it has no order, no box, no meaning). */
export function hasNaN(a: ArrayLike<number>): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== a[i]) return true;
  return false;
}

export function floats(t: TensorValue, x: OpRun): Float32Array {
  if (t.data instanceof Float32Array) return t.data;
  if (t.type === 'float16') x.fail('float16 outputs need converting first; not supported by this op');
  return Float32Array.from(t.data as ArrayLike<number> & Iterable<number>, Number);
}

/** Rows × columns view of a tensor over its last axis. */
function matrix(t: TensorValue): { rows: number; cols: number } {
  const cols = t.dims.length ? t.dims[t.dims.length - 1] : 1;
  const rows = t.dims.length > 1 ? t.dims.slice(0, -1).reduce((a, b) => a * b, 1) : 1;
  return { rows: cols === 0 ? 0 : rows, cols };
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

/** q / 255 for every byte value, as float32 (the same values as dividing each one). */
const UNQUANTIZE = Float32Array.from({ length: 256 }, (_, q) => q / 255);

/** A uint8 map holding round(p × 255) as probabilities: a table look-up a pixel (a mapping callback costs ~10×). */
function fromQuantized(q: Uint8Array): Float32Array {
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) out[i] = UNQUANTIZE[q[i]];
  return out;
}

/** Width and height of an image tensor's plane (NCHW or NHWC, batch 1). */
export function planeOf(t: TensorValue, x: OpRun): { width: number; height: number } {
  const d = t.dims;
  if (d.length !== 4) x.fail(`expected an image tensor [1, C, H, W] or [1, H, W, C], got [${d.join(', ')}]`);
  // NHWC when the last axis looks like channels.
  return d[3] <= 4 && d[1] > 4 ? { width: d[2], height: d[1] } : { width: d[3], height: d[2] };
}

export function mapBack(t: ImageTransform | undefined, x: number, y: number): [number, number] {
  if (!t) return [x, y];
  return [(x - t.offsetX) / t.scaleX, (y - t.offsetY) / t.scaleY];
}

defineOp({
  op: 'db-postprocess',
  stage: 'post',
  summary:
    'Text-detection post-processing of a DB probability map (float, uint8 holding p × 255, or sparse: block flags in `input` with `blocks` and `blockMeans`): binarize, connected components, minimum-area rotated boxes, box score, unclip; boxes mapped back to the original image.',
  params: Type.Object(
    {
      input: Name,
      output: Name,
      image: Opt(Name),
      threshold: Opt(Type.Number({ minimum: 0, maximum: 1 })),
      boxThreshold: Opt(Type.Number({ minimum: 0, maximum: 1 })),
      unclipRatio: Opt(Type.Number({ minimum: 0, maximum: 100 })),
      minSize: Opt(Type.Number({ minimum: 0 })),
      minRegionSide: Opt(Type.Number({ minimum: 0 })),
      maxCandidates: Opt(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
      dilate: Opt(Type.Boolean()),
      // The sparse map (fixtures/onnx-prepost.ts sparseMap): `input` holds the block flags.
      blocks: Opt(Name),
      blockMeans: Opt(Name),
    },
    { additionalProperties: false },
  ),
  reads: (p) => [
    p.input,
    ...(p.image ? [p.image] : []),
    ...(p.blocks ? [p.blocks] : []),
    ...(p.blockMeans ? [p.blockMeans] : []),
  ],
  writes: (p) => [p.output],
  check: (p) =>
    (p.blocks === undefined) !== (p.blockMeans === undefined) ? 'blocks and blockMeans go together' : undefined,
  async run(p, x) {
    const t = x.get(p.input, 'tensor');
    const d = t.dims;
    let prob: Float32Array, mh: number, mw: number;
    if (p.blocks) {
      const bytes = (v: TensorValue, what: string) =>
        v.type === 'uint8' ? (v.data as Uint8Array) : x.fail(`${what} must be uint8, got ${v.type}`);
      const b = x.get(p.blocks, 'tensor');
      const m = x.get(p.blockMeans!, 'tensor');
      // a flag byte stands for 8 blocks of 8×8 pixels: the float map is 2048× the flags' bytes
      if (d.length === 2) {
        const px = d[0] * 32 * d[1] * 16;
        x.fits({ pixels: px, bytes: px * 4 }, `a ${d[1] * 16}×${d[0] * 32} probability map from sparse flags`);
      }
      try {
        const s = denseFromSparse(
          {
            flags: bytes(t, 'block flags'),
            flagDims: d,
            blocks: bytes(b, 'blocks'),
            means: bytes(m, 'block means'),
          },
          p.threshold ?? 0.3,
        );
        ({ prob, height: mh, width: mw } = s);
      } catch (e) {
        if (e instanceof SparseMapError) x.fail(`sparse map: ${e.message}`);
        throw e;
      }
    } else {
      if (d.length < 2 || d.slice(0, -2).some((v) => v !== 1))
        x.fail(`expected a [1, 1, H, W] probability map, got [${d.join(', ')}]`);
      mh = d[d.length - 2];
      mw = d[d.length - 1];
      // A uint8 map holds round(p × 255) (a GPU variant thresholds and quantises in the model).
      prob = t.type === 'uint8' ? fromQuantized(t.data as Uint8Array) : floats(t, x);
    }
    const r = await dbPostprocess(prob, {
      width: mw,
      height: mh,
      threshold: p.threshold ?? 0.3,
      boxThreshold: p.boxThreshold ?? 0.6,
      unclipRatio: p.unclipRatio ?? 1.5,
      minSize: p.minSize ?? 3,
      maxCandidates: p.maxCandidates ?? 1000,
      dilate: p.dilate ?? false,
    });
    // `image`: the resized image the map was made from, or the tensor `preprocess` made of it.
    const iv = p.image ? x.get(p.image, 'image', 'tensor') : undefined;
    const img = iv?.kind === 'tensor' ? { ...planeOf(iv, x), transform: iv.transform } : iv;
    // Map pixels → image pixels → original image pixels.
    const kx = img ? img.width / mw : 1,
      ky = img ? img.height / mh : 1;
    const W = img?.transform?.width ?? img?.width ?? mw,
      H = img?.transform?.height ?? img?.height ?? mh;
    const minSide = p.minRegionSide ?? 4;
    const quads: number[] = [];
    const scores: number[] = [];
    for (let i = 0; i < r.count; i++) {
      const q: number[] = [];
      for (let k = 0; k < 4; k++) {
        const [sx, sy] = mapBack(img?.transform, r.quads[8 * i + 2 * k] * kx, r.quads[8 * i + 2 * k + 1] * ky);
        q.push(Math.min(Math.max(sx, 0), W), Math.min(Math.max(sy, 0), H));
      }
      const o = orderQuad(q);
      const s = quadSize(o);
      if (Math.min(s.width, s.height) < minSide) continue;
      quads.push(...o);
      scores.push(r.scores[i]);
    }
    x.set(p.output, {
      kind: 'regions',
      count: scores.length,
      quads: Float32Array.from(quads),
      scores: Float32Array.from(scores),
      width: W,
      height: H,
    });
  },
});

defineOp({
  op: 'order-regions',
  stage: 'post',
  summary:
    "Sorts regions into reading order in the page's own frame (its text direction estimated from the boxes): top to bottom, a column at a time, columns left to right, tables row by row.",
  params: Type.Object(
    {
      input: Name,
      output: Name,
      columnGap: Opt(Type.Number({ minimum: 0 })),
      minColumnWidth: Opt(Type.Number({ minimum: 0 })),
      shrink: Opt(Type.Number({ minimum: 0, maximum: 0.5 })),
      direction: Opt(Type.Union([Type.Literal('axial'), Type.Literal('oriented'), Type.Literal('none')])),
    },
    { additionalProperties: false },
  ),
  reads: (p) => [p.input],
  writes: (p) => [p.output],
  run(p, x) {
    const r = x.get(p.input, 'regions');
    const perm = readingOrder(r.quads, r.count, {
      columnGap: p.columnGap,
      minColumnWidth: p.minColumnWidth,
      shrink: p.shrink,
      direction: p.direction,
    });
    const quads = new Float32Array(r.count * 8);
    const scores = new Float32Array(r.count);
    perm.forEach((src, i) => {
      quads.set(r.quads.subarray(8 * src, 8 * src + 8), 8 * i);
      scores[i] = r.scores[src];
    });
    x.set(p.output, { ...r, quads, scores } satisfies RegionsValue);
  },
});

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
  summary: 'Per-pixel class of a [1, C, H, W] score map (or channel 0 > threshold when given) as a label mask.',
  params: Type.Object(
    { input: Name, output: Name, threshold: Opt(Type.Number()), ...LabelParams },
    { additionalProperties: false },
  ),
  reads: (p) => [p.input],
  writes: (p) => [p.output],
  assets: labelAssets,
  async run(p, x) {
    const t = x.get(p.input, 'tensor');
    const d = t.dims.length === 4 ? t.dims : t.dims.length === 3 ? [1, ...t.dims] : [];
    if (d.length !== 4 || d[0] !== 1) x.fail(`expected [1, C, H, W] or [C, H, W], got [${t.dims.join(', ')}]`);
    const [, c, h, w] = d;
    const src = floats(t, x);
    const plane = h * w;
    let mask: Int32Array;
    if (p.threshold !== undefined) {
      mask = new Int32Array(plane);
      for (let i = 0; i < plane; i++) mask[i] = src[i] > p.threshold ? 1 : 0;
    } else mask = Int32Array.from((await segmentArgmax(src, { dims: [1, c, h, w] })).labels);
    const labels = await labelsOf(p, x);
    x.set(p.output, { kind: 'mask', width: w, height: h, data: mask, ...(labels ? { labels } : {}) });
  },
});

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
      classAware: Opt(Type.Boolean()),
      image: Opt(Name),
      ...LabelParams,
    },
    { additionalProperties: false },
  ),
  reads: (p) => [p.input, ...(p.image ? [p.image] : [])],
  writes: (p) => [p.output],
  assets: labelAssets,
  async run(p, x) {
    const v = x.get(p.input, 'boxes', 'tensor');
    let boxes: Float32Array, scores: Float32Array, classes: Int32Array | undefined, count: number;
    if (v.kind === 'boxes') ({ boxes, scores, classes, count } = v);
    else {
      const d = v.dims.filter((n, i) => !(n === 1 && i < v.dims.length - 2));
      if (d.length !== 2) x.fail(`expected a [N, K] detection tensor, got [${v.dims.join(', ')}]`);
      const src = floats(v, x);
      const [n, k] = p.transpose ? [d[1], d[0]] : [d[0], d[1]];
      const at = (i: number, j: number) => (p.transpose ? src[j * n + i] : src[i * k + j]);
      const layout = p.layout ?? 'box-score';
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
    const img = p.image ? x.get(p.image, 'image') : undefined;
    const t = img?.transform;
    // Boxes are clipped to the image they refer to when it is known.
    const W = t?.width ?? img?.width ?? Infinity,
      H = t?.height ?? img?.height ?? Infinity;
    const clip = (v: number, max: number) => (img ? Math.min(Math.max(v, 0), max) : v);
    const ob = new Float32Array(keep.length * 4);
    keep.forEach((i, j) => {
      const [x1, y1] = mapBack(t, boxes[4 * i], boxes[4 * i + 1]);
      const [x2, y2] = mapBack(t, boxes[4 * i + 2], boxes[4 * i + 3]);
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

defineOp({
  op: 'text-lines',
  stage: 'post',
  summary:
    'Pairs decoded texts with their regions (crops carry their source quad) into {text, score, box} lines, dropping empty or low-confidence ones; optionally in reading order with the boxes of a row joined, and full-width ASCII forms in Latin lines made ASCII.',
  params: Type.Object(
    {
      texts: Name,
      regions: Name,
      output: Name,
      minScore: Opt(Type.Number()),
      keepEmpty: Opt(Type.Boolean()),
      order: Opt(Type.Boolean()),
      joinRows: Opt(Type.Boolean()),
      latinAscii: Opt(Type.Boolean()),
    },
    { additionalProperties: false },
  ),
  reads: (p) => [p.texts, p.regions],
  writes: (p) => [p.output],
  run(p, x) {
    const t = x.get(p.texts, 'texts');
    const r = x.get(p.regions, 'images', 'regions');
    const quads: (ArrayLike<number> | undefined)[] =
      r.kind === 'images'
        ? r.items.map((i) => i.quad)
        : Array.from({ length: r.count }, (_, i) => r.quads.subarray(8 * i, 8 * i + 8));
    if (quads.length !== t.texts.length) x.fail(`${t.texts.length} texts for ${quads.length} regions`);
    const min = p.minScore ?? 0;
    let kept: { text: string; score: number; q: ArrayLike<number> }[] = [];
    t.texts.forEach((raw, i) => {
      const q = quads[i] ?? x.fail(`region ${i} has no source quad`);
      // CTC emits the space token at line ends as readily as inside; edges carry no text.
      const text = raw.trim();
      const score = t.scores[i];
      if ((!text && !p.keepEmpty) || !(score >= min)) return;
      kept.push({ text, score, q });
    });
    if (p.order) {
      // The boxes start at the text's own top-left (crop-batch regionsOutput), so their first
      // edges give the page's direction a full turn round: upside-down pages read top down too.
      const flat = new Float64Array(8 * kept.length);
      kept.forEach((k, i) => flat.set(Array.from(k.q), 8 * i));
      const { order, line, angle } = readingLayout(flat, kept.length, { direction: 'oriented' });
      const rows: (typeof kept)[] = [];
      order.forEach((src, k) => {
        if (p.joinRows !== false && k && line[k] === line[k - 1]) rows[rows.length - 1].push(kept[src]);
        else rows.push([kept[src]]);
      });
      kept = rows.map((parts) => {
        if (parts.length === 1) return parts[0];
        const chars = parts.reduce((n, l) => n + l.text.length, 0);
        const score = parts.reduce((a, l) => a + l.score * l.text.length, 0) / Math.max(1, chars);
        return {
          text: parts
            .map((l) => l.text)
            .filter(Boolean)
            .join(' '),
          score,
          q: enclosingQuad(
            parts.map((l) => l.q),
            angle,
          ),
        };
      });
    }
    const lines: TextLine[] = kept.map(({ text, score, q }) => {
      const pt = (k: number): [number, number] => [Math.round(q[2 * k]), Math.round(q[2 * k + 1])];
      return {
        text: p.latinAscii ? latinAscii(text) : text,
        score: Math.round(score * 1e4) / 1e4,
        box: [pt(0), pt(1), pt(2), pt(3)],
      };
    });
    x.set(p.output, { kind: 'text-lines', lines });
  },
});
