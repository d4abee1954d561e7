/**
 * Row-wise kernels over a `rows`×`cols` float matrix (the last axis of a tensor): softmax (here:
 * no kernel computes a full softmax), argmax and top-k as adapters over the native `softmaxTopK`.
 */
import { softmaxTopKSync } from '../../native/index.js';

const f32 = (d: ArrayLike<number>, n: number): Float32Array =>
  d instanceof Float32Array ? d.subarray(0, n) : Float32Array.from({ length: n }, (_, i) => d[i]);

/** Numerically stable softmax along rows. A row of all -Infinity becomes uniform; NaN rows stay NaN. */
export function softmax(
  data: ArrayLike<number>,
  rows: number,
  cols: number,
  options: { dst?: Float32Array } = {},
): Float32Array {
  const out = options.dst ?? new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let max = -Infinity;
    let nan = false;
    for (let i = 0; i < cols; i++) {
      const v = data[o + i];
      if (v !== v) nan = true;
      else if (v > max) max = v;
    }
    if (nan) {
      out.fill(NaN, o, o + cols);
      continue;
    }
    if (max === -Infinity) {
      out.fill(1 / cols, o, o + cols);
      continue;
    }
    let sum = 0;
    for (let i = 0; i < cols; i++) {
      const e = Math.exp(data[o + i] - max);
      out[o + i] = e;
      sum += e;
    }
    const inv = 1 / sum;
    for (let i = 0; i < cols; i++) out[o + i] *= inv;
  }
  return out;
}

/** Index and value of the first maximum of each row (native `softmaxTopK`, k = 1, raw values). */
export function argmax(
  data: ArrayLike<number>,
  rows: number,
  cols: number,
): { indices: Int32Array; values: Float32Array } {
  if (cols === 0 || rows === 0)
    return { indices: new Int32Array(rows).fill(-1), values: new Float32Array(rows).fill(NaN) };
  return softmaxTopKSync(f32(data, rows * cols), { dims: [rows, cols], k: 1, softmax: false });
}

/** The `k` largest entries of each row, largest first, ties to the lower index (native `softmaxTopK`, raw values). */
export function topK(
  data: ArrayLike<number>,
  rows: number,
  cols: number,
  options: { k: number },
): { indices: Int32Array; values: Float32Array; k: number } {
  const k = Math.max(0, Math.min(Math.floor(options.k), cols));
  if (k === 0 || rows === 0) return { indices: new Int32Array(rows * k), values: new Float32Array(rows * k), k };
  return { ...softmaxTopKSync(f32(data, rows * cols), { dims: [rows, cols], k, softmax: false }), k };
}
