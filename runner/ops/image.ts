/**
 * Image kernels over interleaved (HWC) 8-bit pixels. Each is a pure function: typed array in,
 * dimensions, one options object, new typed array out (or written into `options.dst`). The
 * native-kernels issue replaces hot ones behind these same signatures, so no closures, no
 * per-pixel allocation, and no hidden state.
 */

export interface ImageShape {
  width: number;
  height: number;
  channels: number;
}

export interface ResizeOptions {
  width: number;
  height: number;
  /**
   * Widen the filter when shrinking so every source pixel contributes (like PIL / libvips).
   * Without it a bilinear shrink samples only 2×2 neighbours and aliases thin strokes. Default true.
   */
  antialias?: boolean;
}

/** Per-output-coordinate filter taps for one axis: `count` taps starting at `start`, weights summing to 1. */
interface Taps {
  start: Int32Array;
  count: Int32Array;
  weights: Float32Array;
  maxTaps: number;
}

function taps(srcSize: number, dstSize: number, antialias: boolean): Taps {
  const scale = srcSize / dstSize;
  // Triangle (bilinear) filter; its radius grows with the shrink factor when antialiasing.
  const support = antialias && scale > 1 ? scale : 1;
  const maxTaps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(dstSize);
  const count = new Int32Array(dstSize);
  const weights = new Float32Array(dstSize * maxTaps);
  const last = srcSize - 1;
  for (let o = 0; o < dstSize; o++) {
    // Half-pixel centres, as OpenCV INTER_LINEAR and libvips use.
    const center = (o + 0.5) * scale - 0.5;
    const lo = Math.ceil(center - support);
    const hi = Math.floor(center + support);
    // Edge replication: taps outside the image fold onto the border pixel.
    const first = lo < 0 ? 0 : lo > last ? last : lo;
    const end = hi < 0 ? 0 : hi > last ? last : hi;
    const base = o * maxTaps;
    let sum = 0;
    for (let i = lo; i <= hi; i++) {
      const w = 1 - Math.abs(i - center) / support;
      if (w <= 0) continue;
      const k = (i < 0 ? 0 : i > last ? last : i) - first;
      weights[base + k] += w;
      sum += w;
    }
    const n = end - first + 1;
    if (sum > 0) for (let k = 0; k < n; k++) weights[base + k] /= sum;
    else weights[base] = 1;
    start[o] = first;
    count[o] = n;
  }
  return { start, count, weights, maxTaps };
}

/**
 * Resizes an HWC uint8 image with a separable triangle filter (bilinear when enlarging,
 * area-weighted when shrinking with `antialias`). Vertical pass first into a float buffer of
 * output rows (row-wise multiply-adds, sequential memory), then horizontal with rounding.
 */
export function resizeImage(src: Uint8Array, shape: ImageShape, options: ResizeOptions): Uint8Array {
  const { width: sw, height: sh, channels: c } = shape;
  const { width: dw, height: dh } = options;
  const antialias = options.antialias ?? true;
  const out = new Uint8Array(dw * dh * c);
  if (dw === 0 || dh === 0 || sw === 0 || sh === 0) return out;
  if (sw === dw && sh === dh) {
    out.set(src.subarray(0, sw * sh * c));
    return out;
  }
  const ty = taps(sh, dh, antialias);
  const tx = taps(sw, dw, antialias);
  const yStart = ty.start, yCount = ty.count, yW = ty.weights, yMax = ty.maxTaps;
  const xStart = tx.start, xCount = tx.count, xW = tx.weights, xMax = tx.maxTaps;
  const srcStride = sw * c;
  const row = new Float32Array(srcStride);
  for (let y = 0; y < dh; y++) {
    // Vertical: one output row at source width.
    const n = yCount[y];
    const wb = y * yMax;
    let base = yStart[y] * srcStride;
    let w = yW[wb];
    for (let i = 0; i < srcStride; i++) row[i] = src[base + i] * w;
    for (let k = 1; k < n; k++) {
      base += srcStride;
      w = yW[wb + k];
      if (w === 0) continue;
      for (let i = 0; i < srcStride; i++) row[i] += src[base + i] * w;
    }
    // Horizontal: filter that row down/up to the output width.
    let o = y * dw * c;
    if (c === 3) {
      for (let x = 0; x < dw; x++) {
        const m = xCount[x];
        const xb = x * xMax;
        let p = xStart[x] * 3;
        let a = 0, b = 0, d = 0;
        for (let k = 0; k < m; k++, p += 3) {
          const wk = xW[xb + k];
          a += row[p] * wk;
          b += row[p + 1] * wk;
          d += row[p + 2] * wk;
        }
        out[o++] = a <= 0 ? 0 : a >= 255 ? 255 : (a + 0.5) | 0;
        out[o++] = b <= 0 ? 0 : b >= 255 ? 255 : (b + 0.5) | 0;
        out[o++] = d <= 0 ? 0 : d >= 255 ? 255 : (d + 0.5) | 0;
      }
    } else {
      for (let x = 0; x < dw; x++) {
        const m = xCount[x];
        const xb = x * xMax;
        for (let ch = 0; ch < c; ch++) {
          let a = 0;
          let p = xStart[x] * c + ch;
          for (let k = 0; k < m; k++, p += c) a += row[p] * xW[xb + k];
          out[o++] = a <= 0 ? 0 : a >= 255 ? 255 : (a + 0.5) | 0;
        }
      }
    }
  }
  return out;
}

export interface RotateOptions {
  /** Quarter turns counter-clockwise: 1 = 90°, 2 = 180°, 3 = 270°. */
  turns: number;
}

/** Rotates an HWC image by quarter turns counter-clockwise. Returns pixels and the new shape. */
export function rotateImage(src: Uint8Array, shape: ImageShape, options: RotateOptions): { data: Uint8Array; width: number; height: number } {
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
  /**
   * Bilinear samples per output pixel along each axis (k × k, averaged). Use about the shrink
   * factor (source side / output side) when the crop also scales down, so a crop-and-resize in
   * one pass doesn't alias. Default 1.
   */
  samples?: number;
}

/**
 * Perspective-warps the quadrilateral `quad` of `src` onto an upright `width`×`height`
 * rectangle, bilinear sampling with edge replication (what OpenCV's warpPerspective with
 * BORDER_REPLICATE does for text crops).
 */
export function cropQuad(src: Uint8Array, shape: ImageShape, options: CropQuadOptions): Uint8Array {
  const { width: sw, height: sh, channels: c } = shape;
  const { width: ow, height: oh, quad: q } = options;
  const out = new Uint8Array(ow * oh * c);
  if (ow === 0 || oh === 0 || sw === 0 || sh === 0) return out;
  // Homography from the unit square to the quad (Heckbert), then scaled to the output size.
  const [x0, y0, x1, y1, x2, y2, x3, y3] = [q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]];
  const dx1 = x1 - x2, dx2 = x3 - x2, dy1 = y1 - y2, dy2 = y3 - y2;
  const sx = x0 - x1 + x2 - x3, sy = y0 - y1 + y2 - y3;
  let g = 0, hh = 0;
  const den = dx1 * dy2 - dx2 * dy1;
  if ((sx !== 0 || sy !== 0) && den !== 0) {
    g = (sx * dy2 - dx2 * sy) / den;
    hh = (dx1 * sy - sx * dy1) / den;
  }
  const a = x1 - x0 + g * x1, b = x3 - x0 + hh * x3, cc = x0;
  const d = y1 - y0 + g * y1, e = y3 - y0 + hh * y3, f = y0;
  const maxX = sw - 1, maxY = sh - 1;
  // Output pixel centres map to u,v in [0,1] across the rectangle's corner points, so the quad
  // corners land on the output's outer pixel centres, as in PaddleOCR's crop.
  const su = ow > 1 ? 1 / (ow - 1) : 0;
  const sv = oh > 1 ? 1 / (oh - 1) : 0;
  const k = Math.max(1, Math.floor(options.samples ?? 1));
  const acc = new Float64Array(c);
  const inv = 1 / (k * k);
  let o = 0;
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      for (let ch = 0; ch < c; ch++) acc[ch] = 0;
      for (let j = 0; j < k; j++) {
        // Sub-sample positions spread over the output pixel's footprint (its centre when k = 1).
        const v = (y + (j + 0.5) / k - 0.5) * sv;
        for (let i = 0; i < k; i++) {
          const u = (x + (i + 0.5) / k - 0.5) * su;
          const w = g * u + hh * v + 1;
          let px = (a * u + b * v + cc) / w;
          let py = (d * u + e * v + f) / w;
          if (!(px >= 0)) px = 0; else if (px > maxX) px = maxX;
          if (!(py >= 0)) py = 0; else if (py > maxY) py = maxY;
          const ix = px | 0, iy = py | 0;
          const fx = px - ix, fy = py - iy;
          const dx = ix < maxX ? c : 0;
          const dy = iy < maxY ? sw * c : 0;
          const p00 = (iy * sw + ix) * c;
          const w00 = (1 - fx) * (1 - fy), w01 = fx * (1 - fy), w10 = (1 - fx) * fy, w11 = fx * fy;
          for (let ch = 0; ch < c; ch++) {
            const p = p00 + ch;
            acc[ch] += src[p] * w00 + src[p + dx] * w01 + src[p + dy] * w10 + src[p + dy + dx] * w11;
          }
        }
      }
      for (let ch = 0; ch < c; ch++) out[o++] = (acc[ch] * inv + 0.5) | 0;
    }
  }
  return out;
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
 * Converts HWC uint8 pixels to a float32 tensor: `(p * scale - mean[c]) / std[c]`, in the
 * chosen layout, optionally into a larger zero-padded plane of a batch tensor (one pass via a
 * per-channel lookup table: 256 values per channel).
 */
export function toTensor(src: Uint8Array, shape: ImageShape, options: ToTensorOptions = {}): Float32Array {
  const { width: w, height: h, channels: c } = shape;
  const pw = options.planeWidth ?? w;
  const ph = options.planeHeight ?? h;
  const offset = options.offset ?? 0;
  const dst = options.dst ?? new Float32Array(pw * ph * c);
  const scale = options.scale ?? 1 / 255;
  const pad = options.padValue ?? 0;
  const nchw = (options.layout ?? 'nchw') === 'nchw';
  const lut = new Float32Array(256 * c);
  for (let ch = 0; ch < c; ch++) {
    const m = options.mean?.[ch] ?? 0;
    const s = options.std?.[ch] ?? 1;
    for (let v = 0; v < 256; v++) lut[ch * 256 + v] = (v * scale - m) / s;
  }
  const cw = Math.min(w, pw), chh = Math.min(h, ph);
  if (pad !== 0 || cw < pw || chh < ph) dst.fill(pad, offset, offset + pw * ph * c);
  // Output channel k reads source channel srcOf[k] (BGR swaps 0 and 2 of 3+ channel images).
  const srcOf = new Int32Array(c);
  for (let k = 0; k < c; k++) srcOf[k] = options.bgr && c >= 3 && k < 3 ? 2 - k : k;
  if (nchw) {
    const plane = pw * ph;
    for (let k = 0; k < c; k++) {
      const sc = srcOf[k];
      const lb = k * 256;
      const pbase = offset + k * plane;
      for (let y = 0; y < chh; y++) {
        let si = y * w * c + sc;
        let di = pbase + y * pw;
        for (let x = 0; x < cw; x++, si += c) dst[di++] = lut[lb + src[si]];
      }
    }
  } else {
    for (let y = 0; y < chh; y++) {
      for (let x = 0; x < cw; x++) {
        const si = (y * w + x) * c;
        const di = offset + (y * pw + x) * c;
        for (let k = 0; k < c; k++) dst[di + k] = lut[k * 256 + src[si + srcOf[k]]];
      }
    }
  }
  return dst;
}
