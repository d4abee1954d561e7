/**
 * Straightforward reference post-processing and accuracy metrics for the trained fixtures
 * (fixtures/detector, fixtures/segmenter). Definitions follow fixtures/synthetic/metrics.py step
 * for step, so a metric computed here on the committed evaluation set matches the one the
 * training script wrote to metrics.json (up to float rounding in score ties).
 */

/** One image's detections or ground truth: boxes as x1, y1, x2, y2 (4 numbers each). */
export interface Detections {
  boxes: number[];
  scores: number[];
  classes: number[];
}

export interface GroundTruth {
  boxes: number[];
  labels: number[];
}

export interface DecodeOptions {
  scoreThreshold: number;
  iouThreshold: number;
  maxDetections: number;
}

/** IoU of boxes a[i] and b[j] (x1, y1, x2, y2 at offsets 4i and 4j). */
export function boxIou(a: ArrayLike<number>, i: number, b: ArrayLike<number>, j: number): number {
  const ax1 = a[4 * i],
    ay1 = a[4 * i + 1],
    ax2 = a[4 * i + 2],
    ay2 = a[4 * i + 3];
  const bx1 = b[4 * j],
    by1 = b[4 * j + 1],
    bx2 = b[4 * j + 2],
    by2 = b[4 * j + 3];
  const iw = Math.max(0, Math.min(ax2, bx2) - Math.max(ax1, bx1));
  const ih = Math.max(0, Math.min(ay2, by2) - Math.max(ay1, by1));
  const inter = iw * ih;
  const union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter;
  return union > 0 ? inter / union : 0;
}

/**
 * Detector output [anchors, 4 + C] rows (cx, cy, w, h, class scores) → detections: best class per
 * row, score > threshold, greedy class-aware NMS in descending score order (ties: lower row first)
 * suppressing IoU > iouThreshold, at most maxDetections.
 */
export function decodeDetections(out: Float32Array, anchors: number, attrs: number, o: DecodeOptions): Detections {
  const cand: { row: number; score: number; cls: number }[] = [];
  for (let r = 0; r < anchors; r++) {
    let cls = 0;
    let score = out[r * attrs + 4];
    for (let c = 1; c < attrs - 4; c++) {
      const s = out[r * attrs + 4 + c];
      if (s > score) {
        score = s;
        cls = c;
      }
    }
    if (score > o.scoreThreshold) cand.push({ row: r, score, cls });
  }
  cand.sort((p, q) => q.score - p.score || p.row - q.row);
  const boxes = new Float64Array(cand.length * 4);
  cand.forEach(({ row }, k) => {
    // Float32 arithmetic as numpy does it on the float32 output.
    const cx = out[row * attrs],
      cy = out[row * attrs + 1],
      w = out[row * attrs + 2],
      h = out[row * attrs + 3];
    const hw = Math.fround(w / 2),
      hh = Math.fround(h / 2);
    boxes[4 * k] = Math.fround(cx - hw);
    boxes[4 * k + 1] = Math.fround(cy - hh);
    boxes[4 * k + 2] = Math.fround(cx + hw);
    boxes[4 * k + 3] = Math.fround(cy + hh);
  });
  const suppressed = new Uint8Array(cand.length);
  const res: Detections = { boxes: [], scores: [], classes: [] };
  for (let i = 0; i < cand.length && res.scores.length < o.maxDetections; i++) {
    if (suppressed[i]) continue;
    res.boxes.push(boxes[4 * i], boxes[4 * i + 1], boxes[4 * i + 2], boxes[4 * i + 3]);
    res.scores.push(cand[i].score);
    res.classes.push(cand[i].cls);
    for (let j = i + 1; j < cand.length; j++) {
      if (!suppressed[j] && cand[j].cls === cand[i].cls && boxIou(boxes, i, boxes, j) > o.iouThreshold)
        suppressed[j] = 1;
    }
  }
  return res;
}

/** All-point interpolated AP of detections sorted by descending score (tp: 1 or 0 each). */
export function averagePrecision(tp: ArrayLike<number>, nGt: number): number {
  if (nGt === 0) return NaN;
  const n = tp.length;
  const mrec = new Float64Array(n + 2);
  const mpre = new Float64Array(n + 2);
  let ctp = 0;
  for (let i = 0; i < n; i++) {
    ctp += tp[i];
    mrec[i + 1] = ctp / nGt;
    mpre[i + 1] = ctp / (i + 1);
  }
  mrec[n + 1] = 1;
  for (let i = n; i >= 0; i--) mpre[i] = Math.max(mpre[i], mpre[i + 1]);
  let ap = 0;
  for (let i = 0; i <= n; i++) if (mrec[i + 1] !== mrec[i]) ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1];
  return ap;
}

/**
 * mAP at an IoU threshold (VOC rule): per class, detections of all images by descending score
 * (ties: image, then detection order); a detection is a hit when its best-IoU ground-truth box of
 * the class is at ≥ threshold and not yet matched. Mean over classes with ground truth.
 */
export function meanAveragePrecision(
  dets: Detections[],
  gts: GroundTruth[],
  numClasses: number,
  iouThreshold = 0.5,
): { mAP50: number; AP50: (number | null)[] } {
  const aps: number[] = [];
  for (let c = 0; c < numClasses; c++) {
    const recs: { score: number; img: number; det: number }[] = [];
    let nGt = 0;
    const gtOf: number[][] = gts.map((g) => {
      const boxes: number[] = [];
      g.labels.forEach((l, k) => {
        if (l === c) boxes.push(...g.boxes.slice(4 * k, 4 * k + 4));
      });
      nGt += boxes.length / 4;
      return boxes;
    });
    dets.forEach((d, img) =>
      d.classes.forEach((cls, det) => cls === c && recs.push({ score: d.scores[det], img, det })),
    );
    recs.sort((p, q) => q.score - p.score || p.img - q.img || p.det - q.det);
    const matched = gtOf.map((b) => new Uint8Array(b.length / 4));
    const tp = new Uint8Array(recs.length);
    recs.forEach(({ img, det }, r) => {
      const gb = gtOf[img];
      let best = -1,
        bestIou = -1;
      for (let k = 0; k < gb.length / 4; k++) {
        const iou = boxIou(dets[img].boxes, det, gb, k);
        if (iou > bestIou) {
          bestIou = iou;
          best = k;
        }
      }
      if (best >= 0 && bestIou >= iouThreshold && !matched[img][best]) {
        matched[img][best] = 1;
        tp[r] = 1;
      }
    });
    aps.push(averagePrecision(tp, nGt));
  }
  const valid = aps.filter((a) => !Number.isNaN(a));
  return {
    mAP50: valid.length ? valid.reduce((s, a) => s + a, 0) / valid.length : 0,
    AP50: aps.map((a) => (Number.isNaN(a) ? null : a)),
  };
}

/** Per-pixel argmax over channels of a [C, H, W] score map (first maximum wins). */
export function argmaxChannels(scores: Float32Array, channels: number, pixels: number): Uint8Array {
  const out = new Uint8Array(pixels);
  for (let p = 0; p < pixels; p++) {
    let best = scores[p],
      arg = 0;
    for (let c = 1; c < channels; c++) {
      const s = scores[c * pixels + p];
      if (s > best) {
        best = s;
        arg = c;
      }
    }
    out[p] = arg;
  }
  return out;
}

/** Adds the pixels of one image to a confusion matrix [truth * n + pred]. */
export function accumulateConfusion(
  conf: Float64Array,
  pred: ArrayLike<number>,
  truth: ArrayLike<number>,
  numLabels: number,
): void {
  for (let i = 0; i < pred.length; i++) conf[truth[i] * numLabels + pred[i]]++;
}

/** IoU per label (TP / (TP + FP + FN)); mIoU over labels present in truth or prediction. */
export function meanIou(conf: Float64Array, numLabels: number): { mIoU: number; IoU: (number | null)[] } {
  const iou: (number | null)[] = [];
  for (let k = 0; k < numLabels; k++) {
    let row = 0,
      col = 0;
    for (let j = 0; j < numLabels; j++) {
      row += conf[k * numLabels + j];
      col += conf[j * numLabels + k];
    }
    const tp = conf[k * numLabels + k];
    const denom = row + col - tp;
    iou.push(denom > 0 ? tp / denom : null);
  }
  const present = iou.filter((v): v is number => v !== null);
  return { mIoU: present.length ? present.reduce((s, v) => s + v, 0) / present.length : 0, IoU: iou };
}

/**
 * Pairs every box of `a` with an unpaired box of `b` of the same class, the nearest one (by the
 * largest coordinate difference); order does not matter, since boxes whose scores are a hair apart
 * may swap places. `paired` is false when the counts differ or a box finds no partner.
 */
export function pairBoxes(
  a: readonly { box: readonly number[]; class?: number }[],
  b: readonly { box: readonly number[]; class?: number }[],
): { paired: boolean; worst: number } {
  if (a.length !== b.length) return { paired: false, worst: Infinity };
  const used = new Set<number>();
  let worst = 0;
  for (const x of a) {
    let best = -1;
    let d = Infinity;
    b.forEach((y, j) => {
      if (used.has(j) || y.class !== x.class) return;
      const e = Math.max(...x.box.map((v, k) => Math.abs(v - y.box[k])));
      if (e < d) [best, d] = [j, e];
    });
    if (best < 0) return { paired: false, worst: Infinity };
    used.add(best);
    worst = Math.max(worst, d);
  }
  return { paired: true, worst };
}
