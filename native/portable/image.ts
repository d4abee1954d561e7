/**
 * Portable image kernels: the same pixel loops as kernels/preprocess.cc and kernels/crop.cc, over
 * the same raw options, so native and portable differ only by float rounding (|Δ| ≤ 1e-5 after
 * normalisation; ≤ 1 half-float ulp for f16). Filter weights are built exactly as the native code
 * builds them. preprocess's general path rounds every product and sum to float32 as the native code
 * computes them, so u8 output (rounded to whole pixels) is the same bytes on both backends.
 */
import type { RawCrop, RawPreprocess, TensorData } from '../index.js';
import { floatsToHalves, floatToHalf } from './f16.js';

export interface Taps {
  start: Int32Array;
  count: Int32Array;
  w: Float32Array;
  maxTaps: number;
}

/** Mirrors xk::makeTaps: interp 0 bilinear, 1 area, 2 auto (area when shrinking by 2× or more). */
export function makeTaps(srcSize: number, dstSize: number, interp: number): Taps {
  const scale = srcSize / dstSize;
  const area = interp === 1 ? scale > 1 : interp === 2 ? scale >= 2 : false;
  const last = srcSize - 1;
  const start = new Int32Array(dstSize);
  const count = new Int32Array(dstSize);
  if (!area) {
    const w = new Float32Array(dstSize * 2);
    for (let o = 0; o < dstSize; o++) {
      let c = (o + 0.5) * scale - 0.5;
      if (c < 0) c = 0;
      const i0 = Math.floor(c);
      if (i0 >= last) {
        start[o] = last;
        count[o] = 1;
        w[o * 2] = 1;
        continue;
      }
      const f = c - i0;
      start[o] = i0;
      count[o] = 2;
      w[o * 2] = 1 - f;
      w[o * 2 + 1] = f;
    }
    return { start, count, w, maxTaps: 2 };
  }
  const maxTaps = Math.ceil(scale) + 1;
  const w = new Float32Array(dstSize * maxTaps);
  for (let o = 0; o < dstSize; o++) {
    const a = o * scale;
    let b = (o + 1) * scale;
    if (b > srcSize) b = srcSize;
    const i0 = Math.floor(a);
    let i1 = Math.ceil(b) - 1;
    if (i1 > last) i1 = last;
    if (i1 < i0) i1 = i0;
    start[o] = i0;
    count[o] = i1 - i0 + 1;
    for (let i = i0; i <= i1; i++) {
      const lo = a > i ? a : i;
      const hi = b < i + 1 ? b : i + 1;
      w[o * maxTaps + (i - i0)] = (hi - lo) / scale;
    }
  }
  return { start, count, w, maxTaps };
}

type Store = (i: number, v: number) => void;

function storeOf(out: TensorData): Store {
  if (out instanceof Float32Array) return (i, v) => (out[i] = v);
  if (out instanceof Uint8Array) {
    // A clamped view stores as xk::floatToU8 does: half to even, clamped to 0..255, NaN as 0.
    const u = new Uint8ClampedArray(out.buffer, out.byteOffset, out.length);
    return (i, v) => (u[i] = v);
  }
  return (i, v) => (out[i] = floatToHalf(v));
}

/**
 * Bilinear on both axes: each output pixel straight from its 2x2 source pixels (the native code's
 * separable order: vertical blend first, then horizontal), writing padding as it goes.
 */
function bilinearDirect(o: RawPreprocess, tx: Taps, ty: Taps): void {
  const {
    data: src,
    channels: C,
    stride,
    planeWidth: W,
    planeHeight: H,
    roiX,
    roiY,
    roiWidth,
    roiHeight,
    out,
    outOffset,
  } = o;
  const K = o.outChannels;
  const n = o.norm;
  const f32 = out instanceof Float32Array ? out : new Float32Array(W * H * K);
  const base = out instanceof Float32Array ? outOffset : 0;
  const plane = W * H,
    step = o.nhwc ? K : 1;
  const [c0, c1, c2] = o.chanMap;
  const xa = new Int32Array(roiWidth),
    xb = new Int32Array(roiWidth);
  for (let x = 0; x < roiWidth; x++) {
    xa[x] = tx.start[x] * C;
    xb[x] = (tx.count[x] > 1 ? tx.start[x] + 1 : tx.start[x]) * C;
  }
  for (let y = 0; y < H; y++) {
    const d0 = base + (o.nhwc ? y * W * K : y * W),
      d1 = o.nhwc ? d0 + 1 : d0 + plane,
      d2 = o.nhwc ? d0 + 2 : d0 + 2 * plane;
    const inRow = y >= roiY && y < roiY + roiHeight;
    const oy = y - roiY;
    const r0 = inRow ? ty.start[oy] * stride : 0;
    const r1 = inRow ? (ty.count[oy] > 1 ? ty.start[oy] + 1 : ty.start[oy]) * stride : 0;
    const wy0 = inRow ? ty.w[oy * 2] : 0,
      wy1 = inRow ? ty.w[oy * 2 + 1] : 0;
    for (let x = 0; x < W; x++) {
      const i = x * step;
      const ox = x - roiX;
      if (!inRow || ox < 0 || ox >= roiWidth) {
        f32[d0 + i] = n[6];
        if (K > 1) {
          f32[d1 + i] = n[7];
          f32[d2 + i] = n[8];
        }
        continue;
      }
      const a0 = r0 + xa[ox],
        a1 = r0 + xb[ox],
        b0 = r1 + xa[ox],
        b1 = r1 + xb[ox];
      const w0 = tx.w[ox * 2],
        w1 = tx.w[ox * 2 + 1];
      f32[d0 + i] =
        (w0 * (wy0 * src[a0 + c0] + wy1 * src[b0 + c0]) + w1 * (wy0 * src[a1 + c0] + wy1 * src[b1 + c0])) * n[0] + n[3];
      if (K > 1) {
        f32[d1 + i] =
          (w0 * (wy0 * src[a0 + c1] + wy1 * src[b0 + c1]) + w1 * (wy0 * src[a1 + c1] + wy1 * src[b1 + c1])) * n[1] +
          n[4];
        f32[d2 + i] =
          (w0 * (wy0 * src[a0 + c2] + wy1 * src[b0 + c2]) + w1 * (wy0 * src[a1 + c2] + wy1 * src[b1 + c2])) * n[2] +
          n[5];
      }
    }
  }
  if (out instanceof Uint16Array) floatsToHalves(f32, out, outOffset);
}

export function preprocess(o: RawPreprocess): void {
  const { data: src, channels: C, stride, planeWidth: W, planeHeight: H, roiX, roiY, roiWidth, roiHeight } = o;
  const K = o.outChannels;
  const tx = makeTaps(o.width, roiWidth, o.interp);
  const ty = makeTaps(o.height, roiHeight, o.interp);
  // u8 takes the float32-exact path below: a value a double sum puts on the other side of x.5 would round differently.
  // biome-ignore lint/correctness/noVoidTypeReturn: the two-tap case is the whole kernel
  if (tx.maxTaps === 2 && ty.maxTaps === 2 && !(o.out instanceof Uint8Array)) return bilinearDirect(o, tx, ty);
  const f = Math.fround;
  const put = storeOf(o.out);
  const plane = W * H;
  const x0 = tx.start[0];
  const x1 = tx.start[roiWidth - 1] + tx.count[roiWidth - 1];
  const len = (x1 - x0) * C;
  const buf = new Float32Array(len + 8);
  const ch = o.chanMap;
  const n = o.norm;
  const step = o.nhwc ? K : 1;
  for (let y = 0; y < H; y++) {
    const d0 = o.outOffset + (o.nhwc ? y * W * K : y * W);
    const d1 = o.nhwc ? d0 + 1 : d0 + plane;
    const d2 = o.nhwc ? d0 + 2 : d0 + 2 * plane;
    const pad = (xa: number, xb: number): void => {
      for (let x = xa; x < xb; x++) {
        put(d0 + x * step, n[6]);
        if (K > 1) {
          put(d1 + x * step, n[7]);
          put(d2 + x * step, n[8]);
        }
      }
    };
    if (y < roiY || y >= roiY + roiHeight) {
      pad(0, W);
      continue;
    }
    const oy = y - roiY;
    const s = ty.start[oy];
    const cnt = ty.count[oy];
    const wb = oy * ty.maxTaps;
    for (let k = 0; k < cnt; k++) {
      const r = (s + k) * stride + x0 * C;
      const w = ty.w[wb + k];
      // w × pixel is exact in double, so the store rounds it once, as float32 does; likewise the sum.
      if (k === 0) for (let i = 0; i < len; i++) buf[i] = w * src[r + i];
      else for (let i = 0; i < len; i++) buf[i] += f(w * src[r + i]);
    }
    pad(0, roiX);
    for (let ox = 0; ox < roiWidth; ox++) {
      const wx = ox * tx.maxTaps;
      let q = (tx.start[ox] - x0) * C;
      const c = tx.count[ox];
      let v0 = 0,
        v1 = 0,
        v2 = 0;
      for (let j = 0; j < c; j++, q += C) {
        const w = tx.w[wx + j];
        v0 = f(v0 + f(w * buf[q + ch[0]]));
        if (K > 1) {
          v1 = f(v1 + f(w * buf[q + ch[1]]));
          v2 = f(v2 + f(w * buf[q + ch[2]]));
        }
      }
      const x = (roiX + ox) * step;
      put(d0 + x, f(f(v0 * n[0]) + n[3]));
      if (K > 1) {
        put(d1 + x, f(f(v1 * n[1]) + n[4]));
        put(d2 + x, f(f(v2 * n[2]) + n[5]));
      }
    }
    pad(roiX + roiWidth, W);
  }
}

export function cropBatch(o: RawCrop): void {
  const { data: src, width: sw, height: sh, channels: C, stride } = o;
  const K = o.outChannels;
  const W = o.outWidth,
    H = o.outHeight;
  const plane = W * H;
  const store = storeOf(o.out);
  // u8: rounded from the float32 value, as the native kernel rounds its float result
  const put: Store = o.out instanceof Uint8Array ? (i, v) => store(i, Math.fround(v)) : store;
  const n = o.norm;
  const maxX = sw - 1,
    maxY = sh - 1;
  for (let r = 0; r < o.count; r++) {
    const h = o.homographies.subarray(r * 9, r * 9 + 9);
    const valid = o.widths[r];
    const s = o.samples[r];
    const base = o.outOffset + r * plane * K;
    if (s === 1 && h[6] === 0 && h[7] === 0 && h[8] === 1 && h[1] === 0 && h[3] === 0) {
      cropUpright(o, h, valid, base, put);
      continue;
    }
    const inv = 1 / (s * s);
    for (let y = 0; y < H; y++) {
      const index = (x: number, k: number): number => base + (o.nhwc ? (y * W + x) * K + k : k * plane + y * W + x);
      for (let x = 0; x < valid; x++) {
        const acc = [0, 0, 0];
        for (let j = 0; j < s; j++) {
          const v = y + (j + 0.5) / s;
          for (let i = 0; i < s; i++) {
            const u = x + (i + 0.5) / s;
            const den = h[6] * u + h[7] * v + h[8];
            let px = (h[0] * u + h[1] * v + h[2]) / den - 0.5;
            let py = (h[3] * u + h[4] * v + h[5]) / den - 0.5;
            if (!(px >= 0)) px = 0;
            else if (px > maxX) px = maxX;
            if (!(py >= 0)) py = 0;
            else if (py > maxY) py = maxY;
            const ix = Math.trunc(px),
              iy = Math.trunc(py);
            const fx = Math.fround(px - ix),
              fy = Math.fround(py - iy);
            const ix1 = ix < maxX ? ix + 1 : ix;
            const iy1 = iy < maxY ? iy + 1 : iy;
            const r0 = iy * stride,
              r1 = iy1 * stride;
            for (let k = 0; k < K; k++) {
              const c = o.chanMap[k];
              const top = (1 - fx) * src[r0 + ix * C + c] + fx * src[r0 + ix1 * C + c];
              const bot = (1 - fx) * src[r1 + ix * C + c] + fx * src[r1 + ix1 * C + c];
              acc[k] += (1 - fy) * top + fy * bot;
            }
          }
        }
        for (let k = 0; k < K; k++) put(index(x, k), acc[k] * inv * n[k] + n[3 + k]);
      }
      for (let x = valid; x < W; x++) for (let k = 0; k < K; k++) put(index(x, k), n[6 + k]);
    }
  }
}

/**
 * An upright rectangle at one sample a pixel (kernels/crop.cc cropRowUpright): each column's and each
 * row's interpolation terms found once, each source row interpolated along x once for the output rows
 * that read it. The same values as the per-sample loop above: h[1] v and h[3] u are exactly 0, the
 * denominator exactly 1.
 */
function cropUpright(o: RawCrop, h: Float64Array, valid: number, base: number, put: Store): void {
  const { data: src, width: sw, height: sh, channels: C, stride } = o;
  const K = o.outChannels;
  const W = o.outWidth,
    H = o.outHeight;
  const plane = W * H;
  const n = o.norm;
  const maxX = sw - 1,
    maxY = sh - 1;
  const c0 = new Int32Array(valid),
    c1 = new Int32Array(valid),
    fx = new Float64Array(valid);
  for (let x = 0; x < valid; x++) {
    let px = h[0] * (x + 0.5) + h[2] - 0.5;
    if (!(px >= 0)) px = 0;
    else if (px > maxX) px = maxX;
    const ix = Math.trunc(px);
    c0[x] = ix * C;
    c1[x] = (ix < maxX ? ix + 1 : ix) * C;
    fx[x] = Math.fround(px - ix);
  }
  const rows = [new Float64Array(valid * K), new Float64Array(valid * K)];
  const of = [-1, -1];
  const fill = (slot: number, iy: number) => {
    const row = rows[slot];
    const at = iy * stride;
    for (let x = 0; x < valid; x++)
      for (let k = 0; k < K; k++) {
        const c = o.chanMap[k];
        row[x * K + k] = (1 - fx[x]) * src[at + c0[x] + c] + fx[x] * src[at + c1[x] + c];
      }
    of[slot] = iy;
  };
  for (let y = 0; y < H; y++) {
    let py = h[4] * (y + 0.5) + h[5] - 0.5;
    if (!(py >= 0)) py = 0;
    else if (py > maxY) py = maxY;
    const iy = Math.trunc(py);
    const fy = Math.fround(py - iy);
    const iy1 = iy < maxY ? iy + 1 : iy;
    let a = of[0] === iy ? 0 : of[1] === iy ? 1 : -1;
    if (a < 0) fill((a = of[0] === iy1 ? 1 : 0), iy);
    let b = iy1 === iy ? a : of[a ^ 1] === iy1 ? a ^ 1 : -1;
    if (b < 0) fill((b = a ^ 1), iy1);
    const top = rows[a],
      bot = rows[b];
    for (let x = 0; x < valid; x++)
      for (let k = 0; k < K; k++) {
        const acc = 0 + ((1 - fy) * top[x * K + k] + fy * bot[x * K + k]);
        put(base + (o.nhwc ? (y * W + x) * K + k : k * plane + y * W + x), acc * 1 * n[k] + n[3 + k]);
      }
    for (let x = valid; x < W; x++)
      for (let k = 0; k < K; k++) put(base + (o.nhwc ? (y * W + x) * K + k : k * plane + y * W + x), n[6 + k]);
  }
}
