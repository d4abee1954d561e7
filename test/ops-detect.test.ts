import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dbBoxes } from '../runner/ops/detect.js';
import { orderQuad, polygonArea, quadSize } from '../runner/ops/geometry.js';

// The hull, rotated-rectangle, component and box-score kernels behind dbBoxes are tested against
// references in test/native-textdet.test.ts (both backends); here: the adapter and quad helpers.

/** Corners (TL, TR, BR, BL for small angles) of a rotated rectangle. */
function rectCorners(r: { cx: number; cy: number; width: number; height: number; angle: number }): number[] {
  const c = Math.cos(r.angle),
    s = Math.sin(r.angle);
  const hw = r.width / 2,
    hh = r.height / 2;
  return [
    [-hw, -hh],
    [hw, -hh],
    [hw, hh],
    [-hw, hh],
  ].flatMap(([u, v]) => [r.cx + u * c - v * s, r.cy + u * s + v * c]);
}

describe('orderQuad / quadSize / polygonArea', () => {
  it('orders any rotation of a rectangle clockwise from the top-left', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 3 }), fc.boolean(), (rot, reverse) => {
        const pts = [
          [10, 20],
          [50, 20],
          [50, 30],
          [10, 30],
        ];
        const shuffled = [...pts.slice(rot), ...pts.slice(0, rot)];
        if (reverse) shuffled.reverse();
        expect(Array.from(orderQuad(shuffled.flat()))).toEqual(pts.flat());
      }),
    );
  });

  it('measure a rotated rectangle (area and side lengths)', () => {
    const q = rectCorners({ cx: 5, cy: 5, width: 8, height: 2, angle: Math.PI / 7 });
    expect(polygonArea(q)).toBeCloseTo(16);
    const s = quadSize(q);
    expect(s.width).toBeCloseTo(8);
    expect(s.height).toBeCloseTo(2);
  });
});

describe('dbBoxes', () => {
  function map(w: number, h: number, rects: [number, number, number, number, number][]): Float32Array {
    const p = new Float32Array(w * h);
    for (const [x0, y0, x1, y1, v] of rects)
      for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) p[y * w + x] = v;
    return p;
  }

  it('finds one box per text blob, unclipped around it, with the blob score', () => {
    const prob = map(100, 60, [
      [10, 10, 69, 17, 0.9],
      [20, 40, 49, 45, 0.8],
    ]);
    const r = dbBoxes(prob, 100, 60, { threshold: 0.3, boxThreshold: 0.6, unclipRatio: 1.5 });
    expect(r.count).toBe(2);
    expect(r.scores[0]).toBeCloseTo(0.9);
    // first blob: pixel centres (pixel i spans [i, i + 1), centre i + 0.5) span 59 × 7; unclip adds 2d on both sides
    const d = (59 * 7 * 1.5) / (2 * (59 + 7));
    const s = quadSize(r.quads.subarray(0, 8));
    expect(s.width).toBeCloseTo(59 + 2 * d, 3);
    expect(s.height).toBeCloseTo(7 + 2 * d, 3);
    expect(r.quads[0]).toBeCloseTo(10.5 - d, 3);
    expect(r.quads[1]).toBeCloseTo(10.5 - d, 3);
  });

  it('drops specks, weak boxes and NaN maps; an empty or 1×1 map has no regions', () => {
    const prob = map(50, 50, [
      [5, 5, 6, 6, 0.9], // speck: short side 1 < 3
      [10, 20, 40, 30, 0.35], // above threshold but box score 0.35 < 0.6
    ]);
    expect(dbBoxes(prob, 50, 50, { threshold: 0.3, boxThreshold: 0.6, unclipRatio: 1.5 }).count).toBe(0);
    expect(
      dbBoxes(new Float32Array(2500).fill(NaN), 50, 50, { threshold: 0.3, boxThreshold: 0.6, unclipRatio: 1.5 }).count,
    ).toBe(0);
    expect(dbBoxes(new Float32Array([1]), 1, 1, { threshold: 0.3, boxThreshold: 0.6, unclipRatio: 1.5 }).count).toBe(0);
    expect(dbBoxes(new Float32Array(0), 0, 0, { threshold: 0.3, boxThreshold: 0.6, unclipRatio: 1.5 }).count).toBe(0);
  });

  it('finds a rotated blob as a rotated box and honours maxCandidates', () => {
    const w = 80,
      h = 80;
    const prob = new Float32Array(w * h);
    const a = Math.PI / 6;
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const u = (x - 40) * Math.cos(a) + (y - 40) * Math.sin(a),
          v = -(x - 40) * Math.sin(a) + (y - 40) * Math.cos(a);
        if (Math.abs(u) <= 25 && Math.abs(v) <= 5) prob[y * w + x] = 1;
      }
    const r = dbBoxes(prob, w, h, { threshold: 0.5, boxThreshold: 0.5, unclipRatio: 0 });
    expect(r.count).toBe(1);
    const q = r.quads;
    const angle = Math.atan2(q[3] - q[1], q[2] - q[0]);
    expect(Math.abs(angle - a)).toBeLessThan(0.05);
    const two = map(40, 40, [
      [2, 2, 20, 8, 1],
      [2, 20, 20, 28, 1],
    ]);
    expect(dbBoxes(two, 40, 40, { threshold: 0.5, boxThreshold: 0.5, unclipRatio: 1, maxCandidates: 1 }).count).toBe(1);
  });
});
