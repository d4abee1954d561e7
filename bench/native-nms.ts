/**
 * NMS and decode + NMS over 8,400 candidates (YOLOv8 at 640x640), detector-like clustered boxes
 * and spread-out boxes (nearly all kept: greedy NMS's worst case), side by side:
 *   native addon, portable TypeScript kernel, and a plain JS greedy NMS (the runner's own before it
 *   moved onto the kernels: sort by score, then each candidate against every later one).
 * Goal (issue 5): >= 20x faster than JS on both sets; <= 0.3 ms on the clustered set.
 * Run: npx tsx bench/native-nms.ts [iterations]
 */
import { decodeDetectionsSync, nativeInfo, nmsSync, setNativeBackend } from '../native/index.js';

const N = 8400,
  NC = 80;

import { rng } from '../fixtures/random.js';

const iterations = Number(process.argv[2] ?? 30);

/** 20 objects; every candidate a jittered copy of one (what a detector head produces). */
function clustered(seed: number): { boxes: Float32Array; scores: Float32Array; classes: Int32Array } {
  const r = rng(seed);
  const objs = Array.from({ length: 20 }, () => ({
    x: 40 + r() * 560,
    y: 40 + r() * 560,
    w: 30 + r() * 170,
    h: 30 + r() * 170,
    c: Math.floor(r() * NC),
  }));
  const boxes = new Float32Array(N * 4),
    scores = new Float32Array(N),
    classes = new Int32Array(N);
  for (let i = 0; i < N; i++) {
    const o = objs[Math.floor(r() * objs.length)];
    const cx = o.x + (r() - 0.5) * 0.3 * o.w,
      cy = o.y + (r() - 0.5) * 0.3 * o.h,
      w = o.w * (0.8 + r() * 0.4),
      h = o.h * (0.8 + r() * 0.4);
    boxes.set([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 4 * i);
    scores[i] = r();
    classes[i] = o.c;
  }
  return { boxes, scores, classes };
}

/** Small boxes scattered over the whole image: almost nothing overlaps, almost everything is kept. */
function spread(seed: number): { boxes: Float32Array; scores: Float32Array; classes: Int32Array } {
  const r = rng(seed);
  const boxes = new Float32Array(N * 4),
    scores = new Float32Array(N),
    classes = new Int32Array(N);
  for (let i = 0; i < N; i++) {
    const x = r() * 620,
      y = r() * 620;
    boxes.set([x, y, x + 4 + r() * 20, y + 4 + r() * 20], 4 * i);
    scores[i] = r();
    classes[i] = Math.floor(r() * NC);
  }
  return { boxes, scores, classes };
}

/** The same candidates as a YOLOv8 head [1, 84, 8400]: cx, cy, w, h rows, then 80 class rows. */
function head(c: { boxes: Float32Array; scores: Float32Array; classes: Int32Array }): Float32Array {
  const h = new Float32Array((4 + NC) * N),
    r = rng(7);
  for (let i = 0; i < N; i++) {
    const [x1, y1, x2, y2] = c.boxes.subarray(4 * i, 4 * i + 4);
    h[i] = (x1 + x2) / 2;
    h[N + i] = (y1 + y2) / 2;
    h[2 * N + i] = x2 - x1;
    h[3 * N + i] = y2 - y1;
    for (let k = 0; k < NC; k++) h[(4 + k) * N + i] = r() * 0.05;
    h[(4 + c.classes[i]) * N + i] = c.scores[i]; // uniform: ~75% of anchors pass 0.25
  }
  return h;
}

function time(fn: () => unknown, n = iterations): { median: number; min: number } {
  for (let i = 0; i < 2; i++) fn();
  const t: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = process.hrtime.bigint();
    fn();
    t.push(Number(process.hrtime.bigint() - s) / 1e6);
  }
  t.sort((a, b) => a - b);
  return { median: t[t.length >> 1], min: t[0] };
}

/** Plain JS greedy NMS, the baseline: O(n · kept) IoU tests, no spatial index. */
function jsIou(boxes: Float32Array, a: number, b: number): number {
  const ax1 = Math.min(boxes[4 * a], boxes[4 * a + 2]),
    ax2 = Math.max(boxes[4 * a], boxes[4 * a + 2]);
  const ay1 = Math.min(boxes[4 * a + 1], boxes[4 * a + 3]),
    ay2 = Math.max(boxes[4 * a + 1], boxes[4 * a + 3]);
  const bx1 = Math.min(boxes[4 * b], boxes[4 * b + 2]),
    bx2 = Math.max(boxes[4 * b], boxes[4 * b + 2]);
  const by1 = Math.min(boxes[4 * b + 1], boxes[4 * b + 3]),
    by2 = Math.max(boxes[4 * b + 1], boxes[4 * b + 3]);
  const iw = Math.min(ax2, bx2) - Math.max(ax1, bx1),
    ih = Math.min(ay2, by2) - Math.max(ay1, by1);
  if (!(iw > 0 && ih > 0)) return 0;
  const inter = iw * ih,
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter;
  return union > 0 ? inter / union : 0;
}
function jsNms(
  boxes: Float32Array,
  scores: Float32Array,
  count: number,
  o: { iouThreshold: number; classes?: Int32Array },
): Int32Array {
  const order: number[] = [];
  for (let i = 0; i < count; i++) if (scores[i] === scores[i]) order.push(i);
  order.sort((a, b) => scores[b] - scores[a] || a - b);
  const suppressed = new Uint8Array(count);
  const keep: number[] = [];
  for (let a = 0; a < order.length; a++) {
    const i = order[a];
    if (suppressed[i]) continue;
    keep.push(i);
    for (let b = a + 1; b < order.length; b++) {
      const j = order[b];
      if (suppressed[j] || (o.classes && o.classes[i] !== o.classes[j])) continue;
      if (jsIou(boxes, i, j) > o.iouThreshold) suppressed[j] = 1;
    }
  }
  return Int32Array.from(keep);
}
const runnerNms = jsNms;

const info = nativeInfo();
console.log(
  `native: ${info.backend} (${info.simd}, ${info.threads} threads); ${N} candidates, IoU 0.5; ${iterations} iterations (median / min ms)\n`,
);
console.log(
  '| case | native | portable TS | plain JS | JS / native | kept |\n| --- | ---: | ---: | ---: | ---: | ---: |',
);
const fmt = (t: { median: number; min: number }) => `${t.median.toFixed(3)} / ${t.min.toFixed(3)}`;
const summary: string[] = [];
for (const [name, gen] of [
  ['clustered', clustered],
  ['spread', spread],
] as const) {
  const c = gen(1);
  for (const aware of [false, true]) {
    const o = { iouThreshold: 0.5, classes: aware ? c.classes : undefined };
    const kept = nmsSync(c.boxes, c.scores, o).keep.length;
    const nat = time(() => nmsSync(c.boxes, c.scores, o));
    setNativeBackend('portable');
    const port = time(() => nmsSync(c.boxes, c.scores, o), Math.max(3, iterations >> 2));
    setNativeBackend('auto');
    const js = runnerNms ? time(() => runnerNms!(c.boxes, c.scores, N, o), Math.max(3, iterations >> 2)) : undefined;
    const ratio = js ? js.median / nat.median : NaN;
    console.log(
      `| nms ${name}${aware ? ', class-aware' : ''} | ${fmt(nat)} | ${fmt(port)} | ${js ? fmt(js) : '-'} | ${ratio.toFixed(0)}x | ${kept} |`,
    );
    if (!aware) summary.push(`${name}: native ${nat.median.toFixed(3)} ms, ${ratio.toFixed(0)}x vs JS`);
  }
  const h = head(c);
  // Ultralytics defaults: conf 0.25, IoU 0.45, at most 300 detections.
  const d = { dims: [1, 4 + NC, N], scoreThreshold: 0.25, iouThreshold: 0.45, maxOutput: 300 };
  const nat = time(() => decodeDetectionsSync(h, d));
  setNativeBackend('portable');
  const port = time(() => decodeDetectionsSync(h, d), Math.max(3, iterations >> 2));
  setNativeBackend('auto');
  const kept = decodeDetectionsSync(h, d).scores.length;
  console.log(
    `| decode + class-aware nms ${name} (84x8400 head, conf 0.25, max 300) | ${fmt(nat)} | ${fmt(port)} | - | ${(port.median / nat.median).toFixed(0)}x (vs portable) | ${kept} |`,
  );
}
console.log(`\n${summary.join('; ')}. Goals: >= 20x vs JS on both, <= 0.3 ms clustered.`);
