/**
 * The fused crop op over the native kernels (native/index.ts): `crop-batch` (cut regions out, scale
 * them to one height and normalise them into one padded batch tensor, one tensor per region, or
 * lists of batches); `preprocess` is in ops-preprocess.ts.
 */

import { type CropOptions, type CropResult, cropBatch, type ImageInput, type OutAlloc } from '../../native/index.js';
import { planCrop } from '../../native/plan.js';
import { Type } from '../../spec/typebox-lite.js';
import { quadSize } from '../ops/geometry.js';
import { turnRow180 } from '../ops/turn-rows.js';
import {
  checkNorm,
  elementBytes,
  imageInput,
  type NormP,
  NormParams,
  norm,
  normProblem,
  tensorType,
} from './norm-params.js';
import { classPicker, regionQuads, regionWindow, turnQuad } from './ops-crop.js';
import { defineOp, Name } from './registry.js';
import type { RegionsValue, TensorValue } from './values.js';

const Opt = Type.Optional;

/** Bytes of the tensor a crop plan makes (count × channels × height × width elements). */
const cropBytes = (image: ImageInput, quads: number[], opts: CropOptions, p: NormP) =>
  planCrop(image, quads, opts).dims.reduce((n, d) => n * d, elementBytes(p));

/**
 * One fixed-width batch crop as `calls` kernel calls at once, each on the window of the image its
 * regions need (regionWindow: an async call copies its input image) and writing its regions into
 * the shared tensor: more cores than one call's threads, which take contiguous rows so long lines
 * bunch up. The quads move into each window, so values may differ from one call's by float rounding.
 */
async function cropSplit(
  image: ImageInput,
  cut: number[],
  o: CropOptions,
  calls: number,
  alloc: OutAlloc,
): Promise<CropResult> {
  const n = cut.length / 8;
  const parts = Math.min(calls, n);
  if (parts < 2) return cropBatch(image, cut, { ...o, alloc });
  const bounds = Array.from({ length: parts + 1 }, (_, i) => Math.round((n * i) / parts));
  return cropParts(
    image,
    cut,
    bounds.slice(0, -1).map((b, i) => Array.from({ length: bounds[i + 1] - b }, (_, k) => b + k)),
    o,
    alloc,
  );
}

/** One batch of the regions `parts` lists (its rows in that order), one kernel call per part, all at once. */
async function cropParts(
  image: ImageInput,
  cut: number[],
  parts: number[][],
  o: CropOptions,
  /** The batch tensor's array (OpRun.scratch: every element is written, rows and their padding). */
  alloc: OutAlloc,
): Promise<CropResult> {
  const quadsOf = (part: number[]) => part.flatMap((i) => cut.slice(8 * i, 8 * i + 8));
  const dims = planCrop(image, quadsOf(parts[0]).slice(0, 8), o).dims;
  const per = dims.slice(1).reduce((a, b) => a * b, 1);
  const n = parts.reduce((a, q) => a + q.length, 0);
  const out = alloc(o.dtype ?? 'f32', per * n);
  let at = 0;
  const rs = await Promise.all(
    parts.map((part) => {
      const outOffset = per * at;
      at += part.length;
      return cropBatch(...regionWindow(image, quadsOf(part)), { ...o, out, outOffset });
    }),
  );
  const join = <T extends Int32Array | Uint8Array>(k: 'widths' | 'rotated', C: new (v: number[]) => T) =>
    new C(rs.flatMap((r) => Array.from(r[k])));
  return {
    data: out,
    dims: [n, ...dims.slice(1)],
    widths: join('widths', Int32Array),
    rotated: join('rotated', Uint8Array),
  };
}

/**
 * Whether crop-batch turns the lines its classification picks after cutting them: a half turn
 * (sizes unchanged), and not `overflow: 'crop'` (which keeps a line's leading part, and a turn
 * changes which end leads).
 */
function turnedLater(p: { classes?: string; angle?: number; overflow?: string }): boolean {
  return p.classes !== undefined && p.angle === 180 && p.overflow !== 'crop';
}

/** The first `fraction` of a quad along its reading direction (TL→TR, BL→BR). */
function leading(q: number[], fraction: number): number[] {
  const lerp = (a: number, b: number) => a + (b - a) * fraction;
  return [q[0], q[1], lerp(q[0], q[2]), lerp(q[1], q[3]), lerp(q[6], q[4]), lerp(q[7], q[5]), q[6], q[7]];
}

defineOp({
  op: 'crop-batch',
  stage: 'pre',
  summary:
    'Cuts regions out of an image (perspective-corrected, tall ones turned, optionally turned per a classification), scales them to one height and normalises them into one padded batch tensor (widths per item), one tensor per region, or (groupSize) a list of batches of lines of similar width (native kernel).',
  params: Type.Object(
    {
      image: Name,
      regions: Name,
      output: Name,
      regionsOutput: Opt(Name),
      // each item's valid width as an int32 tensor (a list of them beside a list), for a model
      // that masks its padding (fixtures/onnx-pad-mask.ts)
      widthsOutput: Opt(Name),
      height: Type.Integer({ minimum: 1, maximum: 4096 }),
      width: Opt(Type.Integer({ minimum: 1, maximum: 32768 })),
      minWidth: Opt(Type.Integer({ minimum: 1, maximum: 32768 })),
      maxWidth: Opt(Type.Integer({ minimum: 1, maximum: 32768 })),
      widthMultiple: Opt(Type.Integer({ minimum: 1, maximum: 4096 })),
      overflow: Opt(Type.Union([Type.Literal('squeeze'), Type.Literal('crop')])),
      rotateTall: Opt(Type.Number({ minimum: 0 })),
      classes: Opt(Name),
      label: Opt(Type.Union([Type.String({ maxLength: 256 }), Type.Integer({ minimum: 0 })])),
      minScore: Opt(Type.Number()),
      angle: Opt(Type.Union([Type.Literal(90), Type.Literal(180), Type.Literal(270)])),
      padValue: Opt(Type.Number()),
      batch: Opt(Type.Boolean()),
      widthBuckets: Opt(Type.Array(Type.Integer({ minimum: 1, maximum: 32768 }), { minItems: 1, maxItems: 64 })),
      calls: Opt(Type.Integer({ minimum: 1, maximum: 64 })),
      groupSize: Opt(Type.Integer({ minimum: 1, maximum: 4096 })),
      ...NormParams,
    },
    { additionalProperties: false },
  ),
  reads: (p) => [p.image, p.regions, ...(p.classes ? [p.classes] : [])],
  // the classes are awaited inside run: at 180° only after the lines are cut (turnedLater)
  lateReads: (p) => (p.classes ? [p.classes] : []),
  writes: (p) => [p.output, ...(p.regionsOutput ? [p.regionsOutput] : []), ...(p.widthsOutput ? [p.widthsOutput] : [])],
  check(p) {
    if ((p.classes === undefined) !== (p.angle === undefined)) return 'classes and angle go together';
    if (p.minWidth && p.maxWidth && p.minWidth > p.maxWidth) return 'minWidth is above maxWidth';
    const norm = normProblem(p);
    if (norm) return norm;
    if (p.widthBuckets) {
      if (p.width) return 'width and widthBuckets exclude each other';
      if (p.widthBuckets.some((w, i) => i > 0 && w <= p.widthBuckets![i - 1])) return 'widthBuckets must ascend';
    }
    if (p.calls && p.calls > 1 && (p.batch === false || (!p.width && !p.widthBuckets)))
      return 'calls splits a batch of a fixed width (width or widthBuckets)';
    if (p.groupSize && (!p.widthBuckets || p.batch === false || p.calls))
      return 'groupSize cuts batches at widthBuckets (not with batch false or calls)';
    return undefined;
  },
  size(p) {
    const px = p.height * (p.width ?? p.minWidth ?? 1);
    return {
      pixels: px,
      bytes: px * elementBytes(p),
      what: `a crop ${p.height} high, at least ${p.width ?? p.minWidth ?? 1} wide`,
    };
  },
  async run(p, x) {
    const img = x.get(p.image, 'image');
    checkNorm(p, img, x);
    const r = x.get(p.regions, 'regions', 'boxes');
    const quads = regionQuads(img, r, x);
    const tall = p.rotateTall ?? 1.5;
    // A half turn changes no line's size: the lines are cut while the classification is still
    // running (the step starts beside it) and the ones it picks are turned in place afterwards.
    const later = turnedLater(p);
    if (p.classes && !later) await x.wait(p.classes, 'classes');
    const picked = p.classes && !later ? classPicker(p, quads.length, 'regions', x) : () => false;
    const turn = (i: number) => (picked(i) ? p.angle! / 90 : 0);
    /** Per region: where its crop is (a result and its row), for turning it later. */
    const rowOf: [CropResult, number][] = [];
    const H = p.height;
    const limit = p.width ?? p.maxWidth;
    const cut: number[] = [];
    const turned = quads.map((q, i) => {
      const s = quadSize(q);
      // Tall regions read turned 90° counter-clockwise (start at their top-right corner).
      let quad = tall > 0 && s.width > 0 && s.height / s.width >= tall ? turnQuad(q, 1) : q;
      const k = turn(i);
      if (k) quad = turnQuad(quad, k);
      const t = quadSize(quad);
      const w = t.height > 0 ? (H * t.width) / t.height : 0;
      // overflow 'crop': keep the line's first `limit` columns at full resolution (enough to tell
      // its orientation) instead of squeezing the whole line into them.
      cut.push(...(p.overflow === 'crop' && limit && w > limit ? leading(quad, limit / w) : quad));
      return quad;
    });
    const opts: CropOptions = {
      height: H,
      ...(p.width ? { width: p.width } : {}),
      ...(p.minWidth ? { minWidth: p.minWidth } : {}),
      ...(p.maxWidth ? { maxWidth: p.maxWidth } : {}),
      ...(p.widthMultiple ? { widthMultiple: p.widthMultiple } : {}),
      padValue: p.padValue ?? 0,
      ...norm(p),
    };
    const image = { ...imageInput(img, x) };
    const value = (c: CropResult): TensorValue => ({
      kind: 'tensor',
      type: tensorType(p),
      dims: c.dims,
      data: c.data,
      widths: c.widths,
      paddedWidth: c.dims[(p.layout ?? 'nchw') === 'nhwc' ? 2 : 3],
    });
    const widthsOf = (c: { widths: Int32Array }): TensorValue => ({
      kind: 'tensor',
      type: 'int32',
      dims: [c.widths.length],
      data: c.widths,
    });
    /** Sets the output (and widthsOutput) from one batch or a list of them. */
    const put = (made: CropResult | CropResult[]) => {
      const list = Array.isArray(made);
      x.set(p.output, list ? { kind: 'tensors', items: made.map(value) } : value(made));
      if (p.widthsOutput) x.set(p.widthsOutput, list ? { kind: 'tensors', items: made.map(widthsOf) } : widthsOf(made));
    };
    // widthBuckets: the width is the smallest bucket that holds the line (the last one squeezes
    // wider lines), so an accelerator sees a few shapes it can prepare for, not one per line.
    const bucketOf = (from: number, to: number) => {
      let w = 0;
      for (let i = from; i < to; i++) {
        const s = quadSize(cut.slice(8 * i, 8 * i + 8));
        w = Math.max(w, s.height > 0 ? Math.ceil((H * s.width) / s.height) : 1);
      }
      const b = p.widthBuckets!;
      return { width: b.find((v) => v >= w) ?? b[b.length - 1] };
    };
    // Region i of regionsOutput is line order[i] (groupSize sorts them).
    let order: number[] | undefined;
    if (p.groupSize) {
      // The lines by width, cut into batches of groupSize, each at the bucket of its widest line:
      // padding stays near each line's own width, and the shapes are the buckets (one batch size).
      const w = quads.map((_, i) => bucketOf(i, i + 1).width);
      const own = quads.map((_, i) => {
        const s = quadSize(cut.slice(8 * i, 8 * i + 8));
        return s.height > 0 ? (H * s.width) / s.height : 0;
      });
      order = quads.map((_, i) => i).sort((a, b) => own[a] - own[b] || a - b);
      const groups: number[][] = [];
      for (let k = 0; k < order.length; k += p.groupSize) groups.push(order.slice(k, k + p.groupSize));
      const optsOfGroup = (g: number[]) => ({ ...opts, width: Math.max(...g.map((i) => w[i])) });
      const bytes = groups.reduce(
        (n, g) => n + cropBytes(image, cut.slice(8 * g[0], 8 * g[0] + 8), optsOfGroup(g), p) * g.length,
        0,
      );
      x.fits({ bytes }, `${groups.length} batches of up to ${p.groupSize} crops`);
      // one kernel call a line, each on its own window (an async call copies its input), all at once
      const items = await Promise.all(
        groups.map((g) =>
          cropParts(
            image,
            cut,
            g.map((i) => [i]),
            optsOfGroup(g),
            x.scratch,
          ),
        ),
      );
      groups.forEach((g, k) => {
        g.forEach((i, row) => (rowOf[i] = [items[k], row]));
      });
      put(items);
    } else if (p.batch === false) {
      const optsOf = (i: number) => (p.widthBuckets ? { ...opts, ...bucketOf(i, i + 1) } : opts);
      // A list is held whole: its items count together.
      const bytes = turned.reduce((n, _, i) => n + cropBytes(image, cut.slice(8 * i, 8 * i + 8), optsOf(i), p), 0);
      x.fits({ bytes }, `a list of ${turned.length} crop tensors`);
      // One tensor per region at its own width (for CPUs, where padding costs as much as text).
      const items = await Promise.all(
        turned.map((_, i) => cropBatch(...regionWindow(image, cut.slice(8 * i, 8 * i + 8)), optsOf(i))),
      );
      items.forEach((c, i) => (rowOf[i] = [c, 0]));
      put(items);
    } else if (quads.length === 0) {
      const c = img.channels === 1 ? 1 : 3,
        w = p.width ?? p.widthBuckets?.[0] ?? p.minWidth ?? 1;
      const dims = (p.layout ?? 'nchw') === 'nchw' ? [0, c, H, w] : [0, H, w, c];
      const data =
        p.dtype === 'uint8' ? new Uint8Array(0) : p.dtype === 'float16' ? new Uint16Array(0) : new Float32Array(0);
      put({ data, dims, widths: new Int32Array(0), rotated: new Uint8Array(0) });
    } else {
      const o = p.widthBuckets ? { ...opts, ...bucketOf(0, quads.length) } : opts;
      x.fits({ bytes: cropBytes(image, cut, o, p) }, `a batch of ${quads.length} crops`);
      const c =
        o.width && p.calls
          ? await cropSplit(image, cut, o, p.calls, x.scratch)
          : await cropBatch(image, cut, { ...o, alloc: x.scratch });
      quads.forEach((_, i) => (rowOf[i] = [c, i]));
      put(c);
    }
    if (later) {
      await x.wait(p.classes!, 'classes');
      const pick = classPicker(p, quads.length, 'regions', x);
      const nhwc = (p.layout ?? 'nchw') === 'nhwc';
      for (let i = 0; i < quads.length; i++) {
        if (!pick(i)) continue;
        turnRow180(rowOf[i][0], rowOf[i][1], nhwc);
        turned[i] = turnQuad(turned[i], 2);
      }
    }
    if (p.regionsOutput) {
      const scores = r.scores;
      x.set(p.regionsOutput, {
        kind: 'regions',
        count: quads.length,
        quads: Float32Array.from(order ? order.flatMap((i) => turned[i]) : turned.flat()),
        scores: Float32Array.from(order ? order.map((i) => scores[i]) : scores),
        width: img.width,
        height: img.height,
      } satisfies RegionsValue);
    }
  },
});
