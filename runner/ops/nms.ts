/**
 * Greedy non-maximum suppression over axis-aligned boxes `x1, y1, x2, y2` (4 numbers each).
 */

export interface NmsOptions {
  /** Suppress a box whose IoU with a kept box is above this. */
  iouThreshold: number;
  /** Boxes scoring below this are dropped first. Default -Infinity. NaN scores are always dropped. */
  scoreThreshold?: number;
  /** Keep at most this many. Default all. */
  maxOutput?: number;
  /** When given, only boxes of the same class suppress each other. */
  classes?: ArrayLike<number>;
}

/** Intersection over union of boxes `a` and `b` in `boxes`; 0 when the union is empty. */
export function iou(boxes: ArrayLike<number>, a: number, b: number): number {
  const ax1 = Math.min(boxes[4 * a], boxes[4 * a + 2]), ax2 = Math.max(boxes[4 * a], boxes[4 * a + 2]);
  const ay1 = Math.min(boxes[4 * a + 1], boxes[4 * a + 3]), ay2 = Math.max(boxes[4 * a + 1], boxes[4 * a + 3]);
  const bx1 = Math.min(boxes[4 * b], boxes[4 * b + 2]), bx2 = Math.max(boxes[4 * b], boxes[4 * b + 2]);
  const by1 = Math.min(boxes[4 * b + 1], boxes[4 * b + 3]), by2 = Math.max(boxes[4 * b + 1], boxes[4 * b + 3]);
  const iw = Math.min(ax2, bx2) - Math.max(ax1, bx1);
  const ih = Math.min(ay2, by2) - Math.max(ay1, by1);
  if (!(iw > 0 && ih > 0)) return 0;
  const inter = iw * ih;
  const union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter;
  return union > 0 ? inter / union : 0;
}

/**
 * Indices of the kept boxes, highest score first (equal scores: lower index first, so
 * identical boxes keep the earliest).
 */
export function nms(boxes: ArrayLike<number>, scores: ArrayLike<number>, count: number, options: NmsOptions): Int32Array {
  const minScore = options.scoreThreshold ?? -Infinity;
  const maxOut = options.maxOutput ?? count;
  const order: number[] = [];
  for (let i = 0; i < count; i++) {
    const s = scores[i];
    if (s === s && s >= minScore) order.push(i);
  }
  order.sort((a, b) => scores[b] - scores[a] || a - b);
  const suppressed = new Uint8Array(count);
  const keep: number[] = [];
  for (let a = 0; a < order.length && keep.length < maxOut; a++) {
    const i = order[a];
    if (suppressed[i]) continue;
    keep.push(i);
    for (let b = a + 1; b < order.length; b++) {
      const j = order[b];
      if (suppressed[j]) continue;
      if (options.classes && options.classes[i] !== options.classes[j]) continue;
      if (iou(boxes, i, j) > options.iouThreshold) suppressed[j] = 1;
    }
  }
  return Int32Array.from(keep);
}
