/**
 * Portable NMS and detector decoding, same contract as kernels/detect.h: identical kept indices
 * (integer outputs exact) and identical float32 boxes and scores, because every float operation
 * is done in double in the same order and rounded to float32 at the same points.
 */
import type { RawDecode, RawDecodeResult, RawNms, RawNmsResult } from '../index.js';

/** Candidate indices (non-NaN score ≥ threshold), by score descending then index ascending. */
function sortCandidates(scores: Float32Array, base: number, n: number, threshold: number): Int32Array {
  const idx: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = scores[base + i];
    if (s === s && s >= threshold) idx.push(i);
  }
  idx.sort((a, b) => scores[base + b] - scores[base + a] || a - b);
  return Int32Array.from(idx);
}

/**
 * Greedy NMS of one image: `boxes` holds n boxes from `boxBase` (x1 y1 x2 y2, corners in either
 * order), `scores`/`classes` n values from `base`. Kept indices best first.
 */
export function nmsOne(
  boxes: Float32Array,
  scores: Float32Array,
  classes: Int32Array | undefined,
  base: number,
  n: number,
  o: { iouThreshold: number; scoreThreshold: number; preTopK: number; maxOutput: number },
): Int32Array {
  let order = sortCandidates(scores, base, n, o.scoreThreshold);
  if (o.preTopK >= 0 && order.length > o.preTopK) order = order.subarray(0, o.preTopK);
  const m = order.length;
  const maxOut = o.maxOutput < 0 ? m : Math.min(m, o.maxOutput);
  const keep = new Int32Array(maxOut);
  if (m === 0 || maxOut === 0) return keep;
  const x1 = new Float64Array(m),
    y1 = new Float64Array(m),
    x2 = new Float64Array(m),
    y2 = new Float64Array(m);
  const area = new Float64Array(m);
  const nan = new Uint8Array(m);
  const cls = new Int32Array(m);
  for (let i = 0; i < m; i++) {
    const b = (base + order[i]) * 4;
    const a0 = boxes[b],
      a1 = boxes[b + 1],
      a2 = boxes[b + 2],
      a3 = boxes[b + 3];
    nan[i] = a0 !== a0 || a1 !== a1 || a2 !== a2 || a3 !== a3 ? 1 : 0;
    x1[i] = a0 < a2 ? a0 : a2;
    x2[i] = a0 < a2 ? a2 : a0;
    y1[i] = a1 < a3 ? a1 : a3;
    y2[i] = a1 < a3 ? a3 : a1;
    area[i] = (x2[i] - x1[i]) * (y2[i] - y1[i]);
    if (classes) cls[i] = classes[base + order[i]];
  }
  const thr = o.iouThreshold;
  const kept = new Int32Array(maxOut);
  let nk = 0;
  let count = 0;
  for (let i = 0; i < m && count < maxOut; i++) {
    let drop = false;
    if (!nan[i]) {
      for (let j = 0; j < nk; j++) {
        const k = kept[j];
        if (classes && cls[k] !== cls[i]) continue;
        const iw = Math.min(x2[k], x2[i]) - Math.max(x1[k], x1[i]);
        const ih = Math.min(y2[k], y2[i]) - Math.max(y1[k], y1[i]);
        if (!(iw > 0 && ih > 0)) continue;
        const inter = iw * ih;
        const uni = area[k] + area[i] - inter;
        if ((uni > 0 ? inter / uni : 0) > thr) {
          drop = true;
          break;
        }
      }
    }
    if (drop) continue;
    keep[count++] = order[i];
    // Only boxes with positive width and height can ever suppress anything.
    if (!nan[i] && x2[i] > x1[i] && y2[i] > y1[i]) kept[nk++] = i;
  }
  return keep.subarray(0, count);
}

export function nms(o: RawNms): RawNmsResult {
  const parts: Int32Array[] = [];
  const counts = new Int32Array(o.batch);
  for (let b = 0; b < o.batch; b++) {
    const k = nmsOne(o.boxes, o.scores, o.classes, b * o.n, o.n, o);
    parts.push(k);
    counts[b] = k.length;
  }
  return { keep: concatI32(parts), counts };
}

function concatI32(parts: Int32Array[]): Int32Array {
  const out = new Int32Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));
/** Clip to [0, hi]; NaN becomes 0. Same expression as kernels/decode.cc. */
const clamp = (v: number, hi: number): number => (v > 0 ? (v < hi ? v : hi) : 0);

export function decodeDetections(o: RawDecode): RawDecodeResult {
  const { data, anchors: n, attrs } = o;
  const first = o.objectness ? 5 : 4;
  const nc = attrs - first;
  const boxesOut: number[] = [],
    scoresOut: number[] = [],
    classesOut: number[] = [],
    anchorsOut: number[] = [];
  const counts = new Int32Array(o.batch);
  for (let b = 0; b < o.batch; b++) {
    const d = b * n * attrs;
    const at = o.attrsFirst
      ? (a: number, c: number) => data[d + c * n + a]
      : (a: number, c: number) => data[d + a * attrs + c];
    const cb: number[] = [],
      cs: number[] = [],
      cc: number[] = [],
      ca: number[] = [];
    for (let a = 0; a < n; a++) {
      let best = -Infinity;
      let arg = 0;
      for (let c = 0; c < nc; c++) {
        const v = at(a, first + c);
        if (v > best) {
          best = v;
          arg = c;
        }
      }
      let s = o.sigmoid ? Math.fround(sigmoid(best)) : best;
      if (o.objectness) s = (o.sigmoid ? Math.fround(sigmoid(at(a, 4))) : at(a, 4)) * s;
      const score = Math.fround(s);
      if (!(score === score) || !(score >= o.scoreThreshold)) continue;
      let b0 = at(a, 0),
        b1 = at(a, 1),
        b2 = at(a, 2),
        b3 = at(a, 3);
      if (o.grid) {
        const g = a * 5;
        const tx = Math.fround(sigmoid(b0)),
          ty = Math.fround(sigmoid(b1));
        const tw = Math.fround(sigmoid(b2)),
          th = Math.fround(sigmoid(b3));
        b0 = (tx * 2 - 0.5 + o.grid[g]) * o.grid[g + 2];
        b1 = (ty * 2 - 0.5 + o.grid[g + 1]) * o.grid[g + 2];
        b2 = tw * 2 * (tw * 2) * o.grid[g + 3];
        b3 = th * 2 * (th * 2) * o.grid[g + 4];
      }
      let x1: number, y1: number, x2: number, y2: number;
      if (o.xyxy) [x1, y1, x2, y2] = [b0, b1, b2, b3];
      else [x1, y1, x2, y2] = [b0 - b2 / 2, b1 - b3 / 2, b0 + b2 / 2, b1 + b3 / 2];
      x1 = (x1 - o.padX) / o.scaleX;
      x2 = (x2 - o.padX) / o.scaleX;
      y1 = (y1 - o.padY) / o.scaleY;
      y2 = (y2 - o.padY) / o.scaleY;
      if (o.clipWidth > 0) {
        x1 = clamp(x1, o.clipWidth);
        x2 = clamp(x2, o.clipWidth);
      }
      if (o.clipHeight > 0) {
        y1 = clamp(y1, o.clipHeight);
        y2 = clamp(y2, o.clipHeight);
      }
      cb.push(x1, y1, x2, y2);
      cs.push(score);
      cc.push(arg);
      ca.push(a);
    }
    const boxes = Float32Array.from(cb),
      scores = Float32Array.from(cs),
      classes = Int32Array.from(cc);
    const keep = nmsOne(boxes, scores, o.agnostic ? undefined : classes, 0, scores.length, {
      iouThreshold: o.iouThreshold,
      scoreThreshold: -Infinity,
      preTopK: o.preTopK,
      maxOutput: o.maxOutput,
    });
    for (const j of keep) {
      boxesOut.push(boxes[4 * j], boxes[4 * j + 1], boxes[4 * j + 2], boxes[4 * j + 3]);
      scoresOut.push(scores[j]);
      classesOut.push(classes[j]);
      anchorsOut.push(ca[j]);
    }
    counts[b] = keep.length;
  }
  return {
    boxes: Float32Array.from(boxesOut),
    scores: Float32Array.from(scoresOut),
    classes: Int32Array.from(classesOut),
    anchors: Int32Array.from(anchorsOut),
    counts,
  };
}
