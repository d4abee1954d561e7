/**
 * Portable DB text-detection post-processing, a line-by-line mirror of kernels/textdet.cc: the same
 * double arithmetic in the same order, so quads and scores match the native build bit for bit.
 */
import type { RawDb, RawDbResult } from '../index.js';

interface Rect {
  cx: number;
  cy: number;
  w: number;
  h: number;
  ux: number;
  uy: number;
}

const cross = (ox: number, oy: number, ax: number, ay: number, bx: number, by: number): number =>
  (ax - ox) * (by - oy) - (ay - oy) * (bx - ox);

/** Andrew's monotone chain over points sorted by (y, x). */
function convexHull(pts: number[]): number[] {
  const n = pts.length / 2;
  if (n <= 2) return n === 2 && pts[0] === pts[2] && pts[1] === pts[3] ? pts.slice(0, 2) : pts.slice();
  const hx = new Float64Array(2 * n),
    hy = new Float64Array(2 * n);
  let k = 0;
  for (let i = 0; i < n; i++) {
    while (k >= 2 && cross(hx[k - 2], hy[k - 2], hx[k - 1], hy[k - 1], pts[2 * i], pts[2 * i + 1]) <= 0) k--;
    hx[k] = pts[2 * i];
    hy[k++] = pts[2 * i + 1];
  }
  for (let i = n - 2, lower = k + 1; i >= 0; i--) {
    while (k >= lower && cross(hx[k - 2], hy[k - 2], hx[k - 1], hy[k - 1], pts[2 * i], pts[2 * i + 1]) <= 0) k--;
    hx[k] = pts[2 * i];
    hy[k++] = pts[2 * i + 1];
  }
  k--;
  if (k < 1) k = 1;
  const hull: number[] = [];
  for (let i = 0; i < k; i++) hull.push(hx[i], hy[i]);
  return hull;
}

function minAreaRect(hull: number[]): Rect {
  const r: Rect = { cx: 0, cy: 0, w: 0, h: 0, ux: 1, uy: 0 };
  const n = hull.length / 2;
  if (n === 1) {
    r.cx = hull[0];
    r.cy = hull[1];
    return r;
  }
  let bestArea = Infinity;
  for (let i = 0; i < n; i++) {
    const j = (i + 1) % n;
    const xi = hull[2 * i],
      yi = hull[2 * i + 1];
    const dx = hull[2 * j] - xi,
      dy = hull[2 * j + 1] - yi;
    const len = Math.sqrt(dx * dx + dy * dy);
    if (!(len > 0)) continue;
    const ux = dx / len,
      uy = dy / len;
    let minS = 0,
      maxS = 0,
      minT = 0,
      maxT = 0;
    for (let k = 0; k < n; k++) {
      const ex = hull[2 * k] - xi,
        ey = hull[2 * k + 1] - yi;
      const s = ex * ux + ey * uy;
      const t = ey * ux - ex * uy;
      if (s < minS) minS = s;
      if (s > maxS) maxS = s;
      if (t < minT) minT = t;
      if (t > maxT) maxT = t;
    }
    const area = (maxS - minS) * (maxT - minT);
    if (area < bestArea) {
      bestArea = area;
      const cs = (minS + maxS) / 2,
        ct = (minT + maxT) / 2;
      r.w = maxS - minS;
      r.h = maxT - minT;
      r.ux = ux;
      r.uy = uy;
      r.cx = xi + ux * cs - uy * ct;
      r.cy = yi + uy * cs + ux * ct;
    }
  }
  return r;
}

function corners(r: Rect): number[] {
  const hw = r.w / 2,
    hh = r.h / 2;
  const ax = r.ux * hw,
    ay = r.uy * hw,
    bx = -r.uy * hh,
    by = r.ux * hh;
  return [
    r.cx - ax - bx,
    r.cy - ay - by,
    r.cx + ax - bx,
    r.cy + ay - by,
    r.cx + ax + bx,
    r.cy + ay + by,
    r.cx - ax + bx,
    r.cy - ay + by,
  ];
}

function quadMean(o: RawDb, q: number[]): number {
  let minY = Infinity,
    maxY = -Infinity;
  for (let k = 0; k < 4; k++) {
    minY = Math.min(minY, q[2 * k + 1]);
    maxY = Math.max(maxY, q[2 * k + 1]);
  }
  const y0 = Math.max(0, Math.ceil(minY - 1e-9));
  const y1 = Math.min(o.height - 1, Math.floor(maxY + 1e-9));
  let sum = 0,
    cnt = 0;
  for (let y = y0; y <= y1; y++) {
    let lo = Infinity,
      hi = -Infinity;
    for (let k = 0; k < 4; k++) {
      const ax = q[2 * k],
        ay = q[2 * k + 1],
        bx = q[(2 * k + 2) % 8],
        by = q[(2 * k + 3) % 8];
      if ((ay <= y && by >= y) || (by <= y && ay >= y)) {
        if (ay === by) {
          lo = Math.min(lo, Math.min(ax, bx));
          hi = Math.max(hi, Math.max(ax, bx));
        } else {
          const x = ax + ((y - ay) / (by - ay)) * (bx - ax);
          lo = Math.min(lo, x);
          hi = Math.max(hi, x);
        }
      }
    }
    if (!(lo <= hi)) continue;
    const xa = Math.max(0, Math.ceil(lo - 1e-9)),
      xb = Math.min(o.width - 1, Math.floor(hi + 1e-9));
    const row = y * o.width;
    for (let x = xa; x <= xb; x++) {
      const v = o.prob[row + x];
      if (v === v) sum += v;
      cnt++;
    }
  }
  return cnt ? sum / cnt : 0;
}

/** PaddleOCR's corner order: stable sort by x, then top/bottom within the left and right pairs. */
function orderCorners(q: number[]): number[] {
  const idx = [0, 1, 2, 3];
  for (let i = 1; i < 4; i++)
    for (let j = i; j > 0 && q[2 * idx[j]] < q[2 * idx[j - 1]]; j--) [idx[j], idx[j - 1]] = [idx[j - 1], idx[j]];
  let [tl, bl, tr, br] = idx;
  if (q[2 * bl + 1] < q[2 * tl + 1]) [tl, bl] = [bl, tl];
  if (q[2 * br + 1] < q[2 * tr + 1]) [tr, br] = [br, tr];
  const out: number[] = [];
  for (const k of [tl, tr, br, bl]) out.push(q[2 * k], q[2 * k + 1]);
  return out;
}

export function dbPostprocess(o: RawDb): RawDbResult {
  const W = o.width,
    H = o.height,
    n = W * H;
  let mask = new Uint8Array(n);
  for (let i = 0; i < n; i++) mask[i] = o.prob[i] > o.threshold ? 1 : 0;
  if (o.dilate) {
    const d = new Uint8Array(n);
    for (let y = 0; y < H; y++) {
      const row = y * W,
        up = y > 0 ? row - W : row;
      for (let x = 0; x < W; x++) {
        const xl = x > 0 ? x - 1 : x;
        d[row + x] = mask[row + x] | mask[row + xl] | mask[up + x] | mask[up + xl];
      }
    }
    mask = d;
  }
  // 8-connected components over runs of mask pixels, numbered in raster order of their first
  // pixel, the first maxCandidates only (kernels/textdet.cc: the same algorithm, which says why).
  const rx0: number[] = [],
    rx1: number[] = [],
    ry: number[] = [];
  const rowStart = new Int32Array(H + 1);
  for (let y = 0; y < H; y++) {
    rowStart[y] = rx0.length;
    const row = y * W;
    for (let x = 0; x < W; ) {
      while (x < W && !mask[row + x]) x++;
      if (x >= W) break;
      const a = x;
      while (x < W && mask[row + x]) x++;
      rx0.push(a);
      rx1.push(x - 1);
      ry.push(y);
    }
  }
  rowStart[H] = rx0.length;
  const runs = rx0.length;
  const parent = Int32Array.from({ length: runs }, (_, i) => i);
  const find = (i: number) => {
    while (parent[i] !== i) i = parent[i] = parent[parent[i]];
    return i;
  };
  for (let y = 1; y < H; y++) {
    let q = rowStart[y - 1];
    const qEnd = rowStart[y];
    for (let r = rowStart[y]; r < rowStart[y + 1]; r++) {
      while (q < qEnd && rx1[q] < rx0[r] - 1) q++;
      for (let k = q; k < qEnd && rx0[k] <= rx1[r] + 1; k++) {
        const a = find(r),
          b = find(k);
        if (a !== b) parent[Math.max(a, b)] = Math.min(a, b);
      }
    }
  }
  const runComp = new Int32Array(runs);
  const bounds: number[] = [];
  const compRuns: number[][] = [];
  let count = 0;
  for (let r = 0; r < runs; r++) {
    const root = find(r);
    if (root === r) {
      if (count >= o.maxCandidates) continue;
      runComp[r] = ++count;
      bounds.push(rx0[r], ry[r], rx1[r], ry[r]);
      compRuns.push([r]);
      continue;
    }
    const id = runComp[root];
    runComp[r] = id;
    if (!id) continue;
    const b = 4 * (id - 1);
    bounds[b] = Math.min(bounds[b], rx0[r]);
    bounds[b + 2] = Math.max(bounds[b + 2], rx1[r]);
    bounds[b + 3] = Math.max(bounds[b + 3], ry[r]);
    compRuns[id - 1].push(r);
  }
  const quads: number[] = [],
    scores: number[] = [];
  for (let c = 0; c < count; c++) {
    const [b0, b1, b2, b3] = bounds.slice(4 * c, 4 * c + 4);
    if (b2 - b0 + 1 < o.minSize && b3 - b1 + 1 < o.minSize) continue;
    const pts: number[] = [];
    // per row: its leftmost and rightmost pixel (the first run's start, the last run's end)
    const own = compRuns[c];
    for (let i = 0; i < own.length; ) {
      const y = ry[own[i]],
        lo = rx0[own[i]];
      let hi = rx1[own[i]];
      for (i++; i < own.length && ry[own[i]] === y; i++) hi = rx1[own[i]];
      pts.push(lo, y);
      if (hi !== lo) pts.push(hi, y);
    }
    const r = minAreaRect(convexHull(pts));
    if (Math.min(r.w, r.h) < o.minSize) continue;
    const score = quadMean(o, corners(r));
    if (!(score >= o.boxThreshold)) continue;
    const perimeter = 2 * (r.w + r.h);
    const d = perimeter > 0 ? (r.w * r.h * o.unclipRatio) / perimeter : 0;
    r.w = r.w + 2 * d;
    r.h = r.h + 2 * d;
    if (Math.min(r.w, r.h) < o.minSize + 2) continue;
    const q = orderCorners(corners(r));
    for (let k = 0; k < 4; k++) {
      let x = (q[2 * k] + 0.5) * o.scaleX,
        y = (q[2 * k + 1] + 0.5) * o.scaleY;
      if (o.clipWidth > 0) x = Math.min(Math.max(x, 0), o.clipWidth);
      if (o.clipHeight > 0) y = Math.min(Math.max(y, 0), o.clipHeight);
      quads.push(x, y);
    }
    scores.push(score);
  }
  return { quads: Float32Array.from(quads), scores: Float32Array.from(scores) };
}
