/**
 * Segmentation argmax, softmax top-k and CTC greedy decoding against straightforward references.
 * Labels, indices and ids are exact; probabilities agree within 1e-6 (native sums exp in float32).
 */
import { describe, expect, it } from 'vitest';
import { ctcGreedyDecodeSync, segmentArgmaxSync, softmaxTopKSync } from '../native/index.js';
import { maxAbsDiff, nativeExpected, onBoth, onPortable, randomFloats, rng } from './native-helpers.js';

const key = (v: number): number => (v === v ? v : -Infinity);

function refArgmax(
  x: Float32Array,
  C: number,
  P: number,
  b: number,
  p: number,
  nhwc: boolean,
): { label: number; prob: number } {
  const at = (c: number) => x[nhwc ? (b * P + p) * C + c : (b * C + c) * P + p];
  let label = 0;
  for (let c = 1; c < C; c++) if (key(at(c)) > key(at(label))) label = c;
  const m = key(at(label));
  let sum = 0;
  for (let c = 0; c < C; c++) if (at(c) === at(c)) sum += Math.exp(at(c) - m);
  return { label, prob: m > -Infinity ? 1 / sum : 0 };
}

describe('segmentArgmax', () => {
  for (const [name, B, C, H, W, nhwc] of [
    ['nchw 21 classes', 2, 21, 37, 29, false],
    ['nhwc 5 classes', 1, 5, 16, 33, true],
    ['1x1 single class', 1, 1, 1, 1, false],
    ['300 classes -> uint16 labels', 1, 300, 6, 7, false],
  ] as const) {
    it(name, () => {
      const x = randomFloats(B * C * H * W, C * 7 + H, 4);
      for (let i = 0; i < x.length; i += 13) x[i] = NaN;
      for (let i = 5; i < x.length; i += 29) x[i] = x[i + 1] ?? x[i]; // ties
      const dims = nhwc ? [B, H, W, C] : [B, C, H, W];
      const o = { dims, layout: nhwc ? ('nhwc' as const) : ('nchw' as const), softmax: true };
      const r = onPortable(() => segmentArgmaxSync(x, o));
      expect(r.labels).toBeInstanceOf(C > 256 ? Uint16Array : Uint8Array);
      expect(r.dims).toEqual([B, H, W]);
      const P = H * W;
      for (let b = 0; b < B; b++) {
        for (let p = 0; p < P; p++) {
          const ref = refArgmax(x, C, P, b, p, nhwc);
          expect(r.labels[b * P + p]).toBe(ref.label);
          expect(Math.abs(r.scores![b * P + p] - ref.prob)).toBeLessThan(1e-6);
        }
      }
      if (nativeExpected) {
        const both = onBoth(() => segmentArgmaxSync(x, { ...o, threads: 3 }));
        expect(both.native.labels).toEqual(r.labels);
        expect(maxAbsDiff(both.native.scores!, r.scores!)).toBeLessThan(1e-6);
      }
    });
  }

  it('all-NaN pixel: label 0, probability 0; raw scores without softmax', () => {
    const x = new Float32Array([NaN, 1, NaN, 3]); // [1, 2 classes, 1x2] planar: pixel 0 all NaN
    const r = onPortable(() => segmentArgmaxSync(x, { dims: [1, 2, 1, 2], softmax: true }));
    expect(Array.from(r.labels)).toEqual([0, 1]);
    expect(r.scores![0]).toBe(0);
    const raw = onPortable(() => segmentArgmaxSync(x, { dims: [1, 2, 1, 2], scores: true }));
    expect(raw.scores![1]).toBe(3);
    if (nativeExpected) {
      const n = onBoth(() => segmentArgmaxSync(x, { dims: [1, 2, 1, 2], softmax: true })).native;
      expect(n.labels).toEqual(r.labels);
      expect(maxAbsDiff(n.scores!, r.scores!)).toBeLessThan(1e-6);
    }
  });
});

describe('softmaxTopK', () => {
  it('rows of logits: order (ties -> lower index, NaN last) and probabilities', () => {
    const rows = 40,
      C = 50,
      k = 5;
    const x = randomFloats(rows * C, 3, 3);
    for (let i = 0; i < x.length; i += 17) x[i] = NaN;
    for (let r = 0; r < rows; r += 4) x[r * C + 9] = x[r * C + 3]; // exact ties
    const res = onPortable(() => softmaxTopKSync(x, { dims: [rows, C], k }));
    for (let r = 0; r < rows; r++) {
      const idx = [...Array(C).keys()].sort((a, b) => key(x[r * C + b]) - key(x[r * C + a]) || a - b);
      const m = key(x[r * C + idx[0]]);
      let sum = 0;
      for (let c = 0; c < C; c++) if (x[r * C + c] === x[r * C + c]) sum += Math.exp(x[r * C + c] - m);
      expect(Array.from(res.indices.subarray(r * k, r * k + k))).toEqual(idx.slice(0, k));
      for (let j = 0; j < k; j++)
        expect(Math.abs(res.values[r * k + j] - Math.exp(x[r * C + idx[j]] - m) / sum)).toBeLessThan(1e-6);
    }
    if (nativeExpected) {
      const both = onBoth(() => softmaxTopKSync(x, { dims: [rows, C], k }));
      expect(both.native.indices).toEqual(res.indices);
      expect(maxAbsDiff(both.native.values, res.values)).toBeLessThan(1e-6);
      const raw = onBoth(() => softmaxTopKSync(x, { dims: [rows, C], k: C, softmax: false }));
      expect(raw.native).toEqual(raw.portable);
    }
  });
});

describe('ctcGreedyDecode', () => {
  const vocab = ['a', 'b', 'c', 'd', 'e'];

  /** probs [B, T, 6] from a class sequence per batch item (one-hot-ish, noise below). */
  function probs(seqs: number[][], T: number, seed: number): Float32Array {
    const r = rng(seed);
    const out = new Float32Array(seqs.length * T * 6);
    seqs.forEach((s, b) => {
      for (let t = 0; t < T; t++) {
        for (let c = 0; c < 6; c++) out[(b * T + t) * 6 + c] = r() * 0.1;
        out[(b * T + t) * 6 + (s[t] ?? 0)] = 0.5 + r() * 0.5;
      }
    });
    return out;
  }

  it('merges repeats, drops blanks, per-character confidence, lengths, vocabulary texts', () => {
    const seqs = [
      [0, 1, 1, 0, 1, 2, 2, 2, 0, 0, 3],
      [5, 5, 0, 5, 4, 4, 1],
      [0, 0, 0],
      [9, 2, 9, 2],
    ].map((s) => s.map((c) => c % 6));
    const x = probs(seqs, 11, 1);
    const lengths = new Int32Array([11, 7, 3, 2]);
    const r = onPortable(() => ctcGreedyDecodeSync(x, { dims: [4, 11, 6], lengths, vocabulary: vocab }));
    expect(Array.from(r.offsets)).toEqual([0, 4, 8, 8, 10]);
    expect(Array.from(r.ids)).toEqual([1, 1, 2, 3, 5, 5, 4, 1, 3, 2]);
    expect(r.texts).toEqual(['aabc', 'eeda', '', 'cb']);
    for (let i = 0; i < r.ids.length; i++) expect(r.confidences[i]).toBeGreaterThanOrEqual(0.5);
    const mean = (a: ArrayLike<number>) => Array.from(a).reduce((s, v) => s + v, 0) / a.length;
    expect(r.scores[0]).toBeCloseTo(mean(r.confidences.subarray(0, 4)), 6);
    expect(r.scores[2]).toBe(0);
    const noMerge = onPortable(() => ctcGreedyDecodeSync(x, { dims: [4, 11, 6], mergeRepeats: false }));
    expect(noMerge.offsets[1]).toBe(7);
    if (nativeExpected) {
      const both = onBoth(() => ctcGreedyDecodeSync(x, { dims: [4, 11, 6], lengths, vocabulary: vocab }));
      expect(both.native).toEqual(both.portable);
    }
  });

  it('logits with softmax confidence, NaN steps, blank not 0; ids outside the vocabulary emit no text', () => {
    const B = 3,
      T = 40,
      C = 30;
    const x = randomFloats(B * T * C, 5, 4);
    for (let i = 0; i < x.length; i += 23) x[i] = NaN;
    const o = { dims: [B, T, C], blank: 7, softmax: true, vocabulary: vocab, offset: 0 };
    const r = onPortable(() => ctcGreedyDecodeSync(x, o));
    let at = 0;
    for (let b = 0; b < B; b++) {
      let prev = -1;
      for (let t = 0; t < T; t++) {
        const row = x.subarray((b * T + t) * C, (b * T + t + 1) * C);
        let best = 0;
        for (let c = 1; c < C; c++) if (key(row[c]) > key(row[best])) best = c;
        if (best !== 7 && best !== prev) expect(r.ids[at++]).toBe(best);
        prev = best;
      }
      expect(r.offsets[b + 1]).toBe(at);
      expect([...r.texts[b]].every((ch) => vocab.includes(ch))).toBe(true);
    }
    if (nativeExpected) {
      const both = onBoth(() => ctcGreedyDecodeSync(x, o));
      expect(both.native.ids).toEqual(r.ids);
      expect(both.native.texts).toEqual(r.texts);
      expect(maxAbsDiff(both.native.confidences, r.confidences)).toBeLessThan(1e-6);
    }
  });
});
