/**
 * DB text-detection post-processing against independent references: union-find components and a
 * brute-force angle sweep for the minimum-area rectangle (sides within 1%), expected unclip growth
 * and box scores. Native and portable must agree bit for bit (same double arithmetic).
 */
import { describe, expect, it } from 'vitest';
import { type DbOptions, dbPostprocessSync } from '../native/index.js';
import { nativeExpected, onBoth, onPortable, rng } from './native-helpers.js';

interface Rect {
  cx: number;
  cy: number;
  w: number;
  h: number;
  a: number;
}

/** Probability map with filled rotated rectangles (0.9 inside a pixel centre test, noise outside). */
function draw(W: number, H: number, rects: Rect[], seed: number): Float32Array {
  const r = rng(seed);
  const m = new Float32Array(W * H).map(() => r() * 0.1);
  for (const q of rects) {
    const c = Math.cos(q.a),
      s = Math.sin(q.a);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const dx = x - q.cx,
          dy = y - q.cy;
        if (Math.abs(dx * c + dy * s) <= q.w / 2 && Math.abs(-dx * s + dy * c) <= q.h / 2) m[y * W + x] = 0.9;
      }
    }
  }
  return m;
}

/** 8-connected components by union-find; pixel lists. */
function components(mask: Uint8Array, W: number, H: number): number[][] {
  const parent = Int32Array.from({ length: W * H }, (_, i) => i);
  const find = (i: number): number => (parent[i] === i ? i : (parent[i] = find(parent[i])));
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      if (!mask[y * W + x]) continue;
      for (const [dx, dy] of [
        [-1, -1],
        [0, -1],
        [1, -1],
        [-1, 0],
      ]) {
        const nx = x + dx,
          ny = y + dy;
        if (nx >= 0 && ny >= 0 && nx < W && mask[ny * W + nx]) parent[find(y * W + x)] = find(ny * W + nx);
      }
    }
  const groups = new Map<number, number[]>();
  for (let i = 0; i < W * H; i++) if (mask[i]) groups.set(find(i), [...(groups.get(find(i)) ?? []), i]);
  return [...groups.values()];
}

/** Minimum-area rectangle of pixel centres by sweeping the angle (0.02° steps). */
function sweepRect(pixels: number[], W: number): { w: number; h: number } {
  let best = { area: Infinity, w: 0, h: 0 };
  for (let d = 0; d < 90; d += 0.02) {
    const a = (d * Math.PI) / 180,
      c = Math.cos(a),
      s = Math.sin(a);
    let s0 = Infinity,
      s1 = -Infinity,
      t0 = Infinity,
      t1 = -Infinity;
    for (const p of pixels) {
      const x = p % W,
        y = Math.floor(p / W);
      const u = x * c + y * s,
        v = -x * s + y * c;
      (s0 = Math.min(s0, u)), (s1 = Math.max(s1, u)), (t0 = Math.min(t0, v)), (t1 = Math.max(t1, v));
    }
    if ((s1 - s0) * (t1 - t0) < best.area) best = { area: (s1 - s0) * (t1 - t0), w: s1 - s0, h: t1 - t0 };
  }
  return best;
}

const side = (q: Float32Array, k: number, a: number, b: number) =>
  Math.hypot(q[8 * k + 2 * a] - q[8 * k + 2 * b], q[8 * k + 2 * a + 1] - q[8 * k + 2 * b + 1]);

describe('dbPostprocess', () => {
  it('rotated text boxes: count, rectangle sides after unclip, score, corner order', () => {
    const W = 160,
      H = 120;
    const rects: Rect[] = [
      { cx: 40, cy: 30, w: 50, h: 12, a: 0.3 },
      { cx: 110, cy: 40, w: 60, h: 10, a: -0.15 },
      { cx: 70, cy: 90, w: 90, h: 16, a: 0 },
      { cx: 140, cy: 100, w: 2, h: 2, a: 0 }, // speck: below minSize
    ];
    const prob = draw(W, H, rects, 1);
    const o: DbOptions = { width: W, height: H, unclipRatio: 1.5 };
    const r = onPortable(() => dbPostprocessSync(prob, o));
    const mask = Uint8Array.from(prob, (v) => (v > 0.3 ? 1 : 0));
    const comps = components(mask, W, H).filter((c) => c.length > 4);
    expect(r.count).toBe(3);
    expect(comps.length).toBe(4 - 1 + 1); // the speck is a component too (4 pixels), dropped by size
    const big = comps.filter((c) => c.length > 20).sort((a, b) => a[0] - b[0]);
    big.forEach((pixels, k) => {
      const ref = sweepRect(pixels, W);
      const d = (ref.w * ref.h * 1.5) / (2 * (ref.w + ref.h));
      const [gw, gh] = [ref.w + 2 * d, ref.h + 2 * d].sort((a, b) => b - a);
      const sides = [side(r.quads, k, 0, 1), side(r.quads, k, 1, 2)].sort((a, b) => b - a);
      expect(Math.abs(sides[0] - gw) / gw).toBeLessThan(0.01);
      expect(Math.abs(sides[1] - gh) / gh).toBeLessThan(0.01);
      expect(r.scores[k]).toBeCloseTo(0.9, 5);
      // TL is left of TR and above BL; BR is right of BL.
      const q = r.quads.subarray(8 * k, 8 * k + 8);
      expect(q[0]).toBeLessThan(q[2]);
      expect(q[1]).toBeLessThan(q[7]);
      expect(q[6]).toBeLessThan(q[4]);
    });
  });

  it('edge cases: empty map, all text, single pixel, NaN, 1x1, maxCandidates, box threshold', () => {
    const run = (p: Float32Array, o: DbOptions) => onPortable(() => dbPostprocessSync(p, o));
    expect(run(new Float32Array(0), { width: 0, height: 0 }).count).toBe(0);
    expect(run(new Float32Array(100), { width: 10, height: 10 }).count).toBe(0);
    const full = run(new Float32Array(20 * 10).fill(1), { width: 20, height: 10, unclipRatio: 0 });
    expect(full.count).toBe(1);
    // Pixel centres 0..19 shifted to the continuous frame: the rectangle spans [0.5, 19.5] x [0.5, 9.5].
    expect(Array.from(full.quads)).toEqual([0.5, 0.5, 19.5, 0.5, 19.5, 9.5, 0.5, 9.5]);
    expect(full.scores[0]).toBe(1);
    const one = new Float32Array(49);
    one[24] = 1;
    expect(run(one, { width: 7, height: 7 }).count).toBe(0);
    // 1x1 map: the lone pixel scores 1 but its unclipped box (0x0) is below minSize + 2.
    expect(run(new Float32Array([1]), { width: 1, height: 1, minSize: 0 }).count).toBe(0);
    const nan = new Float32Array(400).fill(NaN);
    expect(run(nan, { width: 20, height: 20 }).count).toBe(0);
    const many = draw(
      100,
      40,
      [0, 1, 2, 3].map((i) => ({ cx: 12 + i * 25, cy: 20, w: 18, h: 10, a: 0 })),
      2,
    );
    expect(run(many, { width: 100, height: 40 }).count).toBe(4);
    expect(run(many, { width: 100, height: 40, maxCandidates: 2 }).count).toBe(2);
    expect(run(many, { width: 100, height: 40, boxThreshold: 0.95 }).count).toBe(0);
  });

  it('output mapping: scaled to the image and clipped', () => {
    const prob = new Float32Array(20 * 10).fill(1);
    const r = onPortable(() => dbPostprocessSync(prob, { width: 20, height: 10, outputWidth: 40, outputHeight: 15 }));
    expect(Math.min(...r.quads)).toBe(0);
    for (let k = 0; k < 4; k++) {
      expect(r.quads[2 * k]).toBeLessThanOrEqual(40);
      expect(r.quads[2 * k + 1]).toBeLessThanOrEqual(15);
    }
  });
});

describe.skipIf(!nativeExpected)('dbPostprocess native vs portable (bit for bit)', () => {
  it('random blobs with dilation and odd sizes', () => {
    const r = rng(3);
    for (let trial = 0; trial < 4; trial++) {
      const W = 97 + trial * 31,
        H = 61 + trial * 17;
      const rects = Array.from({ length: 12 }, () => ({
        cx: r() * W,
        cy: r() * H,
        w: 3 + r() * 40,
        h: 2 + r() * 12,
        a: (r() - 0.5) * 3,
      }));
      const prob = draw(W, H, rects, trial);
      for (let i = 0; i < prob.length; i += 97) prob[i] = NaN;
      for (const dilate of [false, true]) {
        const o: DbOptions = {
          width: W,
          height: H,
          dilate,
          boxThreshold: 0.5,
          outputWidth: W * 2.5,
          outputHeight: H * 1.5,
          threads: 2,
        };
        const both = onBoth(() => dbPostprocessSync(prob, o));
        expect(both.native.count).toBeGreaterThan(0);
        expect(both.native).toEqual(both.portable);
      }
    }
  });

  it('components joined late (U and W shapes), diagonal chains, speckle, and the candidate cap', () => {
    const W = 131,
      H = 77;
    const r = rng(11);
    const prob = new Float32Array(W * H);
    const set = (x: number, y: number) => {
      if (x >= 0 && y >= 0 && x < W && y < H) prob[y * W + x] = 0.9;
    };
    // U: two arms whose runs meet only at the bottom bar; W: three arms, the middle one shorter
    for (let y = 5; y < 30; y++) for (const x0 of [10, 30]) for (let x = x0; x < x0 + 4; x++) set(x, y);
    for (let x = 10; x < 34; x++) for (let y = 30; y < 33; y++) set(x, y);
    for (let y = 5; y < 40; y++)
      for (const x0 of [50, 70, 90]) for (let x = x0; x < x0 + 3; x++) set(x, y + (x0 === 70 ? 10 : 0));
    for (let x = 50; x < 93; x++) set(x, 45);
    // diagonal chains (8-connected only through corners), both directions
    for (let i = 0; i < 25; i++) set(100 + i, 40 + i), set(125 - i, 40 + i), set(5 + i, 50 + i);
    // speckle: many one- and two-pixel components
    for (let i = 0; i < 60; i++) {
      const x = Math.floor(r() * W),
        y = Math.floor(r() * H);
      set(x, y);
      if (r() < 0.3) set(x + 1, y);
    }
    for (const maxCandidates of [1000, 40, 3, 1])
      for (const dilate of [false, true]) {
        const o: DbOptions = { width: W, height: H, dilate, boxThreshold: 0, minSize: 1, maxCandidates, threads: 2 };
        const both = onBoth(() => dbPostprocessSync(prob, o));
        // a cap may keep only speckle, whose single pixels make no box
        if (maxCandidates === 1000) expect(both.native.count).toBeGreaterThan(3);
        expect(both.native).toEqual(both.portable);
      }
  });
});
