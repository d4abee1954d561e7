/**
 * Row-wise kernels over a `rows`×`cols` float matrix (the last axis of a tensor): softmax,
 * argmax, top-k. NaN never wins a comparison; a row that is all NaN selects index 0.
 */

/** Numerically stable softmax along rows. A row of all -Infinity becomes uniform; NaN rows stay NaN. */
export function softmax(data: ArrayLike<number>, rows: number, cols: number, options: { dst?: Float32Array } = {}): Float32Array {
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

/** Index and value of the first maximum of each row, NaN skipped (all-NaN rows: index 0, NaN; empty rows: -1). */
export function argmax(data: ArrayLike<number>, rows: number, cols: number): { indices: Int32Array; values: Float32Array } {
  const indices = new Int32Array(rows);
  const values = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let best = -1;
    let bv = NaN;
    for (let i = 0; i < cols; i++) {
      const v = data[o + i];
      if (v !== v) continue;
      if (best < 0 || v > bv) {
        best = i;
        bv = v;
      }
    }
    indices[r] = best < 0 && cols > 0 ? 0 : best;
    values[r] = bv;
  }
  return { indices, values };
}

/**
 * The `k` largest entries of each row, largest first; ties keep the lower index first and NaN
 * ranks below every number (-Infinity included). Returns `rows × min(k, cols)` indices and values.
 */
export function topK(data: ArrayLike<number>, rows: number, cols: number, options: { k: number }): { indices: Int32Array; values: Float32Array; k: number } {
  const k = Math.max(0, Math.min(Math.floor(options.k), cols));
  const indices = new Int32Array(rows * k);
  const values = new Float32Array(rows * k);
  if (k === 0) return { indices, values, k };
  // A sorted window of size k: O(cols·k), fine for the small k this is used with.
  const wi = new Int32Array(k);
  const wv = new Float64Array(k);
  const wn = new Uint8Array(k);
  // a ranks strictly above b
  const above = (av: number, an: number, bv: number, bn: number) => (an ? false : bn ? true : av > bv);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let filled = 0;
    for (let i = 0; i < cols; i++) {
      const v = data[o + i];
      const nan = v !== v ? 1 : 0;
      if (filled === k && !above(v, nan, wv[k - 1], wn[k - 1])) continue;
      let p = filled < k ? filled++ : k - 1;
      while (p > 0 && above(v, nan, wv[p - 1], wn[p - 1])) {
        wv[p] = wv[p - 1];
        wn[p] = wn[p - 1];
        wi[p] = wi[p - 1];
        p--;
      }
      wv[p] = v;
      wn[p] = nan;
      wi[p] = i;
    }
    for (let j = 0; j < k; j++) {
      indices[r * k + j] = wi[j];
      values[r * k + j] = data[o + wi[j]];
    }
  }
  return { indices, values, k };
}
