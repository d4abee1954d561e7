import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { iou, nms } from '../runner/ops/nms.js';
import { readingOrder } from '../runner/ops/order.js';

describe('nms', () => {
  /** Reference: repeatedly take the best remaining box, remove every same-class box overlapping it. */
  function refNms(boxes: number[][], scores: number[], thr: number, classes?: number[]): number[] {
    let rest = scores.map((s, i) => i).filter((i) => !Number.isNaN(scores[i]));
    const keep: number[] = [];
    while (rest.length) {
      rest.sort((a, b) => scores[b] - scores[a] || a - b);
      const best = rest.shift()!;
      keep.push(best);
      rest = rest.filter((j) => (classes && classes[j] !== classes[best]) || iou(boxes.flat(), best, j) <= thr);
    }
    return keep;
  }

  const boxArb = fc
    .tuple(
      fc.integer({ min: 0, max: 40 }),
      fc.integer({ min: 0, max: 40 }),
      fc.integer({ min: 1, max: 30 }),
      fc.integer({ min: 1, max: 30 }),
    )
    .map(([x, y, w, h]) => [x, y, x + w, y + h]);

  it('matches the reference on random boxes, with NaN scores and classes', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            boxArb,
            fc.oneof(fc.float({ min: 0, max: 1, noNaN: true }), fc.constant(NaN)),
            fc.integer({ min: 0, max: 2 }),
          ),
          { maxLength: 25 },
        ),
        fc.float({ min: 0, max: 1, noNaN: true }),
        fc.boolean(),
        (items, thr, byClass) => {
          const boxes = items.map((i) => i[0]);
          const scores = items.map((i) => i[1]);
          const classes = items.map((i) => i[2]);
          const got = nms(boxes.flat(), Float32Array.from(scores), items.length, {
            iouThreshold: thr,
            classes: byClass ? classes : undefined,
          });
          expect(Array.from(got)).toEqual(
            refNms(boxes, Array.from(Float32Array.from(scores)), thr, byClass ? classes : undefined),
          );
        },
      ),
    );
  });

  it('keeps the first of identical boxes, honours maxOutput and scoreThreshold, and handles zero boxes', () => {
    const boxes = [0, 0, 10, 10, 0, 0, 10, 10, 0, 0, 10, 10, 50, 50, 60, 60];
    expect(Array.from(nms(boxes, [0.5, 0.5, 0.5, 0.4], 4, { iouThreshold: 0.5 }))).toEqual([0, 3]);
    expect(Array.from(nms(boxes, [0.5, 0.9, 0.5, 0.4], 4, { iouThreshold: 0.5, maxOutput: 1 }))).toEqual([1]);
    expect(Array.from(nms(boxes, [0.5, 0.9, 0.5, 0.4], 4, { iouThreshold: 0.5, scoreThreshold: 0.95 }))).toEqual([]);
    expect(Array.from(nms([], [], 0, { iouThreshold: 0.5 }))).toEqual([]);
  });

  it('iou: symmetric, 1 for identical, 0 for touching or empty boxes', () => {
    const b = [0, 0, 2, 2, 1, 1, 3, 3, 2, 0, 4, 2, 5, 5, 5, 5];
    expect(iou(b, 0, 1)).toBeCloseTo(1 / 7);
    expect(iou(b, 1, 0)).toBeCloseTo(1 / 7);
    expect(iou(b, 0, 0)).toBe(1);
    expect(iou(b, 0, 2)).toBe(0);
    expect(iou(b, 3, 3)).toBe(0);
  });
});

describe('readingOrder', () => {
  /** Axis-aligned quad from x, y (top-left), width, height. */
  const q = (x: number, y: number, w: number, h: number) => [x, y, x + w, y, x + w, y + h, x, y + h];
  const orderOf = (boxes: number[][]) => Array.from(readingOrder(boxes.flat(), boxes.length));

  it('reads a single column top to bottom whatever the input order', () => {
    const lines = Array.from({ length: 8 }, (_, i) => q(20, 20 + i * 30, 200 + (i % 3) * 40, 28));
    fc.assert(
      fc.property(
        fc.shuffledSubarray(
          lines.map((_, i) => i),
          { minLength: 8, maxLength: 8 },
        ),
        (perm) => {
          const got = orderOf(perm.map((i) => lines[i]));
          expect(got.map((k) => perm[k])).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
        },
      ),
    );
  });

  it('reads two columns one after the other, after a heading spanning both', () => {
    const heading = q(150, 10, 500, 40);
    const left = Array.from({ length: 5 }, (_, i) => q(40, 80 + i * 34, 300, 30));
    const right = Array.from({ length: 5 }, (_, i) => q(420, 80 + i * 34, 300, 30));
    const footer = q(40, 260, 680, 30);
    const all = [heading, ...left, ...right, footer];
    fc.assert(
      fc.property(
        fc.shuffledSubarray(
          all.map((_, i) => i),
          { minLength: all.length, maxLength: all.length },
        ),
        (perm) => {
          expect(orderOf(perm.map((i) => all[i])).map((k) => perm[k])).toEqual(all.map((_, i) => i));
        },
      ),
      { numRuns: 50 },
    );
  });

  it('reads a price list row by row (narrow amount column), words of a line left to right', () => {
    const rows = [0, 1, 2, 3].flatMap((i) => [q(30, 20 + i * 36, 160, 30), q(300, 20 + i * 36, 60, 30)]);
    expect(orderOf([...rows].reverse()).map((k) => 7 - k)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('keeps a vertical line as its own column and copes with zero, one, identical and NaN boxes', () => {
    const lines = [q(20, 20, 300, 30), q(20, 60, 300, 30), q(400, 10, 30, 300)];
    expect(orderOf(lines)).toEqual([0, 1, 2]);
    expect(orderOf([])).toEqual([]);
    expect(orderOf([q(0, 0, 10, 10)])).toEqual([0]);
    expect(orderOf([q(5, 5, 100, 20), q(5, 5, 100, 20), q(5, 5, 100, 20)])).toEqual([0, 1, 2]);
    expect(orderOf([[NaN, 0, 1, 0, 1, 1, 0, 1], q(0, 50, 50, 10), q(0, 0, 50, 10)])).toEqual([2, 1, 0]);
  });
});
