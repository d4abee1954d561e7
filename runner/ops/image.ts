/**
 * Image helpers of the pipeline over interleaved (HWC) 8-bit pixels, as thin adapters over the
 * native kernels (native/index.ts: `preprocess`, `cropBatch`; portable TypeScript when the addon
 * is missing). Only `rotateImage` (a pure copy, no kernel) is implemented here.
 */
import { cropBatchSync, type PixelFormat, preprocessSync } from '../../native/index.js';

export interface ImageShape {
  width: number;
  height: number;
  channels: number;
}

export interface ResizeOptions {
  width: number;
  height: number;
  /**
   * Average every covered source pixel when shrinking (area filter), so thin strokes don't
   * alias; bilinear otherwise. Default true.
   */
  antialias?: boolean;
}

function format(c: number): PixelFormat {
  if (c === 1) return 'gray';
  if (c === 3) return 'rgb';
  throw new RangeError(`image kernels take 1 or 3 channels, got ${c}`);
}

/** Rounds kernel floats (already in pixel units) back to 8 bits. */
function toU8(f: Float32Array): Uint8Array {
  const out = new Uint8Array(f.length);
  for (let i = 0; i < f.length; i++) out[i] = f[i] + 0.5;
  return out;
}

/** Resizes an HWC uint8 image (native `preprocess` in pixel units, NHWC). */
export function resizeImage(src: Uint8Array, shape: ImageShape, options: ResizeOptions): Uint8Array {
  const { width: sw, height: sh, channels: c } = shape;
  const { width: dw, height: dh } = options;
  if (dw === 0 || dh === 0 || sw === 0 || sh === 0) return new Uint8Array(dw * dh * c);
  if (sw === dw && sh === dh) return src.slice(0, sw * sh * c);
  const r = preprocessSync(
    { data: src, width: sw, height: sh, format: format(c) },
    {
      resize: { mode: 'stretch', width: dw, height: dh },
      scale: 1,
      layout: 'nhwc',
      interpolation: (options.antialias ?? true) ? 'area' : 'bilinear',
    },
  );
  return toU8(r.data as Float32Array);
}

export interface RotateOptions {
  /** Quarter turns counter-clockwise: 1 = 90°, 2 = 180°, 3 = 270°. */
  turns: number;
}

/** Rotates an HWC image by quarter turns counter-clockwise. Returns pixels and the new shape. */
export function rotateImage(
  src: Uint8Array,
  shape: ImageShape,
  options: RotateOptions,
): { data: Uint8Array; width: number; height: number } {
  const { width: w, height: h, channels: c } = shape;
  const turns = ((options.turns % 4) + 4) % 4;
  const out = new Uint8Array(w * h * c);
  if (turns === 0) {
    out.set(src.subarray(0, w * h * c));
    return { data: out, width: w, height: h };
  }
  const ow = turns === 2 ? w : h;
  const oh = turns === 2 ? h : w;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let ox: number, oy: number;
      if (turns === 1) {
        // CCW: the right edge becomes the top.
        ox = y;
        oy = w - 1 - x;
      } else if (turns === 2) {
        ox = w - 1 - x;
        oy = h - 1 - y;
      } else {
        ox = h - 1 - y;
        oy = x;
      }
      const si = (y * w + x) * c;
      const di = (oy * ow + ox) * c;
      for (let ch = 0; ch < c; ch++) out[di + ch] = src[si + ch];
    }
  }
  return { data: out, width: ow, height: oh };
}

export interface CropQuadOptions {
  /** Source quadrilateral, 8 numbers: the corners that become top-left, top-right, bottom-right, bottom-left. */
  quad: ArrayLike<number>;
  width: number;
  height: number;
  /** Average up to 4×4 samples per output pixel when the crop also shrinks (default true). */
  supersample?: boolean;
}

/**
 * Perspective-warps the quadrilateral `quad` of `src` onto an upright `width`×`height`
 * rectangle (native `cropBatch`: bilinear, edge replicated; pixel i spans [i, i + 1)).
 */
export function cropQuad(src: Uint8Array, shape: ImageShape, options: CropQuadOptions): Uint8Array {
  const { width: sw, height: sh, channels: c } = shape;
  const { width: ow, height: oh } = options;
  if (ow === 0 || oh === 0 || sw === 0 || sh === 0) return new Uint8Array(ow * oh * c);
  const r = cropBatchSync(
    { data: src, width: sw, height: sh, format: format(c) },
    Array.from(options.quad).slice(0, 8),
    {
      height: oh,
      width: ow,
      minWidth: ow,
      maxWidth: ow,
      scale: 1,
      layout: 'nhwc',
      supersample: options.supersample ?? true,
    },
  );
  return toU8(r.data as Float32Array);
}

export interface ToTensorOptions {
  /** Multiplier applied first (e.g. 1/255). Default 1/255. */
  scale?: number;
  /** Per-channel mean subtracted after scaling, in output channel order. Default 0. */
  mean?: readonly number[];
  /** Per-channel divisor after the mean. Default 1. */
  std?: readonly number[];
  /** Planar (NCHW) or interleaved (NHWC). Default 'nchw'. */
  layout?: 'nchw' | 'nhwc';
  /** Swap R and B when the model was trained on BGR (OpenCV) input. Default false. */
  bgr?: boolean;
  /** Destination; the image is written at `offset` into a plane of `planeWidth`×`planeHeight`. */
  dst?: Float32Array;
  offset?: number;
  planeWidth?: number;
  planeHeight?: number;
  /** Value written to the padding outside the image (already in output units). Default 0. */
  padValue?: number;
}

/**
 * Converts HWC uint8 pixels to a float32 tensor: `(p * scale - mean[c]) / std[c]` (native
 * `preprocess` at the image's own size), in the chosen layout, optionally into a larger padded
 * plane of a batch tensor.
 */
export function toTensor(src: Uint8Array, shape: ImageShape, options: ToTensorOptions = {}): Float32Array {
  const { width: w, height: h, channels: c } = shape;
  const pw = options.planeWidth ?? w;
  const ph = options.planeHeight ?? h;
  const offset = options.offset ?? 0;
  const dst = options.dst ?? new Float32Array(pw * ph * c);
  const nchw = (options.layout ?? 'nchw') === 'nchw';
  const pad = options.padValue ?? 0;
  const cw = Math.min(w, pw),
    chh = Math.min(h, ph);
  if (cw < pw || chh < ph) dst.fill(pad, offset, offset + pw * ph * c);
  if (cw === 0 || chh === 0) return dst;
  const direct = cw === pw && chh === ph && w === pw && h === ph;
  const opts = {
    resize: { mode: 'stretch' as const, width: w, height: h },
    scale: options.scale ?? 1 / 255,
    mean: options.mean ? [...options.mean] : undefined,
    std: options.std ? [...options.std] : undefined,
    layout: options.layout,
    channelOrder: options.bgr ? ('bgr' as const) : ('rgb' as const),
    interpolation: 'bilinear' as const,
  };
  const image = { data: src, width: w, height: h, format: format(c) };
  if (direct) {
    preprocessSync(image, { ...opts, out: dst, outOffset: offset });
    return dst;
  }
  // Padded plane: normalise at the image's size, then copy its rows into place.
  const t = preprocessSync(image, opts).data as Float32Array;
  if (nchw) {
    for (let k = 0; k < c; k++)
      for (let y = 0; y < chh; y++)
        dst.set(t.subarray((k * h + y) * w, (k * h + y) * w + cw), offset + (k * ph + y) * pw);
  } else {
    for (let y = 0; y < chh; y++) dst.set(t.subarray(y * w * c, (y * w + cw) * c), offset + y * pw * c);
  }
  return dst;
}
