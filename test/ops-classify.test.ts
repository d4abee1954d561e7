import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { argmax, softmax, topK } from '../runner/ops/classify.js';
import { ctcGreedyDecode, parseVocabulary } from '../runner/ops/ctc.js';

const value = fc.oneof(
  { weight: 8, arbitrary: fc.float({ min: -50, max: 50, noNaN: true }) },
  { weight: 1, arbitrary: fc.constantFrom(NaN, -Infinity, Infinity, 0, 1) },
);
const matrixArb = fc
  .integer({ min: 0, max: 6 })
  .chain((rows) =>
    fc
      .integer({ min: 1, max: 8 })
      .chain((cols) =>
        fc.tuple(
          fc.constant(rows),
          fc.constant(cols),
          fc.array(value, { minLength: rows * cols, maxLength: rows * cols }),
        ),
      ),
  );

/** Reference ranking: NaN lowest, then by value descending, ties by index. */
function refRank(row: number[]): number[] {
  // The kernel's order: NaN ranks as -Infinity, ties keep the lower index first.
  const key = (v: number) => (Number.isNaN(v) ? -Infinity : v);
  return row
    .map((v, i) => ({ v: key(v), i }))
    .sort((a, b) => (a.v !== b.v ? (a.v > b.v ? -1 : 1) : a.i - b.i))
    .map((e) => e.i);
}

describe('softmax', () => {
  it('rows sum to 1, are shift-invariant and keep the order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ min: -30, max: 30, noNaN: true }), { minLength: 1, maxLength: 20 }),
        fc.float({ min: -100, max: 100, noNaN: true }),
        (row, shift) => {
          const a = softmax(Float32Array.from(row), 1, row.length);
          const b = softmax(
            Float32Array.from(row, (v) => v + shift),
            1,
            row.length,
          );
          expect(a.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 5);
          a.forEach((v, i) => expect(v).toBeCloseTo(b[i], 3));
          for (let i = 0; i < row.length; i++)
            for (let j = 0; j < row.length; j++)
              if (Math.fround(row[i]) > Math.fround(row[j])) expect(a[i]).toBeGreaterThanOrEqual(a[j]);
        },
      ),
    );
  });

  it('does not overflow, spreads an all -Infinity row evenly, and keeps NaN rows NaN', () => {
    expect(Array.from(softmax(new Float32Array([1000, 1000]), 1, 2))).toEqual([0.5, 0.5]);
    expect(Array.from(softmax(new Float32Array([-Infinity, -Infinity, -Infinity, -Infinity]), 1, 4))).toEqual([
      0.25, 0.25, 0.25, 0.25,
    ]);
    const r = softmax(new Float32Array([1, NaN, 0, 0]), 2, 2);
    expect(Number.isNaN(r[0]) && Number.isNaN(r[1])).toBe(true);
    expect(Array.from(r.subarray(2))).toEqual([0.5, 0.5]);
    expect(softmax(new Float32Array(0), 0, 5).length).toBe(0);
  });
});

describe('argmax / topK', () => {
  it('top-k equals the first k of a full reference sort, argmax its first', () => {
    fc.assert(
      fc.property(matrixArb, fc.integer({ min: 1, max: 10 }), ([rows, cols, data], k) => {
        const d = Float32Array.from(data);
        const t = topK(d, rows, cols, { k });
        const am = argmax(d, rows, cols);
        expect(t.k).toBe(Math.min(k, cols));
        for (let r = 0; r < rows; r++) {
          const want = refRank(Array.from(d.subarray(r * cols, (r + 1) * cols)));
          expect(Array.from(t.indices.subarray(r * t.k, (r + 1) * t.k))).toEqual(want.slice(0, t.k));
          expect(am.indices[r]).toBe(want[0]);
        }
      }),
    );
  });

  it('picks the first of equal maxima, skips NaN, and reports all-NaN rows as index 0; top-k ranks NaN as -Infinity', () => {
    const a = argmax(new Float32Array([2, 5, 5, NaN, NaN, NaN, NaN, 1, -Infinity]), 3, 3);
    expect(Array.from(a.indices)).toEqual([1, 0, 1]);
    expect(Number.isNaN(a.values[1])).toBe(true);
    // The kernel ranks NaN as -Infinity; ties go to the lower index.
    expect(Array.from(topK(new Float32Array([NaN, -Infinity, 3]), 1, 3, { k: 3 }).indices)).toEqual([2, 0, 1]);
  });
});

describe('ctcGreedyDecode', () => {
  const vocab = ['a', 'b', 'c', ' '];
  /** One-hot-ish scores for a class path (blank = 0). */
  const scores = (paths: number[][], classes = 5, p = 0.9) => {
    const steps = Math.max(...paths.map((x) => x.length));
    const d = new Float32Array(paths.length * steps * classes);
    paths.forEach((path, b) =>
      path.forEach((c, t) => {
        const o = (b * steps + t) * classes;
        d.fill((1 - p) / (classes - 1), o, o + classes);
        d[o + c] = p;
      }),
    );
    return { d, dims: [paths.length, steps, classes] };
  };

  /** Reference: collapse runs, then drop blanks. */
  const ref = (path: number[]) =>
    path
      .filter((c, i) => i === 0 || c !== path[i - 1])
      .filter((c) => c !== 0)
      .map((c) => vocab[c - 1])
      .join('');

  it('matches collapse-then-drop-blanks on random paths', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 30 }), {
          minLength: 1,
          maxLength: 5,
        }),
        (paths) => {
          // pad shorter paths with blanks: they add nothing
          const len = Math.max(...paths.map((p) => p.length));
          const padded = paths.map((p) => [...p, ...Array(len - p.length).fill(0)]);
          const { d, dims } = scores(padded);
          const r = ctcGreedyDecode(d, dims, { vocabulary: vocab });
          expect(r.texts).toEqual(padded.map(ref));
          r.texts.forEach((t, i) => expect(r.scores[i]).toBeCloseTo(t ? 0.9 : 0, 5));
        },
      ),
    );
  });

  it('a blank between repeats keeps both characters; lengths cut padding; unknown ids emit nothing', () => {
    const { d, dims } = scores([[1, 1, 0, 1, 2, 2, 7 - 3]]);
    expect(ctcGreedyDecode(d, dims, { vocabulary: vocab }).texts).toEqual(['aab ']);
    expect(ctcGreedyDecode(d, dims, { vocabulary: vocab, lengths: [3] }).texts).toEqual(['a']);
    const big = scores([[9, 1]], 10);
    expect(ctcGreedyDecode(big.d, big.dims, { vocabulary: vocab }).texts).toEqual(['a']);
    // blank last (offset 0)
    const last = scores([[0, 4, 4, 1]]);
    expect(ctcGreedyDecode(last.d, last.dims, { vocabulary: vocab, blank: 4, offset: 0 }).texts).toEqual(['ab']);
  });

  it('the probabilities shortcut decodes exactly the same as a full scan', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 12 }),
        fc.array(fc.float({ min: -6, max: 6, noNaN: true }), { minLength: 3 * 12 * 5, maxLength: 3 * 12 * 5 }),
        fc.float({ min: 1, max: 8, noNaN: true }),
        (n, steps, logits, sharp) => {
          const classes = 5;
          const raw = Float32Array.from(logits.slice(0, n * steps * classes), (v) => v * sharp);
          const probs = softmax(raw, n * steps, classes);
          const full = ctcGreedyDecode(probs, [n, steps, classes], { vocabulary: vocab });
          const fast = ctcGreedyDecode(probs, [n, steps, classes], { vocabulary: vocab, probabilities: true });
          expect(fast.texts).toEqual(full.texts);
          expect(Array.from(fast.scores)).toEqual(Array.from(full.scores));
        },
      ),
    );
  });

  it('handles an empty batch and zero steps, and rejects wrong ranks', () => {
    expect(ctcGreedyDecode(new Float32Array(0), [0, 10, 5], { vocabulary: vocab }).texts).toEqual([]);
    expect(ctcGreedyDecode(new Float32Array(0), [2, 0, 5], { vocabulary: vocab }).texts).toEqual(['', '']);
    expect(() => ctcGreedyDecode(new Float32Array(5), [1, 5], { vocabulary: vocab })).toThrow(RangeError);
  });
});

describe('parseVocabulary', () => {
  it('ignores one trailing newline, keeps inner empty lines, accepts CRLF and a BOM, appends the space', () => {
    expect(parseVocabulary('a\nb\nc')).toEqual(['a', 'b', 'c']);
    expect(parseVocabulary('a\nb\nc\n')).toEqual(['a', 'b', 'c']);
    expect(parseVocabulary('\ufeffa\r\n\r\nc\r\n')).toEqual(['a', '', 'c']);
    expect(parseVocabulary('x', { appendSpace: true })).toEqual(['x', ' ']);
    expect(parseVocabulary('')).toEqual([]);
  });
});
