/**
 * Text-detection post-processing (DB, "Differentiable Binarization"): probability map →
 * binary mask → connected components → minimum-area rotated boxes → box score → unclip.
 * Each stage is its own kernel; `dbBoxes` chains them in one pass over the map.
 */
import { convexHull, minAreaRect, rectCorners, type RotatedRect } from './geometry.js';

/** Mask of `prob > threshold` (NaN is background), compared at float32 precision like the map itself. */
export function binarize(prob: ArrayLike<number>, n: number, options: { threshold: number; dst?: Uint8Array }): Uint8Array {
  const out = options.dst ?? new Uint8Array(n);
  const t = Math.fround(options.threshold);
  for (let i = 0; i < n; i++) out[i] = prob[i] > t ? 1 : 0;
  return out;
}

/** Dilation with a 2×2 structuring element (PaddleOCR's optional `use_dilation`). */
export function dilate2x2(mask: Uint8Array, width: number, height: number): Uint8Array {
  const out = new Uint8Array(mask.length);
  for (let y = 0; y < height; y++) {
    const row = y * width;
    const up = y > 0 ? row - width : row;
    for (let x = 0; x < width; x++) {
      const xl = x > 0 ? x - 1 : x;
      out[row + x] = mask[row + x] | mask[row + xl] | mask[up + x] | mask[up + xl];
    }
  }
  return out;
}

export interface Components {
  count: number;
  /** Component id per pixel: 0 = background, 1..count. */
  labels: Int32Array;
  /** Pixel count per component (index id - 1). */
  areas: Int32Array;
  /** Bounds per component, 4 ints each: minX, minY, maxX, maxY. */
  bounds: Int32Array;
}

/**
 * 8-connected component labelling by scanline flood fill with one preallocated stack.
 * Components are numbered in raster order of their first pixel.
 */
export function labelComponents(mask: Uint8Array, width: number, height: number): Components {
  const n = width * height;
  const labels = new Int32Array(n);
  const stack = new Int32Array(n);
  const areas: number[] = [];
  const bounds: number[] = [];
  let count = 0;
  for (let start = 0; start < n; start++) {
    if (!mask[start] || labels[start]) continue;
    const id = ++count;
    let sp = 0;
    stack[sp++] = start;
    labels[start] = id;
    let area = 0, x0 = width, y0 = height, x1 = -1, y1 = -1;
    while (sp > 0) {
      const p = stack[--sp];
      const py = (p / width) | 0, px = p - py * width;
      area++;
      if (px < x0) x0 = px;
      if (px > x1) x1 = px;
      if (py < y0) y0 = py;
      if (py > y1) y1 = py;
      const ya = py > 0 ? py - 1 : py, yb = py < height - 1 ? py + 1 : py;
      const xa = px > 0 ? px - 1 : px, xb = px < width - 1 ? px + 1 : px;
      for (let yy = ya; yy <= yb; yy++) {
        const r = yy * width;
        for (let xx = xa; xx <= xb; xx++) {
          const q = r + xx;
          if (mask[q] && !labels[q]) {
            labels[q] = id;
            stack[sp++] = q;
          }
        }
      }
    }
    areas.push(area);
    bounds.push(x0, y0, x1, y1);
  }
  return { count, labels, areas: Int32Array.from(areas), bounds: Int32Array.from(bounds) };
}

/**
 * Points for the hull of component `id`: the leftmost and rightmost pixel centre of each of its
 * rows (the hull of a pixel set is the hull of its row extremes), sorted by y then x.
 */
export function componentExtremes(labels: Int32Array, width: number, id: number, b: ArrayLike<number>): { points: Float64Array; n: number } {
  const [bx0, by0, bx1, by1] = [b[0], b[1], b[2], b[3]];
  const points = new Float64Array((by1 - by0 + 1) * 4);
  let n = 0;
  for (let y = by0; y <= by1; y++) {
    const r = y * width;
    let lo = -1, hi = -1;
    for (let x = bx0; x <= bx1; x++) if (labels[r + x] === id) { lo = x; break; }
    if (lo < 0) continue;
    for (let x = bx1; x >= lo; x--) if (labels[r + x] === id) { hi = x; break; }
    points[2 * n] = lo;
    points[2 * n + 1] = y;
    n++;
    if (hi !== lo) {
      points[2 * n] = hi;
      points[2 * n + 1] = y;
      n++;
    }
  }
  return { points, n };
}

/**
 * Mean of `prob` over the pixels whose centres lie inside the convex quad `q` (PaddleOCR's
 * "fast" box score). Scanline: per row, the x-interval between the quad's edge crossings.
 */
export function quadMean(prob: ArrayLike<number>, width: number, height: number, q: ArrayLike<number>): number {
  let minY = Infinity, maxY = -Infinity;
  for (let k = 0; k < 4; k++) {
    minY = Math.min(minY, q[2 * k + 1]);
    maxY = Math.max(maxY, q[2 * k + 1]);
  }
  const y0 = Math.max(0, Math.ceil(minY - 1e-9)), y1 = Math.min(height - 1, Math.floor(maxY + 1e-9));
  let sum = 0, cnt = 0;
  for (let y = y0; y <= y1; y++) {
    let lo = Infinity, hi = -Infinity;
    for (let k = 0; k < 4; k++) {
      const ax = q[2 * k], ay = q[2 * k + 1];
      const bx = q[(2 * k + 2) % 8], by = q[(2 * k + 3) % 8];
      if ((ay <= y && by >= y) || (by <= y && ay >= y)) {
        if (ay === by) {
          lo = Math.min(lo, ax, bx);
          hi = Math.max(hi, ax, bx);
        } else {
          const x = ax + ((y - ay) / (by - ay)) * (bx - ax);
          lo = Math.min(lo, x);
          hi = Math.max(hi, x);
        }
      }
    }
    const xa = Math.max(0, Math.ceil(lo - 1e-9)), xb = Math.min(width - 1, Math.floor(hi + 1e-9));
    const r = y * width;
    for (let x = xa; x <= xb; x++) {
      const v = prob[r + x];
      if (v === v) sum += v; // NaN contributes nothing
      cnt++;
    }
  }
  return cnt ? sum / cnt : 0;
}

/**
 * Grows a rotated rectangle outward by `area * ratio / perimeter` on every side: the DB paper's
 * unclip. For a rectangle, the round-joined polygon offset that PaddleOCR computes with Clipper
 * has exactly this rectangle as its minimum-area box, so no polygon offsetting is needed.
 */
export function unclipRect(r: RotatedRect, ratio: number): RotatedRect {
  const perimeter = 2 * (r.width + r.height);
  if (perimeter === 0) return { ...r };
  const d = (r.width * r.height * ratio) / perimeter;
  return { ...r, width: r.width + 2 * d, height: r.height + 2 * d };
}

export interface DbOptions {
  /** Pixel threshold on the probability map. PaddleOCR default 0.3. */
  threshold: number;
  /** Minimum mean probability inside a box. Default 0.6. */
  boxThreshold: number;
  /** Unclip ratio. Default 1.5. */
  unclipRatio: number;
  /** Boxes whose short side (map pixels) is below this are dropped; after unclip, below minSize + 2. Default 3. */
  minSize?: number;
  /** At most this many components are examined (raster order). Default 1000. */
  maxCandidates?: number;
  /** Dilate the mask 2×2 first. Default false. */
  dilate?: boolean;
}

export interface DbResult {
  /** Quads in map pixel coordinates, 8 numbers each (TL, TR, BR, BL). */
  quads: Float32Array;
  scores: Float32Array;
  count: number;
}

/** DB post-processing over a `width`×`height` probability map. */
export function dbBoxes(prob: ArrayLike<number>, width: number, height: number, options: DbOptions): DbResult {
  const minSize = options.minSize ?? 3;
  const maxCandidates = options.maxCandidates ?? 1000;
  let mask = binarize(prob, width * height, { threshold: options.threshold });
  if (options.dilate) mask = dilate2x2(mask, width, height);
  const comps = labelComponents(mask, width, height);
  const quads: number[] = [];
  const scores: number[] = [];
  const limit = Math.min(comps.count, maxCandidates);
  for (let c = 0; c < limit; c++) {
    const b = comps.bounds.subarray(4 * c, 4 * c + 4);
    // A rotated box can't have a short side longer than the bounding box's diagonal-limited extent;
    // cheap reject of specks before the hull.
    if (b[2] - b[0] + 1 < minSize && b[3] - b[1] + 1 < minSize) continue;
    const { points, n } = componentExtremes(comps.labels, width, c + 1, b);
    const rect = minAreaRect(convexHull(points, n, { sorted: true }));
    if (Math.min(rect.width, rect.height) < minSize) continue;
    const quad = rectCorners(rect);
    const score = quadMean(prob, width, height, quad);
    if (!(score >= options.boxThreshold)) continue;
    const grown = unclipRect(rect, options.unclipRatio);
    if (Math.min(grown.width, grown.height) < minSize + 2) continue;
    const g = rectCorners(grown);
    for (let k = 0; k < 8; k++) quads.push(g[k]);
    scores.push(score);
  }
  return { quads: Float32Array.from(quads), scores: Float32Array.from(scores), count: scores.length };
}
