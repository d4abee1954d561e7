/**
 * Post-processing ops of text regions: db-postprocess (a detector's probability map to quads),
 * order-regions and text-lines (decoded texts paired with their regions, in reading order).
 */
import { dbPostprocess } from '../../native/index.js';
import { Type } from '../../spec/typebox-lite.js';
import { latinAscii } from '../ops/ctc.js';
import { enclosingQuad, orderQuad, quadSize } from '../ops/geometry.js';
import { readingLayout, readingOrder } from '../ops/order.js';
import { denseFromSparse, SparseMapError } from '../ops/sparse-map.js';
import { floats, mapBack, planeOf } from './ops-post.js';
import { defineOp, Name } from './registry.js';
import type { RegionsValue, TensorValue, TextLine } from './values.js';

const Opt = Type.Optional;

/** q / 255 for every byte value, as float32 (the same values as dividing each one). */
const UNQUANTIZE = Float32Array.from({ length: 256 }, (_, q) => q / 255);

/** A uint8 map holding round(p × 255) as probabilities: a table look-up a pixel (a mapping callback costs ~10×). */
function fromQuantized(q: Uint8Array): Float32Array {
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) out[i] = UNQUANTIZE[q[i]];
  return out;
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
