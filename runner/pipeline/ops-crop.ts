/**
 * Region ops: crop-regions (a quad or box per region cut out of an image, upright) and
 * rotate-images, and the region helpers the fused crop ops share (ops-fused.ts).
 */
import { cropBatch, type ImageInput } from '../../native/index.js';
import { Type } from '../../spec/typebox-lite.js';
import { quadSize } from '../ops/geometry.js';
import { rotateImage } from '../ops/image.js';
import { defineOp, Name, type OpRun } from './registry.js';
import type { BoxesValue, ImagesValue, ImageValue, RegionsValue } from './values.js';

const Opt = Type.Optional;

function toU8(f: Float32Array): Uint8Array {
  const out = new Uint8Array(f.length);
  for (let i = 0; i < f.length; i++) out[i] = f[i] + 0.5;
  return out;
}

/** A quad reordered after the crop was turned `turns` quarter turns counter-clockwise. */
/**
 * The rows and columns around one region, or several (quads of 8 numbers each), a few pixels beyond
 * every tap the crop kernel samples, as a strided view of the page, with the quads moved into it.
 * An async kernel copies its whole input image (native/src/util.h: JS may detach it meanwhile), so a
 * crop per region of a large page would otherwise copy the page once per region.
 */
export function regionWindow(image: ImageInput, quad: number[]): [ImageInput, number[]] {
  const M = 4;
  const xs = quad.filter((_, k) => k % 2 === 0);
  const ys = quad.filter((_, k) => k % 2 === 1);
  if (![...xs, ...ys].every(Number.isFinite)) return [image, quad];
  const x0 = Math.max(0, Math.floor(Math.min(...xs)) - M);
  const y0 = Math.max(0, Math.floor(Math.min(...ys)) - M);
  const x1 = Math.min(image.width, Math.ceil(Math.max(...xs)) + M);
  const y1 = Math.min(image.height, Math.ceil(Math.max(...ys)) + M);
  if (x1 - x0 < 1 || y1 - y0 < 1) return [image, quad];
  const c = image.format === 'gray' ? 1 : 3;
  const stride = image.stride ?? image.width * c;
  const data = image.data.subarray(y0 * stride + x0 * c, (y1 - 1) * stride + x1 * c);
  return [
    { data, width: x1 - x0, height: y1 - y0, stride, format: image.format },
    quad.map((v, k) => v - (k % 2 ? y0 : x0)),
  ];
}

export function turnQuad(q: number[], turns: number): number[] {
  const out: number[] = [];
  for (let k = 0; k < 4; k++) {
    const j = (k + turns) % 4;
    out.push(q[2 * j], q[2 * j + 1]);
  }
  return out;
}

/** Regions (quads) or axis-aligned boxes of an image as quads TL, TR, BR, BL. */
export function regionQuads(img: ImageValue, r: RegionsValue | BoxesValue, x: OpRun): number[][] {
  const quads: number[][] = [];
  if (r.kind === 'regions') {
    if (r.width !== img.width || r.height !== img.height)
      x.fail(`regions refer to a ${r.width}×${r.height} image, not this ${img.width}×${img.height} one`);
    for (let i = 0; i < r.count; i++) quads.push(Array.from(r.quads.subarray(8 * i, 8 * i + 8)));
  } else {
    for (let i = 0; i < r.count; i++) {
      const [x1, y1, x2, y2] = r.boxes.subarray(4 * i, 4 * i + 4);
      quads.push([x1, y1, x2, y1, x2, y2, x1, y2]);
    }
  }
  return quads;
}

/**
 * Which of `count` items a classification picks: those whose top class is `label` (a label name,
 * or a class index) with a score of at least `minScore`; every item when `classes` is not given.
 */
export function classPicker(
  p: { classes?: string; label?: string | number; minScore?: number },
  count: number,
  what: string,
  x: OpRun,
): (i: number) => boolean {
  if (!p.classes) return () => true;
  const c = x.get(p.classes, 'classes');
  if (c.count !== count) x.fail(`${c.count} classifications for ${count} ${what}`);
  const min = p.minScore ?? -Infinity;
  return (i) => {
    const idx = c.indices[i * c.k];
    const label = typeof p.label === 'string' ? (c.labels?.[idx] ?? String(idx)) : idx;
    return (p.label === undefined || label === p.label) && c.scores[i * c.k] >= min;
  };
}

function turn(img: ImageValue, turns: number): ImageValue {
  const r = rotateImage(img.data, img, { turns });
  return {
    kind: 'image',
    data: r.data,
    width: r.width,
    height: r.height,
    channels: img.channels,
    ...(img.quad ? { quad: turnQuad(img.quad, turns) } : {}),
  };
}

defineOp({
  op: 'crop-regions',
  stage: 'pre',
  summary:
    'Cuts each region (rotated quad or box) out of an image, perspective-corrected to an upright rectangle (optionally scaled to a height in the same pass); tall crops are turned 90° so vertical lines read left to right.',
  params: Type.Object(
    {
      image: Name,
      regions: Name,
      output: Name,
      rotateTall: Opt(Type.Number({ minimum: 0 })),
      height: Opt(Type.Integer({ minimum: 1, maximum: 4096 })),
    },
    { additionalProperties: false },
  ),
  reads: (p) => [p.image, p.regions],
  writes: (p) => [p.output],
  async run(p, x) {
    const img = x.get(p.image, 'image');
    const quads = regionQuads(img, x.get(p.regions, 'regions', 'boxes'), x);
    const tall = p.rotateTall ?? 1.5;
    const sized = quads.map((region) => {
      const s = quadSize(region);
      let w = Math.max(1, Math.floor(s.width)),
        h = Math.max(1, Math.floor(s.height));
      // A tall region is cut starting at its top-right corner: the crop comes out turned 90°
      // counter-clockwise in the same pass, no separate rotation.
      const quad = tall > 0 && h / w >= tall ? turnQuad(region, 1) : region;
      if (quad !== region) [w, h] = [h, w];
      if (p.height) {
        w = Math.max(1, Math.ceil((p.height * w) / h));
        h = p.height;
      }
      x.fits({ pixels: w * h }, `a ${w}×${h} crop`);
      return { quad, w, h };
    });
    // The list is held whole, and every crop is cut at once (the kernel writing float32 first):
    // crops each under maxPixels still add up, so the list counts together, before any is cut.
    const elements = sized.reduce((n, { w, h }) => n + w * h * img.channels, 0);
    x.fits({ bytes: elements * 4 }, `a list of ${sized.length} crops`);
    // One cropBatch call per region, at its own size; the kernel scales (averaging up to 4×4
    // samples when shrinking) in the same pass.
    const items: ImageValue[] = await Promise.all(
      sized.map(async ({ quad, w, h }) => {
        const r = await cropBatch(
          ...regionWindow(
            { data: img.data, width: img.width, height: img.height, format: img.channels === 1 ? 'gray' : 'rgb' },
            quad,
          ),
          {
            height: h,
            width: w,
            minWidth: w,
            maxWidth: w,
            scale: 1,
            layout: 'nhwc',
          },
        );
        return { kind: 'image', data: toU8(r.data as Float32Array), width: w, height: h, channels: img.channels, quad };
      }),
    );
    x.set(p.output, { kind: 'images', items } satisfies ImagesValue);
  },
});

defineOp({
  op: 'rotate-images',
  stage: 'pre',
  summary:
    'Rotates every image of a batch (or only those whose top class matches `label` with at least `minScore`) by 90, 180 or 270 degrees counter-clockwise.',
  params: Type.Object(
    {
      input: Name,
      output: Name,
      angle: Type.Union([Type.Literal(90), Type.Literal(180), Type.Literal(270)]),
      classes: Opt(Name),
      label: Opt(Type.Union([Type.String({ maxLength: 256 }), Type.Integer({ minimum: 0 })])),
      minScore: Opt(Type.Number()),
    },
    { additionalProperties: false },
  ),
  reads: (p) => [p.input, ...(p.classes ? [p.classes] : [])],
  writes: (p) => [p.output],
  check: (p) => (p.label !== undefined && !p.classes ? 'label needs classes' : undefined),
  run(p, x) {
    const v = x.get(p.input, 'image', 'images');
    const items = v.kind === 'image' ? [v] : v.items;
    const turns = p.angle / 90;
    const pick = classPicker(p, items.length, 'images', x);
    const out = items.map((img, i) => (pick(i) ? turn(img, turns) : img));
    x.set(p.output, v.kind === 'image' ? out[0] : { kind: 'images', items: out });
  },
});
