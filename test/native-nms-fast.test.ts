/**
 * The native NMS fast paths (kernels/nms.cc, nms_scan.h) against a straightforward O(n^2) reference
 * and the portable kernel, index for index. The native kernel runs suppress-forward (SIMD, float
 * IoU with an exact double fallback near the threshold) on large clustered sets, hands spread-out
 * remainders to its sorted grid phase seeded with the boxes kept so far, and merges boxes that can
 * never suppress (NaN, infinite, empty) by rank; these cases reach each of those paths.
 */
import { describe, expect, it } from 'vitest';
import { type NmsOptions, nmsSync } from '../native/index.js';
import { nativeExpected, onBoth, onPortable, rng } from './native-helpers.js';

interface Cands {
  boxes: Float32Array;
  scores: Float32Array;
  classes: Int32Array;
}

/** Textbook greedy NMS in double, the contract of kernels/detect.h, written independently. */
function reference(s: Cands, o: NmsOptions, base = 0, n = s.scores.length): number[] {
  const sc = s.scores.subarray(base, base + n),
    bx = s.boxes.subarray(base * 4, (base + n) * 4);
  const cls = o.classes?.subarray(base, base + n);
  let order: number[] = [];
  for (let i = 0; i < n; i++) if (sc[i] === sc[i] && sc[i] >= (o.scoreThreshold ?? -Infinity)) order.push(i);
  order.sort((a, b) => sc[b] - sc[a] || a - b);
  if (o.preTopK !== undefined) order = order.slice(0, o.preTopK);
  const x1 = new Float64Array(n),
    y1 = new Float64Array(n),
    x2 = new Float64Array(n),
    y2 = new Float64Array(n);
  const nan = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const [a0, a1, a2, a3] = bx.subarray(4 * i, 4 * i + 4);
    nan[i] = a0 !== a0 || a1 !== a1 || a2 !== a2 || a3 !== a3 ? 1 : 0;
    [x1[i], x2[i], y1[i], y2[i]] = [a0 < a2 ? a0 : a2, a0 < a2 ? a2 : a0, a1 < a3 ? a1 : a3, a1 < a3 ? a3 : a1];
  }
  const iou = (a: number, b: number): number => {
    if (nan[a] || nan[b]) return 0;
    const iw = Math.min(x2[a], x2[b]) - Math.max(x1[a], x1[b]),
      ih = Math.min(y2[a], y2[b]) - Math.max(y1[a], y1[b]);
    if (!(iw > 0 && ih > 0)) return 0;
    const inter = iw * ih,
      uni = (x2[a] - x1[a]) * (y2[a] - y1[a]) + (x2[b] - x1[b]) * (y2[b] - y1[b]) - inter;
    return uni > 0 ? inter / uni : 0;
  };
  const dead = new Uint8Array(n),
    keep: number[] = [];
  for (let a = 0; a < order.length && keep.length !== (o.maxOutput ?? Infinity); a++) {
    const i = order[a];
    if (dead[i]) continue;
    keep.push(i);
    for (let b = a + 1; b < order.length; b++) {
      const j = order[b];
      if (!dead[j] && (!cls || cls[i] === cls[j]) && iou(i, j) > o.iouThreshold) dead[j] = 1;
    }
  }
  return keep;
}

function check(s: Cands, o: NmsOptions): number[] {
  const ref = reference(s, o);
  expect(Array.from(onPortable(() => nmsSync(s.boxes, s.scores, o)).keep)).toEqual(ref);
  if (nativeExpected) expect(Array.from(onBoth(() => nmsSync(s.boxes, s.scores, o)).native.keep)).toEqual(ref);
  return ref;
}

/** Jittered copies of a few objects (a detector head's duplicates); optional integer coordinates. */
function clustered(n: number, seed: number, objects = 20, jitter = 0.3, integer = false): Cands {
  const r = rng(seed);
  const obj = Array.from({ length: objects }, () => ({
    x: 40 + r() * 560,
    y: 40 + r() * 560,
    w: 8 + r() * 170,
    h: 8 + r() * 170,
    c: Math.floor(r() * 4),
  }));
  const boxes = new Float32Array(n * 4),
    scores = new Float32Array(n),
    classes = new Int32Array(n);
  const q = (v: number) => (integer ? Math.round(v) : v);
  for (let i = 0; i < n; i++) {
    const o = obj[Math.floor(r() * objects)];
    const cx = o.x + (r() - 0.5) * jitter * o.w,
      cy = o.y + (r() - 0.5) * jitter * o.h,
      w = o.w * (0.8 + r() * 0.4),
      h = o.h * (0.8 + r() * 0.4);
    boxes.set([q(cx - w / 2), q(cy - h / 2), q(cx + w / 2), q(cy + h / 2)], 4 * i);
    scores[i] = r();
    classes[i] = r() < 0.9 ? o.c : Math.floor(r() * 4);
  }
  return { boxes, scores, classes };
}

function spread(n: number, seed: number): Cands {
  const r = rng(seed);
  const boxes = new Float32Array(n * 4),
    scores = new Float32Array(n),
    classes = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const x = r() * 620,
      y = r() * 620;
    boxes.set([x, y, x + 4 + r() * 20, y + 4 + r() * 20], 4 * i);
    scores[i] = r();
    classes[i] = Math.floor(r() * 4);
  }
  return { boxes, scores, classes };
}

function concat(...sets: Cands[]): Cands {
  const cat = <T extends Float32Array | Int32Array>(parts: T[], make: (n: number) => T): T => {
    const out = make(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) out.set(p, at), (at += p.length);
    return out;
  };
  return {
    boxes: cat(
      sets.map((s) => s.boxes),
      (n) => new Float32Array(n),
    ),
    scores: cat(
      sets.map((s) => s.scores),
      (n) => new Float32Array(n),
    ),
    classes: cat(
      sets.map((s) => s.classes),
      (n) => new Int32Array(n),
    ),
  };
}

/** The largest double below x (x > 0). */
function nextDown(x: number): number {
  const f = new Float64Array([x]),
    b = new BigInt64Array(f.buffer);
  b[0] -= 1n;
  return f[0];
}

describe('native nms fast paths agree with the O(n^2) reference', () => {
  it('clustered 3,000 candidates: thresholds 0, 0.3, 0.5, 1 and a tiny one, agnostic and class-aware', () => {
    const s = clustered(3000, 11);
    for (const iouThreshold of [0, 0.3, 0.5, 1, 1e-7]) {
      check(s, { iouThreshold });
      check(s, { iouThreshold, classes: s.classes });
    }
  });

  it('duplicates: identical boxes, identical scores (ties by index), nested boxes', () => {
    const s = clustered(2400, 12, 6);
    for (let i = 0; i < 2400; i += 3) s.boxes.copyWithin(4 * i, 4 * ((i * 7) % 60), 4 * ((i * 7) % 60) + 4); // exact copies
    for (let i = 0; i < 2400; i++) s.scores[i] = Math.floor(s.scores[i] * 8) / 8; // many equal scores
    for (let i = 1; i < 2400; i += 50)
      s.boxes.set([s.boxes[4 * i] + 2, s.boxes[4 * i + 1] + 2, s.boxes[4 * i + 2] - 2, s.boxes[4 * i + 3] - 2], 4 * i);
    s.scores[5] = -0;
    s.scores[6] = 0;
    for (const iouThreshold of [0, 0.5, 0.99, 1]) {
      check(s, { iouThreshold });
      check(s, { iouThreshold, classes: s.classes });
    }
  });

  it('IoU exactly at the threshold is not suppressed, one ulp below it is', () => {
    // Unit-height boxes of width 3 on an integer lattice: neighbours 1 apart have IoU 2/4 = 0.5
    // exactly, 2 apart 1/5 = 0.2; width 2 boxes 1 apart have 1/3.
    const n = 2500,
      r = rng(13);
    const boxes = new Float32Array(n * 4),
      scores = new Float32Array(n),
      classes = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const x = Math.floor(r() * 400),
        y = Math.floor(r() * 12),
        w = r() < 0.7 ? 3 : 2;
      boxes.set([x, y, x + w, y + 1], 4 * i);
      scores[i] = r();
      classes[i] = i % 2;
    }
    const s = { boxes, scores, classes };
    const sizes = new Set<number>();
    for (const t of [0.5, 0.2, 1 / 3]) {
      for (const iouThreshold of [t, nextDown(t)]) {
        sizes.add(check(s, { iouThreshold }).length);
        check(s, { iouThreshold, classes });
      }
    }
    expect(sizes.size).toBeGreaterThan(3); // the ulp matters: results differ across the pairs
  });

  it('thresholds equal to (and an ulp below) the IoU of sampled overlapping pairs', () => {
    const s = clustered(2200, 14, 12, 0.5);
    const r = rng(15);
    let tried = 0;
    for (let k = 0; k < 400 && tried < 4; k++) {
      const iou = pairIou(s.boxes, Math.floor(r() * 2200), Math.floor(r() * 2200));
      if (!(iou > 0.05 && iou < 0.95)) continue;
      tried++;
      check(s, { iouThreshold: iou });
      check(s, { iouThreshold: nextDown(iou), classes: s.classes });
    }
    expect(tried).toBe(4);
  });

  it('pairs whose float32 IoU evaluation lands on the wrong side of thr are decided exactly', () => {
    // Search pair geometries (coordinates on a 2^-12 grid, exact in float32 after integer shifts)
    // where thr = their exact IoU (not suppressed) or one ulp below it (suppressed), yet the same
    // test done in float32 (A = inter vs B = thr * union) says the opposite. Then plant 150 shifted
    // copies of the pair among 2,000 clustered boxes, so the native SIMD pass meets them.
    const f = Math.fround,
      r = rng(30),
      found: { a: number[]; b: number[]; thr: number }[] = [];
    const g = (v: number) => Math.round(v * 4096) / 4096;
    for (let k = 0; k < 20000 && found.length < 6; k++) {
      const a = [g(r() * 20), g(r() * 20)],
        b = [g(a[0] + r() * 8), g(a[1] + r() * 8)];
      a.push(g(a[0] + 8 + r() * 30), g(a[1] + 8 + r() * 30)), b.push(g(b[0] + 8 + r() * 30), g(b[1] + 8 + r() * 30));
      const q = pairIou(new Float32Array([...a, ...b]), 0, 1);
      if (!(q > 0.05)) continue;
      const iw = f(Math.min(a[2], b[2]) - Math.max(a[0], b[0])),
        ih = f(Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
      const inter = f(iw * ih),
        union = f(f(f(f(a[2] - a[0]) * f(a[3] - a[1])) + f(f(b[2] - b[0]) * f(b[3] - b[1]))) - inter);
      for (const thr of [q, nextDown(q)]) if (inter > f(f(thr) * union) !== q > thr) found.push({ a, b, thr });
    }
    expect(found.length).toBe(6);
    for (const { a, b, thr } of found) {
      const s = clustered(2000, 31);
      const pairs = new Float32Array(300 * 4);
      for (let j = 0; j < 150; j++) {
        const tx = 700 + 64 * (j % 10),
          ty = 64 * Math.floor(j / 10);
        pairs.set([a[0] + tx, a[1] + ty, a[2] + tx, a[3] + ty, b[0] + tx, b[1] + ty, b[2] + tx, b[3] + ty], 8 * j);
      }
      const r2 = rng(32);
      const all = concat(s, {
        boxes: pairs,
        scores: new Float32Array(300).map(() => r2()),
        classes: new Int32Array(300),
      });
      const kept = new Set(check(all, { iouThreshold: thr }));
      const both = Array.from({ length: 150 }, (_, j) => kept.has(2000 + 2 * j) && kept.has(2001 + 2 * j));
      expect(both.every((x) => x === (thr === pairIou(all.boxes, 2000, 2001)))).toBe(true);
    }
  });

  it('maxOutput cutting mid-way, with scoreThreshold and preTopK', () => {
    const s = clustered(3000, 16, 30);
    for (const maxOutput of [0, 1, 7, 25]) {
      check(s, { iouThreshold: 0.45, maxOutput });
      check(s, { iouThreshold: 0.45, maxOutput, classes: s.classes, scoreThreshold: 0.3 });
    }
    check(s, { iouThreshold: 0.5, preTopK: 1000, maxOutput: 40 });
    check(s, { iouThreshold: 0.5, preTopK: 2999, classes: s.classes });
  });

  it('mixes that cross from suppress-forward to the sorted grid phase', () => {
    // Clustered objects on top of spread-out boxes, and many small objects with few duplicates each.
    const mix = concat(clustered(1500, 17, 10), spread(1200, 18));
    for (const iouThreshold of [0.3, 0.5]) {
      check(mix, { iouThreshold });
      check(mix, { iouThreshold, classes: mix.classes });
      check(mix, { iouThreshold, maxOutput: 60 });
    }
    const many = clustered(2600, 19, 400, 0.2);
    check(many, { iouThreshold: 0.5 });
    check(many, { iouThreshold: 0.5, classes: many.classes });
    // Few kept boxes wanted: the grid phase sorts a head of the list first, then the rest.
    const dense = clustered(2600, 33, 250, 0.1);
    for (const maxOutput of [120, 500]) check(dense, { iouThreshold: 0.5, maxOutput });
    check(dense, { iouThreshold: 0.5, maxOutput: 450, classes: dense.classes });
    check(spread(2500, 20), { iouThreshold: 0 });
  });

  it('inert boxes (NaN, infinite, empty) inside large sets keep their rank', () => {
    const s = concat(clustered(2000, 21, 15), spread(600, 22));
    const r = rng(23);
    for (let i = 0; i < 2600; i++) {
      const u = r();
      if (u < 0.02) s.boxes[4 * i + 1] = NaN;
      else if (u < 0.04) s.boxes[4 * i + 2] = Infinity;
      else if (u < 0.05) s.boxes[4 * i] = -Infinity;
      else if (u < 0.07)
        s.boxes[4 * i + 3] = s.boxes[4 * i + 1]; // zero height
      else if (u < 0.09)
        [s.boxes[4 * i], s.boxes[4 * i + 2]] = [s.boxes[4 * i + 2], s.boxes[4 * i]]; // corners swapped
      else if (u < 0.1) s.scores[i] = NaN;
      else if (u < 0.11) s.scores[i] = Infinity;
    }
    for (const iouThreshold of [0, 0.5, 1]) {
      check(s, { iouThreshold });
      check(s, { iouThreshold, classes: s.classes, maxOutput: 100 });
    }
  });

  it('coordinates outside the float fast path (tiny and huge) stay exact', () => {
    const tiny = clustered(2100, 24);
    tiny.boxes.forEach((v, i) => (tiny.boxes[i] = v * 1e-30));
    const huge = clustered(2100, 25);
    huge.boxes.forEach((v, i) => (huge.boxes[i] = v * 1e25));
    for (const s of [tiny, huge]) {
      check(s, { iouThreshold: 0.5 });
      check(s, { iouThreshold: 0.3, classes: s.classes });
    }
  });

  it('batch of three large images, each independent', () => {
    const parts = [clustered(2100, 26), concat(clustered(900, 27), spread(1200, 28)), clustered(2100, 29, 3)];
    const all = concat(...parts);
    for (const classes of [undefined, all.classes]) {
      const o = { iouThreshold: 0.45, batch: 3, classes };
      const ref = parts.map((p, b) => reference(all, { iouThreshold: 0.45, classes }, b * 2100, 2100));
      const p = onPortable(() => nmsSync(all.boxes, all.scores, o));
      expect(Array.from(p.counts)).toEqual(ref.map((k) => k.length));
      expect(Array.from(p.keep)).toEqual(ref.flat());
      if (nativeExpected) expect(onBoth(() => nmsSync(all.boxes, all.scores, o)).native).toEqual(p);
    }
  });
});

/** IoU of boxes i and j in the contract's operation order (0 when they do not intersect). */
function pairIou(b: Float32Array, i: number, j: number): number {
  const ax1 = Math.min(b[4 * i], b[4 * i + 2]),
    ax2 = Math.max(b[4 * i], b[4 * i + 2]);
  const ay1 = Math.min(b[4 * i + 1], b[4 * i + 3]),
    ay2 = Math.max(b[4 * i + 1], b[4 * i + 3]);
  const bx1 = Math.min(b[4 * j], b[4 * j + 2]),
    bx2 = Math.max(b[4 * j], b[4 * j + 2]);
  const by1 = Math.min(b[4 * j + 1], b[4 * j + 3]),
    by2 = Math.max(b[4 * j + 1], b[4 * j + 3]);
  const iw = Math.min(ax2, bx2) - Math.max(ax1, bx1),
    ih = Math.min(ay2, by2) - Math.max(ay1, by1);
  if (!(iw > 0 && ih > 0)) return 0;
  const inter = iw * ih;
  return inter / ((ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter);
}
