import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { binarize, dbBoxes, dilate2x2, labelComponents, quadMean, unclipRect } from '../runner/ops/detect.js';
import { convexHull, minAreaRect, orderQuad, polygonArea, quadSize, rectCorners } from '../runner/ops/geometry.js';

const pointsArb = fc.array(fc.tuple(fc.integer({ min: -50, max: 50 }), fc.integer({ min: -50, max: 50 })), { minLength: 1, maxLength: 40 });

function inside(hull: ArrayLike<number>, x: number, y: number): boolean {
  const n = hull.length / 2;
  if (n < 3) return true;
  // hull is counter-clockwise in a y-down frame, i.e. clockwise on screen: all cross products ≤ 0 or all ≥ 0
  let sign = 0;
  for (let i = 0; i < n; i++) {
    const j = (i + 1) % n;
    const c = (hull[2 * j] - hull[2 * i]) * (y - hull[2 * i + 1]) - (hull[2 * j + 1] - hull[2 * i + 1]) * (x - hull[2 * i]);
    if (Math.abs(c) < 1e-9) continue;
    if (sign === 0) sign = Math.sign(c);
    else if (Math.sign(c) !== sign) return false;
  }
  return true;
}

describe('convexHull', () => {
  it('contains every point, its vertices are input points, and it is convex', () => {
    fc.assert(
      fc.property(pointsArb, (pts) => {
        const flat = pts.flat();
        const hull = convexHull(flat, pts.length);
        const n = hull.length / 2;
        for (let i = 0; i < n; i++) expect(pts.some(([x, y]) => x === hull[2 * i] && y === hull[2 * i + 1])).toBe(true);
        for (const [x, y] of pts) expect(inside(hull, x, y)).toBe(true);
        // strictly convex: consecutive turns all one way
        if (n >= 3) {
          const turns = Array.from({ length: n }, (_, i) => {
            const [a, b, c] = [i, (i + 1) % n, (i + 2) % n];
            return Math.sign((hull[2 * b] - hull[2 * a]) * (hull[2 * c + 1] - hull[2 * a + 1]) - (hull[2 * b + 1] - hull[2 * a + 1]) * (hull[2 * c] - hull[2 * a]));
          });
          expect(new Set(turns).size).toBe(1);
          expect(turns[0]).not.toBe(0);
        }
      }),
    );
  });

  it('sorted and unsorted input give the same hull; duplicates collapse', () => {
    const pts = [0, 0, 4, 0, 4, 3, 0, 3, 2, 1, 2, 1];
    expect(convexHull(pts, 6).length).toBe(8);
    expect(Array.from(convexHull([1, 1, 1, 1], 2))).toEqual([1, 1]);
    expect(Array.from(convexHull([3, 4], 1))).toEqual([3, 4]);
    expect(convexHull([], 0).length).toBe(0);
  });
});

describe('minAreaRect', () => {
  it('encloses the hull and is no larger than the best of 720 tried angles', () => {
    fc.assert(
      fc.property(pointsArb, (pts) => {
        const hull = convexHull(pts.flat(), pts.length);
        const r = minAreaRect(hull);
        const c = Math.cos(r.angle), s = Math.sin(r.angle);
        for (const [x, y] of pts) {
          const u = (x - r.cx) * c + (y - r.cy) * s, v = -(x - r.cx) * s + (y - r.cy) * c;
          expect(Math.abs(u)).toBeLessThanOrEqual(r.width / 2 + 1e-6);
          expect(Math.abs(v)).toBeLessThanOrEqual(r.height / 2 + 1e-6);
        }
        let best = Infinity;
        for (let k = 0; k < 720; k++) {
          const a = (k / 720) * Math.PI;
          const us = pts.map(([x, y]) => x * Math.cos(a) + y * Math.sin(a)), vs = pts.map(([x, y]) => -x * Math.sin(a) + y * Math.cos(a));
          best = Math.min(best, (Math.max(...us) - Math.min(...us)) * (Math.max(...vs) - Math.min(...vs)));
        }
        expect(r.width * r.height).toBeLessThanOrEqual(best + 1e-6);
      }),
      { numRuns: 80 },
    );
  });

  it('gives zero-size rectangles for a point and a segment', () => {
    expect(minAreaRect(convexHull([2, 3], 1))).toMatchObject({ cx: 2, cy: 3, width: 0, height: 0 });
    const seg = minAreaRect(convexHull([0, 0, 10, 0, 5, 0], 3));
    expect(seg.width * seg.height).toBe(0);
    expect(Math.max(seg.width, seg.height)).toBeCloseTo(10);
  });
});

describe('orderQuad / rectCorners', () => {
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

  it('rectCorners reproduce the rectangle (area and side lengths)', () => {
    const q = rectCorners({ cx: 5, cy: 5, width: 8, height: 2, angle: Math.PI / 7 });
    expect(polygonArea(q)).toBeCloseTo(16);
    const s = quadSize(q);
    expect(s.width).toBeCloseTo(8);
    expect(s.height).toBeCloseTo(2);
  });
});

describe('binarize / dilate / labelComponents', () => {
  it('binarize treats NaN as background and uses a strict threshold', () => {
    expect(Array.from(binarize(new Float32Array([0.3, 0.31, NaN, 1, -Infinity]), 5, { threshold: 0.3 }))).toEqual([0, 1, 0, 1, 0]);
  });

  it('dilate2x2 grows right and down by one pixel', () => {
    const m = new Uint8Array(9);
    m[4] = 1;
    expect(Array.from(dilate2x2(m, 3, 3))).toEqual([0, 0, 0, 0, 1, 1, 0, 1, 1]);
  });

  /** Reference: BFS per unlabeled foreground pixel, 8-connectivity. */
  function refComponents(mask: Uint8Array, w: number, h: number): number[][] {
    const seen = new Uint8Array(w * h);
    const comps: number[][] = [];
    for (let i = 0; i < w * h; i++) {
      if (!mask[i] || seen[i]) continue;
      const comp: number[] = [];
      const queue = [i];
      seen[i] = 1;
      while (queue.length) {
        const p = queue.shift()!;
        comp.push(p);
        const x = p % w, y = Math.floor(p / w);
        for (let dy = -1; dy <= 1; dy++)
          for (let dx = -1; dx <= 1; dx++) {
            const nx = x + dx, ny = y + dy;
            if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
            const q = ny * w + nx;
            if (mask[q] && !seen[q]) {
              seen[q] = 1;
              queue.push(q);
            }
          }
      }
      comps.push(comp.sort((a, b) => a - b));
    }
    return comps;
  }

  it('matches a BFS reference on random masks (same components, raster order, areas, bounds)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 16 }), fc.array(fc.boolean(), { minLength: 256, maxLength: 256 }), (w, h, bits) => {
        const mask = Uint8Array.from(bits.slice(0, w * h), (b) => (b ? 1 : 0));
        const got = labelComponents(mask, w, h);
        const want = refComponents(mask, w, h);
        expect(got.count).toBe(want.length);
        want.forEach((pixels, k) => {
          const id = k + 1;
          expect(pixels.every((p) => got.labels[p] === id)).toBe(true);
          expect(got.areas[k]).toBe(pixels.length);
          const xs = pixels.map((p) => p % w), ys = pixels.map((p) => Math.floor(p / w));
          expect(Array.from(got.bounds.subarray(4 * k, 4 * k + 4))).toEqual([Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)]);
        });
        for (let i = 0; i < w * h; i++) if (!mask[i]) expect(got.labels[i]).toBe(0);
      }),
    );
  });

  it('joins diagonal neighbours and handles 1×1 and empty masks', () => {
    expect(labelComponents(Uint8Array.from([1, 0, 0, 1]), 2, 2).count).toBe(1);
    expect(labelComponents(Uint8Array.from([1]), 1, 1).count).toBe(1);
    expect(labelComponents(new Uint8Array(0), 0, 0).count).toBe(0);
  });
});

describe('quadMean', () => {
  it('averages exactly the pixels whose centres lie in the quad (reference: point-in-polygon per pixel)', () => {
    fc.assert(
      fc.property(fc.array(fc.float({ min: 0, max: 1, noNaN: true }), { minLength: 400, maxLength: 400 }), fc.float({ min: 0, max: Math.fround(Math.PI), noNaN: true }), fc.integer({ min: 2, max: 9 }), (vals, angle, half) => {
        const w = 20, h = 20;
        const prob = Float32Array.from(vals);
        const q = rectCorners({ cx: 9.37, cy: 10.21, width: 2 * half, height: half, angle });
        let sum = 0, n = 0;
        for (let y = 0; y < h; y++)
          for (let x = 0; x < w; x++) {
            // inside a convex clockwise quad: all edge cross products ≥ 0 (with tolerance)
            let ok = true;
            for (let k = 0; k < 4; k++) {
              const ax = q[2 * k], ay = q[2 * k + 1], bx = q[(2 * k + 2) % 8], by = q[(2 * k + 3) % 8];
              if ((bx - ax) * (y - ay) - (by - ay) * (x - ax) < -1e-6) ok = false;
            }
            if (ok) {
              sum += prob[y * w + x];
              n++;
            }
          }
        const got = quadMean(prob, w, h, q);
        expect(got).toBeCloseTo(n ? sum / n : 0, 4);
      }),
      { numRuns: 60 },
    );
  });

  it('ignores NaN values in the sum and returns 0 for a quad outside the map', () => {
    const prob = new Float32Array([1, NaN, 1, 1]);
    expect(quadMean(prob, 2, 2, [0, 0, 1, 0, 1, 1, 0, 1])).toBeCloseTo(0.75);
    expect(quadMean(prob, 2, 2, [10, 10, 12, 10, 12, 12, 10, 12])).toBe(0);
  });
});

describe('unclipRect', () => {
  it('grows each side by area × ratio / perimeter', () => {
    const r = unclipRect({ cx: 0, cy: 0, width: 30, height: 10, angle: 0.3 }, 1.5);
    const d = (300 * 1.5) / 80;
    expect(r.width).toBeCloseTo(30 + 2 * d);
    expect(r.height).toBeCloseTo(10 + 2 * d);
    expect(r.angle).toBe(0.3);
    expect(unclipRect({ cx: 1, cy: 1, width: 0, height: 0, angle: 0 }, 2).width).toBe(0);
  });
});

describe('dbBoxes', () => {
  function map(w: number, h: number, rects: [number, number, number, number, number][]): Float32Array {
    const p = new Float32Array(w * h);
    for (const [x0, y0, x1, y1, v] of rects) for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) p[y * w + x] = v;
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
    // first blob: pixel centres span 59 × 7; unclip adds 2d on both sides
    const d = (59 * 7 * 1.5) / (2 * (59 + 7));
    const s = quadSize(r.quads.subarray(0, 8));
    expect(s.width).toBeCloseTo(59 + 2 * d, 3);
    expect(s.height).toBeCloseTo(7 + 2 * d, 3);
    expect(r.quads[0]).toBeCloseTo(10 - d, 3);
    expect(r.quads[1]).toBeCloseTo(10 - d, 3);
  });

  it('drops specks, weak boxes and NaN maps; an empty or 1×1 map has no regions', () => {
    const prob = map(50, 50, [
      [5, 5, 6, 6, 0.9], // speck: short side 1 < 3
      [10, 20, 40, 30, 0.35], // above threshold but box score 0.35 < 0.6
    ]);
    expect(dbBoxes(prob, 50, 50, { threshold: 0.3, boxThreshold: 0.6, unclipRatio: 1.5 }).count).toBe(0);
    expect(dbBoxes(new Float32Array(2500).fill(NaN), 50, 50, { threshold: 0.3, boxThreshold: 0.6, unclipRatio: 1.5 }).count).toBe(0);
    expect(dbBoxes(new Float32Array([1]), 1, 1, { threshold: 0.3, boxThreshold: 0.6, unclipRatio: 1.5 }).count).toBe(0);
    expect(dbBoxes(new Float32Array(0), 0, 0, { threshold: 0.3, boxThreshold: 0.6, unclipRatio: 1.5 }).count).toBe(0);
  });

  it('finds a rotated blob as a rotated box and honours maxCandidates', () => {
    const w = 80, h = 80;
    const prob = new Float32Array(w * h);
    const a = Math.PI / 6;
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const u = (x - 40) * Math.cos(a) + (y - 40) * Math.sin(a), v = -(x - 40) * Math.sin(a) + (y - 40) * Math.cos(a);
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
