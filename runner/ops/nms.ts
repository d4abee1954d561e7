/**
 * Greedy non-maximum suppression over axis-aligned boxes `x1, y1, x2, y2` (4 numbers each): an
 * adapter over the native `nms` kernel, plus the IoU helper.
 */
import { nmsSync } from '../../native/index.js';

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
  const ax1 = Math.min(boxes[4 * a], boxes[4 * a + 2]),
    ax2 = Math.max(boxes[4 * a], boxes[4 * a + 2]);
  const ay1 = Math.min(boxes[4 * a + 1], boxes[4 * a + 3]),
    ay2 = Math.max(boxes[4 * a + 1], boxes[4 * a + 3]);
  const bx1 = Math.min(boxes[4 * b], boxes[4 * b + 2]),
    bx2 = Math.max(boxes[4 * b], boxes[4 * b + 2]);
  const by1 = Math.min(boxes[4 * b + 1], boxes[4 * b + 3]),
    by2 = Math.max(boxes[4 * b + 1], boxes[4 * b + 3]);
  const iw = Math.min(ax2, bx2) - Math.max(ax1, bx1);
  const ih = Math.min(ay2, by2) - Math.max(ay1, by1);
  if (!(iw > 0 && ih > 0)) return 0;
  const inter = iw * ih;
  const union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter;
  return union > 0 ? inter / union : 0;
}

/**
 * Indices of the kept boxes, highest score first (equal scores: lower index first, so
 * identical boxes keep the earliest): the native `nms` kernel.
 */
export function nms(
  boxes: ArrayLike<number>,
  scores: ArrayLike<number>,
  count: number,
  options: NmsOptions,
): Int32Array {
  if (count === 0) return new Int32Array(0);
  const f = (a: ArrayLike<number>, n: number) =>
    a instanceof Float32Array && a.length === n ? a : Float32Array.from({ length: n }, (_, i) => a[i]);
  return nmsSync(f(boxes, 4 * count), f(scores, count), {
    iouThreshold: options.iouThreshold,
    ...(options.scoreThreshold !== undefined ? { scoreThreshold: options.scoreThreshold } : {}),
    ...(options.maxOutput !== undefined ? { maxOutput: options.maxOutput } : {}),
    ...(options.classes ? { classes: Int32Array.from({ length: count }, (_, i) => options.classes![i]) } : {}),
  }).keep;
}
