/**
 * Portable reductions, same contract as kernels/classify.h: labels, indices and CTC ids are exact;
 * probabilities agree within 1e-6 relative (the native code sums exponentials in float32).
 */
import type { RawArgmax, RawCtc, RawCtcResult, RawTopK } from '../index.js';

/** Probability of the maximum under a softmax over n values at base + c*step (NaN excluded). */
function maxProb(x: Float32Array, base: number, n: number, step: number, max: number): number {
  if (!(max > -Infinity)) return 0;
  let sum = 0;
  for (let c = 0; c < n; c++) {
    const v = x[base + c * step];
    if (v === v) sum += Math.exp(v - max);
  }
  return 1 / sum;
}

export function segmentArgmax(o: RawArgmax): void {
  const { data, classes: C, labels, scores } = o;
  const plane = o.height * o.width;
  for (let b = 0; b < o.batch; b++) {
    for (let p = 0; p < plane; p++) {
      const i = b * plane + p;
      const base = o.nhwc ? i * C : b * plane * C + p;
      const step = o.nhwc ? 1 : plane;
      let best = -Infinity;
      let arg = 0;
      for (let c = 0; c < C; c++) {
        const v = data[base + c * step];
        if (v > best) {
          best = v;
          arg = c;
        }
      }
      labels[i] = arg;
      if (scores) scores[i] = o.softmax ? maxProb(data, base, C, step, best) : best;
    }
  }
}

export function softmaxTopK(o: RawTopK): void {
  const { data, classes: C, k } = o;
  const top = new Int32Array(Math.min(k, C));
  for (let r = 0; r < o.rows; r++) {
    const base = r * C;
    const key = (i: number): number => {
      const v = data[base + i];
      return v === v ? v : -Infinity;
    };
    // The k best in one pass (insertion into a sorted list of k): the order of a full sort by
    // value, ties by lower index, without sorting all C classes (C = 6625 for OCR recognition).
    let n = 0;
    for (let i = 0; i < C; i++) {
      const v = key(i);
      if (n === top.length && !(v > key(top[n - 1]))) continue;
      let j = n < top.length ? n++ : n - 1;
      while (j > 0 && v > key(top[j - 1])) {
        top[j] = top[j - 1];
        j--;
      }
      top[j] = i;
    }
    const max = key(top[0]);
    let sum = 0;
    if (o.softmax && max > -Infinity)
      for (let c = 0; c < C; c++) if (data[base + c] === data[base + c]) sum += Math.exp(data[base + c] - max);
    for (let j = 0; j < k; j++) {
      const i = top[j];
      const x = data[base + i];
      o.indices[r * k + j] = i;
      o.values[r * k + j] = !o.softmax ? x : max > -Infinity && x === x ? Math.exp(x - max) / sum : 0;
    }
  }
}

export function ctcGreedy(o: RawCtc): RawCtcResult {
  const { data, steps: T, classes: C, blank } = o;
  const ids: number[] = [];
  const conf: number[] = [];
  const offsets = new Int32Array(o.batch + 1);
  for (let b = 0; b < o.batch; b++) {
    const len = o.lengths ? Math.max(0, Math.min(T, o.lengths[b])) : T;
    let prev = -1;
    for (let t = 0; t < len; t++) {
      const base = (b * T + t) * C;
      let bv = -Infinity;
      let arg = 0;
      for (let c = 0; c < C; c++) {
        const v = data[base + c];
        if (v > bv) {
          bv = v;
          arg = c;
        }
      }
      if (arg !== blank && (!o.mergeRepeats || arg !== prev)) {
        ids.push(arg);
        conf.push(o.softmax ? maxProb(data, base, C, 1, bv) : bv);
      }
      prev = arg;
    }
    offsets[b + 1] = ids.length;
  }
  return { ids: Int32Array.from(ids), confidences: Float32Array.from(conf), offsets };
}
