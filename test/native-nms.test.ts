/**
 * NMS and detector decoding against the textbook definitions. Integer outputs (kept indices,
 * classes, anchors) must be identical across the reference, the portable and the native kernels;
 * decoded boxes and scores are float32 and identical too (same double arithmetic, same rounding
 * points), except with `sigmoid`, where libm and V8 may round exp() differently (|Δ| ≤ 1e-5).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type DecodeOptions, decodeDetectionsSync, type NmsOptions, nmsSync, yoloGrid } from '../native/index.js';
import { maxAbsDiff, nativeExpected, onBoth, onPortable, rng } from './native-helpers.js';

function refIou(b: ArrayLike<number>, i: number, j: number): number {
  for (let k = 0; k < 4; k++) if (b[4 * i + k] !== b[4 * i + k] || b[4 * j + k] !== b[4 * j + k]) return 0;
  const [ax1, ax2] = [Math.min(b[4 * i], b[4 * i + 2]), Math.max(b[4 * i], b[4 * i + 2])];
  const [ay1, ay2] = [Math.min(b[4 * i + 1], b[4 * i + 3]), Math.max(b[4 * i + 1], b[4 * i + 3])];
  const [bx1, bx2] = [Math.min(b[4 * j], b[4 * j + 2]), Math.max(b[4 * j], b[4 * j + 2])];
  const [by1, by2] = [Math.min(b[4 * j + 1], b[4 * j + 3]), Math.max(b[4 * j + 1], b[4 * j + 3])];
  const iw = Math.min(ax2, bx2) - Math.max(ax1, bx1),
    ih = Math.min(ay2, by2) - Math.max(ay1, by1);
  if (!(iw > 0 && ih > 0)) return 0;
  const inter = iw * ih,
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter;
  return union > 0 ? inter / union : 0;
}

/** The textbook loop: sort, keep the best, suppress everything it overlaps, repeat. */
function refNms(boxes: Float32Array, scores: Float32Array, o: NmsOptions, base = 0, n = scores.length): number[] {
  let order = [...Array(n).keys()].filter(
    (i) => scores[base + i] === scores[base + i] && scores[base + i] >= (o.scoreThreshold ?? -Infinity),
  );
  order.sort((a, b) => scores[base + b] - scores[base + a] || a - b);
  if (o.preTopK !== undefined) order = order.slice(0, o.preTopK);
  const bx = boxes.subarray(base * 4, (base + n) * 4);
  const dead = new Set<number>();
  const keep: number[] = [];
  for (let a = 0; a < order.length; a++) {
    if (dead.has(order[a])) continue;
    if (keep.length === (o.maxOutput ?? Infinity)) break;
    keep.push(order[a]);
    for (let b = a + 1; b < order.length; b++) {
      if (o.classes && o.classes[base + order[a]] !== o.classes[base + order[b]]) continue;
      if (refIou(bx, order[a], order[b]) > o.iouThreshold) dead.add(order[b]);
    }
  }
  return keep;
}

function clustered(
  n: number,
  seed: number,
  objects = 20,
): { boxes: Float32Array; scores: Float32Array; classes: Int32Array } {
  const r = rng(seed);
  const obj = Array.from({ length: objects }, () => ({
    x: 40 + r() * 560,
    y: 40 + r() * 560,
    w: 30 + r() * 170,
    h: 30 + r() * 170,
    c: Math.floor(r() * 80),
  }));
  const boxes = new Float32Array(n * 4),
    scores = new Float32Array(n),
    classes = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const o = obj[Math.floor(r() * objects)];
    const cx = o.x + (r() - 0.5) * 0.3 * o.w,
      cy = o.y + (r() - 0.5) * 0.3 * o.h,
      w = o.w * (0.8 + r() * 0.4),
      h = o.h * (0.8 + r() * 0.4);
    boxes.set([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], i * 4);
    scores[i] = r();
    classes[i] = o.c;
  }
  return { boxes, scores, classes };
}

function spread(n: number, seed: number): { boxes: Float32Array; scores: Float32Array } {
  const r = rng(seed);
  const boxes = new Float32Array(n * 4),
    scores = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const x = r() * 620,
      y = r() * 620;
    boxes.set([x, y, x + 4 + r() * 20, y + 4 + r() * 20], i * 4);
    scores[i] = r();
  }
  return { boxes, scores };
}

function check(boxes: Float32Array, scores: Float32Array, o: NmsOptions): void {
  const ref = refNms(boxes, scores, o);
  const portable = onPortable(() => nmsSync(boxes, scores, o));
  expect(Array.from(portable.keep)).toEqual(ref);
  if (nativeExpected) expect(Array.from(onBoth(() => nmsSync(boxes, scores, o)).native.keep)).toEqual(ref);
}

describe('nms', () => {
  it('clustered 2,000 candidates: agnostic, class-aware, thresholds, top-k', () => {
    const { boxes, scores, classes } = clustered(2000, 1);
    check(boxes, scores, { iouThreshold: 0.5 });
    check(boxes, scores, { iouThreshold: 0.45, classes });
    check(boxes, scores, { iouThreshold: 0.7, scoreThreshold: 0.3, preTopK: 500, maxOutput: 20 });
  });

  it('spread-out 2,500 candidates (nearly all kept; native uses its grid path)', () => {
    const { boxes, scores } = spread(2500, 2);
    check(boxes, scores, { iouThreshold: 0.5 });
    check(boxes, scores, { iouThreshold: 0 });
  });

  it('edge cases: zero boxes, identical boxes, NaN scores and coordinates, infinities, -0, ties, inverted corners', () => {
    check(new Float32Array(0), new Float32Array(0), { iouThreshold: 0.5 });
    const same = new Float32Array(400).map((_, i) => [1, 2, 30, 40][i % 4]);
    const ties = new Float32Array(100).fill(0.5);
    check(same, ties, { iouThreshold: 0.5 });
    check(same, ties, { iouThreshold: 1 });
    const pts = new Float32Array(400).fill(7); // zero-area boxes overlap nothing: all kept
    check(pts, ties, { iouThreshold: 0 });
    const { boxes, scores } = clustered(300, 3);
    for (let i = 0; i < 300; i += 7) scores[i] = NaN;
    for (let i = 0; i < 300; i += 11) boxes[4 * i + 1] = NaN;
    for (let i = 3; i < 300; i += 13) boxes[4 * i + 2] = Infinity;
    for (let i = 5; i < 300; i += 17) [boxes[4 * i], boxes[4 * i + 2]] = [boxes[4 * i + 2], boxes[4 * i]];
    scores[1] = -0;
    scores[2] = 0;
    scores[4] = Infinity;
    check(boxes, scores, { iouThreshold: 0.5 });
    check(boxes, scores, { iouThreshold: 0.5, scoreThreshold: 0 });
  });

  it('batched: each image independent, counts per image', () => {
    const a = clustered(500, 4),
      b = spread(500, 5);
    const boxes = new Float32Array([...a.boxes, ...b.boxes]),
      scores = new Float32Array([...a.scores, ...b.scores]);
    const r = onPortable(() => nmsSync(boxes, scores, { iouThreshold: 0.5, batch: 2 }));
    const ra = refNms(a.boxes, a.scores, { iouThreshold: 0.5 }),
      rb = refNms(b.boxes, b.scores, { iouThreshold: 0.5 });
    expect(Array.from(r.counts)).toEqual([ra.length, rb.length]);
    expect(Array.from(r.keep)).toEqual([...ra, ...rb]);
    if (nativeExpected) expect(onBoth(() => nmsSync(boxes, scores, { iouThreshold: 0.5, batch: 2 })).native).toEqual(r);
  });

  it('property: random small sets with duplicates agree with the reference', () => {
    const coord = fc.oneof(
      fc.integer({ min: 0, max: 20 }).map((v) => v),
      fc.constantFrom(NaN, Infinity, -0),
    );
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            coord,
            coord,
            coord,
            coord,
            fc.oneof(fc.float({ noNaN: false }), fc.constantFrom(0.5, 0.25)),
            fc.integer({ min: 0, max: 2 }),
          ),
          { maxLength: 90 },
        ),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.boolean(),
        (rows, iou, aware) => {
          const boxes = new Float32Array(rows.flatMap((r) => r.slice(0, 4) as number[]));
          const scores = new Float32Array(rows.map((r) => r[4]));
          const classes = aware ? new Int32Array(rows.map((r) => r[5])) : undefined;
          check(boxes, scores, { iouThreshold: iou, classes });
        },
      ),
      { numRuns: 150 },
    );
  });
});

/** YOLOv8-style head [1, 4 + nc, n] (attrs first) from a candidate set. */
function yoloHead(n: number, nc: number, seed: number): Float32Array {
  const { boxes, scores, classes } = clustered(n, seed);
  const r = rng(seed + 100);
  const head = new Float32Array((4 + nc) * n);
  for (let i = 0; i < n; i++) {
    const [x1, y1, x2, y2] = boxes.subarray(4 * i, 4 * i + 4);
    head[i] = (x1 + x2) / 2;
    head[n + i] = (y1 + y2) / 2;
    head[2 * n + i] = x2 - x1;
    head[3 * n + i] = y2 - y1;
    for (let c = 0; c < nc; c++) head[(4 + c) * n + i] = r() * 0.05;
    head[(4 + (classes[i] % nc)) * n + i] = scores[i];
  }
  return head;
}

describe('decodeDetections', () => {
  const letterbox = { scale: { x: 1 / 3, y: 1 / 3 }, pad: { x: 0, y: 140 } };

  it('YOLOv8 anchor-free head: decode + class-aware NMS + inverse letterbox equal the reference', () => {
    const n = 2100,
      nc = 10;
    const head = yoloHead(n, nc, 6);
    const o: DecodeOptions = {
      dims: [1, 4 + nc, n],
      scoreThreshold: 0.25,
      iouThreshold: 0.45,
      letterbox,
      clip: { width: 1920, height: 1080 },
    };
    const r = onPortable(() => decodeDetectionsSync(head, o));
    // Reference: per anchor best class, threshold, xyxy, undo letterbox, clip; then NMS by class.
    const bx: number[] = [],
      sc: number[] = [],
      cl: number[] = [],
      an: number[] = [];
    const clip = (v: number, hi: number) => (v > 0 ? (v < hi ? v : hi) : 0);
    for (let a = 0; a < n; a++) {
      let best = -Infinity,
        arg = 0;
      for (let c = 0; c < nc; c++) if (head[(4 + c) * n + a] > best) [best, arg] = [head[(4 + c) * n + a], c];
      if (!(best >= 0.25)) continue;
      const [cx, cy, w, h] = [head[a], head[n + a], head[2 * n + a], head[3 * n + a]];
      const s = 1 / 3;
      bx.push(
        clip((cx - w / 2 - 0) / s, 1920),
        clip((cy - h / 2 - 140) / s, 1080),
        clip((cx + w / 2 - 0) / s, 1920),
        clip((cy + h / 2 - 140) / s, 1080),
      );
      sc.push(best), cl.push(arg), an.push(a);
    }
    const boxes = new Float32Array(bx),
      scores = new Float32Array(sc),
      classes = new Int32Array(cl);
    const keep = refNms(boxes, scores, { iouThreshold: 0.45, classes, maxOutput: 300 });
    expect(Array.from(r.anchors)).toEqual(keep.map((k) => an[k]));
    expect(Array.from(r.classes)).toEqual(keep.map((k) => cl[k]));
    expect(Array.from(r.boxes)).toEqual(keep.flatMap((k) => Array.from(boxes.subarray(4 * k, 4 * k + 4))));
    expect(Array.from(r.scores)).toEqual(keep.map((k) => scores[k]));
    if (nativeExpected) expect(onBoth(() => decodeDetectionsSync(head, o)).native).toEqual(r);
  });

  it('objectness layout, anchors-first, agnostic, batch of 2, NaN rows', () => {
    const n = 700,
      attrs = 5 + 3;
    const r = rng(9);
    const data = new Float32Array(2 * n * attrs).map(() => r());
    for (let a = 0; a < 2 * n; a++) {
      data[a * attrs + 2] = 5 + data[a * attrs + 2] * 40;
      data[a * attrs + 3] = 5 + data[a * attrs + 3] * 40;
      data[a * attrs] *= 300;
      data[a * attrs + 1] *= 300;
    }
    for (let a = 0; a < 2 * n; a += 31) data[a * attrs + 6] = NaN;
    for (let a = 5; a < 2 * n; a += 37) data[a * attrs + 4] = NaN;
    const o: DecodeOptions = {
      dims: [2, n, attrs],
      format: 'objectness',
      agnostic: true,
      scoreThreshold: 0.2,
      maxOutput: 50,
    };
    const p = onPortable(() => decodeDetectionsSync(data, o));
    expect(p.counts.length).toBe(2);
    expect(p.counts[0] + p.counts[1]).toBe(p.scores.length);
    expect(Array.from(p.scores).every((s) => s >= 0.2)).toBe(true);
    if (nativeExpected) expect(onBoth(() => decodeDetectionsSync(data, o)).native).toEqual(p);
  });

  it('raw YOLOv5 head with grid and sigmoid (tolerance for exp rounding)', () => {
    const grid = yoloGrid({
      inputWidth: 64,
      inputHeight: 64,
      strides: [8, 16],
      anchors: [
        [10, 13, 16, 30],
        [33, 23, 30, 61],
      ],
    });
    const n = grid.length / 5,
      attrs = 5 + 4;
    expect(n).toBe(2 * 64 + 2 * 16);
    const r = rng(10);
    const data = new Float32Array(n * attrs).map(() => (r() - 0.5) * 8);
    const o: DecodeOptions = {
      dims: [1, n, attrs],
      layout: 'anchors-first',
      format: 'objectness',
      sigmoid: true,
      grid,
      scoreThreshold: 0.3,
    };
    const p = onPortable(() => decodeDetectionsSync(data, o));
    expect(p.scores.length).toBeGreaterThan(0);
    if (nativeExpected) {
      const nat = onBoth(() => decodeDetectionsSync(data, o)).native;
      expect(Array.from(nat.anchors)).toEqual(Array.from(p.anchors));
      expect(maxAbsDiff(nat.boxes, p.boxes)).toBeLessThan(1e-3);
      expect(maxAbsDiff(nat.scores, p.scores)).toBeLessThan(1e-5);
    }
  });
});
