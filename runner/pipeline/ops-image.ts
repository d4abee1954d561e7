/**
 * Image ops: decode-image, resize, normalize (crop-regions and rotate-images are in ops-crop.ts).
 * Ops taking an image also take an `images` batch and apply per item.
 */

import { floatsToHalves } from '../../native/index.js';
import { Type } from '../../spec/typebox-lite.js';
import { resizeImage, toTensor } from '../ops/image.js';
import { decodeImage } from './image-decoder.js';
import { NormParams, unitsProblem } from './norm-params.js';
import { defineOp, Name, type OpRun } from './registry.js';
import type { ImageTransform, ImageValue, TensorValue } from './values.js';

const Opt = Type.Optional;

defineOp({
  op: 'decode-image',
  stage: 'decode',
  summary:
    'Decodes a file path, encoded Buffer or raw pixels into RGB (or grey) 8-bit pixels; EXIF orientation applied, alpha flattened.',
  params: Type.Object(
    {
      input: Name,
      output: Name,
      channels: Opt(Type.Union([Type.Literal(1), Type.Literal(3)])),
      background: Opt(Type.Array(Type.Integer({ minimum: 0, maximum: 255 }), { minItems: 1, maxItems: 3 })),
    },
    { additionalProperties: false },
  ),
  reads: (p) => [p.input],
  writes: (p) => [p.output],
  // two values are neither a grey nor an RGB background (they were read as R, G and R again)
  check: (p) => (p.background?.length === 2 ? 'background is one grey value or three RGB values' : undefined),
  async run(p, x) {
    const v = x.get(p.input, 'raw', 'image');
    x.set(
      p.output,
      await decodeImage(v.kind === 'raw' ? v.value : v, p.channels ?? 3, p.background ?? [255], x.budget),
    );
  },
});

const ResizeParams = Type.Object(
  {
    input: Name,
    output: Name,
    mode: Type.Union(['fixed', 'fit', 'letterbox', 'limit-side', 'fixed-height'].map((m) => Type.Literal(m))),
    width: Opt(Type.Integer({ minimum: 1, maximum: 65536 })),
    height: Opt(Type.Integer({ minimum: 1, maximum: 65536 })),
    limitSide: Opt(Type.Integer({ minimum: 1, maximum: 65536 })),
    limitType: Opt(Type.Union([Type.Literal('max'), Type.Literal('min')])),
    maxSide: Opt(Type.Integer({ minimum: 1, maximum: 65536 })),
    multipleOf: Opt(Type.Integer({ minimum: 1, maximum: 1024 })),
    minWidth: Opt(Type.Integer({ minimum: 1, maximum: 65536 })),
    maxWidth: Opt(Type.Integer({ minimum: 1, maximum: 65536 })),
    overflow: Opt(Type.Union([Type.Literal('squeeze'), Type.Literal('crop')])),
    padValue: Opt(Type.Integer({ minimum: 0, maximum: 255 })),
    antialias: Opt(Type.Boolean()),
  },
  { additionalProperties: false },
);
type ResizeP = (typeof ResizeParams)['static'];

function roundTo(v: number, m: number): number {
  return Math.max(m, Math.round(v / m) * m);
}

/** Target size and placement for one image (`rw`×`rh` resized, placed at `ox`,`oy` in `ow`×`oh`). */
export function resizePlan(
  p: Pick<
    ResizeP,
    | 'mode'
    | 'width'
    | 'height'
    | 'limitSide'
    | 'limitType'
    | 'maxSide'
    | 'multipleOf'
    | 'minWidth'
    | 'maxWidth'
    | 'overflow'
  >,
  w: number,
  h: number,
): { rw: number; rh: number; ow: number; oh: number; ox: number; oy: number } {
  const m = p.multipleOf ?? 1;
  switch (p.mode) {
    case 'fixed':
      return { rw: p.width!, rh: p.height!, ow: p.width!, oh: p.height!, ox: 0, oy: 0 };
    case 'fit':
    case 'letterbox': {
      const s = Math.min(p.width! / w, p.height! / h);
      const rw = Math.max(1, Math.round(w * s)),
        rh = Math.max(1, Math.round(h * s));
      if (p.mode === 'fit') return { rw, rh, ow: rw, oh: rh, ox: 0, oy: 0 };
      return { rw, rh, ow: p.width!, oh: p.height!, ox: (p.width! - rw) >> 1, oy: (p.height! - rh) >> 1 };
    }
    case 'limit-side': {
      const limit = p.limitSide ?? 960;
      let s = 1;
      if ((p.limitType ?? 'max') === 'max') s = Math.max(w, h) > limit ? limit / Math.max(w, h) : 1;
      else s = Math.min(w, h) < limit ? limit / Math.min(w, h) : 1;
      if (p.maxSide && Math.max(w, h) * s > p.maxSide) s = p.maxSide / Math.max(w, h);
      const rw = roundTo(w * s, m),
        rh = roundTo(h * s, m);
      return { rw, rh, ow: rw, oh: rh, ox: 0, oy: 0 };
    }
    default: {
      const hh = p.height!;
      let rw = Math.max(1, Math.ceil((hh * w) / h));
      if (p.minWidth) rw = Math.max(rw, p.minWidth);
      if (m > 1) rw = roundTo(rw, m);
      if (p.maxWidth && rw > p.maxWidth) {
        // crop: keep the aspect ratio and the first maxWidth columns (e.g. enough of a long line
        // to tell its orientation) instead of squeezing the whole line.
        if (p.overflow === 'crop') return { rw, rh: hh, ow: p.maxWidth, oh: hh, ox: 0, oy: 0 };
        rw = p.maxWidth;
      }
      return { rw, rh: hh, ow: rw, oh: hh, ox: 0, oy: 0 };
    }
  }
}

function resizeOne(p: ResizeP, img: ImageValue, x: OpRun): ImageValue {
  const { rw, rh, ow, oh, ox, oy } = resizePlan(p, img.width, img.height);
  x.fits({ pixels: Math.max(rw * rh, ow * oh) }, `resizing a ${img.width}×${img.height} image to ${rw}×${rh}`);
  const c = img.channels;
  let data: Uint8Array;
  if (rw > ow && ox === 0 && rw !== img.width) {
    // Cropping overflow: resize only the source columns that reach the kept part (plus the
    // filter's reach), not the whole line.
    const sw = Math.min(img.width, Math.ceil((ow * img.width) / rw) + Math.ceil(img.width / rw) + 2);
    const part = new Uint8Array(sw * img.height * c);
    for (let y = 0; y < img.height; y++)
      part.set(img.data.subarray(y * img.width * c, (y * img.width + sw) * c), y * sw * c);
    const pw = Math.max(ow, Math.round((sw * rw) / img.width));
    const r = resizeImage(
      part,
      { width: sw, height: img.height, channels: c },
      { width: pw, height: rh, antialias: p.antialias },
    );
    data = new Uint8Array(ow * rh * c);
    for (let y = 0; y < rh; y++) data.set(r.subarray(y * pw * c, (y * pw + ow) * c), y * ow * c);
  } else {
    const shape = { width: img.width, height: img.height, channels: c };
    data =
      rw === img.width && rh === img.height
        ? img.data
        : resizeImage(img.data, shape, { width: rw, height: rh, antialias: p.antialias });
  }
  if (data.length !== ow * oh * c) {
    // Letterbox padding, or cropping to the output's top-left when it is the smaller one.
    const canvas = new Uint8Array(ow * oh * c).fill(p.padValue ?? 114);
    const dw = data.length / (rh * c);
    const cw = Math.min(dw, ow) * c;
    for (let y = 0; y < Math.min(rh, oh); y++)
      canvas.set(data.subarray(y * dw * c, y * dw * c + cw), ((y + oy) * ow + ox) * c);
    data = canvas;
  }
  // Compose with any earlier transform so coordinates map back to the original image.
  const sx = rw / img.width,
    sy = rh / img.height;
  const t = img.transform;
  const transform: ImageTransform = t
    ? {
        scaleX: sx * t.scaleX,
        scaleY: sy * t.scaleY,
        offsetX: ox + t.offsetX * sx,
        offsetY: oy + t.offsetY * sy,
        width: t.width,
        height: t.height,
      }
    : { scaleX: sx, scaleY: sy, offsetX: ox, offsetY: oy, width: img.width, height: img.height };
  return {
    kind: 'image',
    data,
    width: ow,
    height: oh,
    channels: img.channels,
    transform,
    ...(img.quad ? { quad: img.quad } : {}),
  };
}

defineOp({
  op: 'resize',
  stage: 'pre',
  summary:
    'Resizes an image (or each image of a batch): fixed, fit, letterbox, limit-side (keep ratio, bound a side, round to a multiple) or fixed-height (keep ratio, clamp width).',
  params: ResizeParams,
  reads: (p) => [p.input],
  writes: (p) => [p.output],
  check(p) {
    if ((p.mode === 'fixed' || p.mode === 'fit' || p.mode === 'letterbox') && (!p.width || !p.height))
      return `mode ${p.mode} needs width and height`;
    if (p.mode === 'fixed-height' && !p.height) return 'mode fixed-height needs height';
    if (p.minWidth && p.maxWidth && p.minWidth > p.maxWidth) return 'minWidth is above maxWidth';
    return undefined;
  },
  size(p) {
    if (p.mode === 'fixed' || p.mode === 'letterbox')
      return { pixels: p.width! * p.height!, what: `a ${p.width}×${p.height} image` };
    if (p.mode === 'fixed-height')
      return {
        pixels: p.height! * (p.minWidth ?? 1),
        what: `an image ${p.height} high, at least ${p.minWidth ?? 1} wide`,
      };
    return undefined;
  },
  run(p, x) {
    const v = x.get(p.input, 'image', 'images');
    x.set(
      p.output,
      v.kind === 'image' ? resizeOne(p, v, x) : { kind: 'images', items: v.items.map((i) => resizeOne(p, i, x)) },
    );
  },
});

const NormalizeParams = Type.Object(
  {
    input: Name,
    output: Name,
    ...NormParams,
    // one value per channel of the images it takes, up to 4 (preprocess and crop-batch: 1 or 3)
    mean: Opt(Type.Array(Type.Number(), { minItems: 1, maxItems: 4 })),
    std: Opt(Type.Array(Type.Number({ exclusiveMinimum: 0 }), { minItems: 1, maxItems: 4 })),
    padValue: Opt(Type.Number()),
    minWidth: Opt(Type.Integer({ minimum: 0, maximum: 65536 })),
    minHeight: Opt(Type.Integer({ minimum: 0, maximum: 65536 })),
    batch: Opt(Type.Boolean()),
  },
  { additionalProperties: false },
);
type NormalizeP = (typeof NormalizeParams)['static'];

function toTensorValue(p: NormalizeP, items: ImageValue[], x: OpRun): TensorValue {
  const c = items[0]?.channels ?? 3;
  if (items.some((i) => i.channels !== c)) x.fail('images in one batch have different channel counts');
  const pw = Math.max(p.minWidth ?? 0, ...items.map((i) => i.width));
  const ph = Math.max(p.minHeight ?? 0, ...items.map((i) => i.height));
  const nchw = (p.layout ?? 'nchw') === 'nchw';
  const dims = nchw ? [items.length, c, ph, pw] : [items.length, ph, pw, c];
  const per = pw * ph * c;
  // The float32 batch comes first whatever the dtype (float16 and uint8 are converted from it).
  x.fits({ pixels: pw * ph, bytes: items.length * per * 4 }, `a tensor of ${items.length} × ${c}×${ph}×${pw}`);
  const dtype = p.dtype ?? 'float32';
  const bc = (a: number[] | undefined) => (a && a.length === 1 ? Array(c).fill(a[0]) : a);
  const opts = {
    scale: dtype === 'uint8' ? 1 : (p.scale ?? 1 / 255),
    mean: dtype === 'uint8' ? undefined : bc(p.mean),
    std: dtype === 'uint8' ? undefined : bc(p.std),
    layout: p.layout,
    bgr: p.channelOrder === 'bgr',
    planeWidth: pw,
    planeHeight: ph,
    padValue: p.padValue ?? 0,
  };
  const f = new Float32Array(items.length * per);
  items.forEach((img, n) => toTensor(img.data, img, { ...opts, dst: f, offset: n * per }));
  // One image's tensor maps back like `preprocess`'s (padding is right/bottom: the same transform), so
  // `detect-decode`, `nms` and `segment-argmax` take it as their `image`; a batch has no single one.
  const t = items.length === 1 ? items[0].transform : undefined;
  const data = dtype === 'uint8' ? Uint8Array.from(f) : dtype === 'float16' ? floatsToHalves(f) : f;
  return { kind: 'tensor', type: dtype, dims, data, ...(t ? { transform: t } : {}) } as TensorValue;
}

defineOp({
  op: 'normalize',
  stage: 'pre',
  summary:
    'Turns an image, or a batch padded to a common size, into a tensor: (pixel × scale − mean) / std, NCHW or NHWC, RGB or BGR, float32 / float16 / uint8.',
  params: NormalizeParams,
  reads: (p) => [p.input],
  writes: (p) => [p.output],
  check(p) {
    if (p.mean && p.std && p.mean.length !== p.std.length && p.mean.length !== 1 && p.std.length !== 1)
      return 'mean and std lengths differ';
    return unitsProblem(p);
  },
  size(p) {
    const w = Math.max(1, p.minWidth ?? 0),
      h = Math.max(1, p.minHeight ?? 0);
    return { pixels: w * h, bytes: w * h * 4, what: `a tensor plane of at least ${w}×${h}` };
  },
  run(p, x) {
    const v = x.get(p.input, 'image', 'images');
    const items = v.kind === 'image' ? [v] : v.items;
    for (const i of items) {
      for (const a of [p.mean, p.std])
        if (a && a.length !== 1 && a.length !== i.channels)
          x.fail(`mean/std have ${a.length} values for a ${i.channels}-channel image`);
    }
    if (p.batch === false && v.kind === 'images') {
      // A list is held whole: its items count together.
      const bytes = items.reduce(
        (n, i) => n + Math.max(p.minWidth ?? 0, i.width) * Math.max(p.minHeight ?? 0, i.height) * i.channels * 4,
        0,
      );
      x.fits({ bytes }, `a list of ${items.length} tensors`);
      x.set(p.output, { kind: 'tensors', items: items.map((i) => toTensorValue(p, [i], x)) });
    } else x.set(p.output, toTensorValue(p, items, x));
  },
});
