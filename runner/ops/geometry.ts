/**
 * Planar geometry kernels on flat number arrays: convex hull, minimum-area rotated rectangle,
 * quadrilateral helpers. Points are interleaved `x0, y0, x1, y1, …`.
 */

function cross(ox: number, oy: number, ax: number, ay: number, bx: number, by: number): number {
  return (ax - ox) * (by - oy) - (ay - oy) * (bx - ox);
}

/**
 * Convex hull (Andrew's monotone chain) of `n` points given sorted by y then x, or unsorted
 * with `sorted: false`. Returns hull vertices counter-clockwise in a y-down frame, no repeats.
 */
export function convexHull(points: ArrayLike<number>, n: number, options: { sorted?: boolean } = {}): Float64Array {
  let xs = new Float64Array(n), ys = new Float64Array(n);
  if (options.sorted) {
    for (let i = 0; i < n; i++) {
      xs[i] = points[2 * i];
      ys[i] = points[2 * i + 1];
    }
  } else {
    const idx = Array.from({ length: n }, (_, i) => i);
    idx.sort((a, b) => points[2 * a + 1] - points[2 * b + 1] || points[2 * a] - points[2 * b]);
    const sx = new Float64Array(n), sy = new Float64Array(n);
    idx.forEach((p, i) => {
      sx[i] = points[2 * p];
      sy[i] = points[2 * p + 1];
    });
    xs = sx;
    ys = sy;
  }
  if (n <= 2) {
    const out = new Float64Array(n === 2 && xs[0] === xs[1] && ys[0] === ys[1] ? 2 : 2 * n);
    for (let i = 0; i < out.length / 2; i++) {
      out[2 * i] = xs[i];
      out[2 * i + 1] = ys[i];
    }
    return out;
  }
  const hx = new Float64Array(2 * n), hy = new Float64Array(2 * n);
  let k = 0;
  for (let i = 0; i < n; i++) {
    while (k >= 2 && cross(hx[k - 2], hy[k - 2], hx[k - 1], hy[k - 1], xs[i], ys[i]) <= 0) k--;
    hx[k] = xs[i];
    hy[k++] = ys[i];
  }
  for (let i = n - 2, lower = k + 1; i >= 0; i--) {
    while (k >= lower && cross(hx[k - 2], hy[k - 2], hx[k - 1], hy[k - 1], xs[i], ys[i]) <= 0) k--;
    hx[k] = xs[i];
    hy[k++] = ys[i];
  }
  k--; // last point repeats the first
  if (k < 1) k = 1;
  const out = new Float64Array(2 * k);
  for (let i = 0; i < k; i++) {
    out[2 * i] = hx[i];
    out[2 * i + 1] = hy[i];
  }
  return out;
}

export interface RotatedRect {
  cx: number;
  cy: number;
  /** Side along `angle`. */
  width: number;
  /** Side perpendicular to `angle`. */
  height: number;
  /** Radians of the `width` side. */
  angle: number;
}

/**
 * Minimum-area enclosing rectangle of a convex polygon (rotating calipers: the optimum has a
 * side collinear with a hull edge). `hull` as returned by `convexHull`.
 */
export function minAreaRect(hull: ArrayLike<number>): RotatedRect {
  const n = hull.length >> 1;
  if (n === 0) return { cx: 0, cy: 0, width: 0, height: 0, angle: 0 };
  if (n === 1) return { cx: hull[0], cy: hull[1], width: 0, height: 0, angle: 0 };
  let best: RotatedRect | undefined;
  let bestArea = Infinity;
  for (let i = 0; i < n; i++) {
    const j = (i + 1) % n;
    let ex = hull[2 * j] - hull[2 * i], ey = hull[2 * j + 1] - hull[2 * i + 1];
    const len = Math.hypot(ex, ey);
    if (len === 0) continue;
    ex /= len;
    ey /= len;
    let minU = Infinity, maxU = -Infinity, minV = Infinity, maxV = -Infinity;
    for (let k = 0; k < n; k++) {
      const px = hull[2 * k], py = hull[2 * k + 1];
      const u = px * ex + py * ey;
      const v = -px * ey + py * ex;
      if (u < minU) minU = u;
      if (u > maxU) maxU = u;
      if (v < minV) minV = v;
      if (v > maxV) maxV = v;
    }
    const w = maxU - minU, h = maxV - minV;
    const area = w * h;
    // Ties (e.g. axis-aligned rectangles seen from two edges) keep the first, for determinism.
    if (area < bestArea - 1e-9 || (best === undefined)) {
      const cu = (minU + maxU) / 2, cv = (minV + maxV) / 2;
      best = { cx: cu * ex - cv * ey, cy: cu * ey + cv * ex, width: w, height: h, angle: Math.atan2(ey, ex) };
      bestArea = area;
    }
  }
  return best ?? { cx: hull[0], cy: hull[1], width: 0, height: 0, angle: 0 };
}

/** The four corners of a rotated rectangle, ordered by `orderQuad`. */
export function rectCorners(r: RotatedRect): Float64Array {
  const c = Math.cos(r.angle), s = Math.sin(r.angle);
  const hw = r.width / 2, hh = r.height / 2;
  const q = new Float64Array(8);
  const corners = [
    [-hw, -hh],
    [hw, -hh],
    [hw, hh],
    [-hw, hh],
  ];
  corners.forEach(([u, v], i) => {
    q[2 * i] = r.cx + u * c - v * s;
    q[2 * i + 1] = r.cy + u * s + v * c;
  });
  return orderQuad(q);
}

/**
 * Orders four corners clockwise (y down) starting at the top-left: the corner with the smallest
 * x+y starts; ties go to the smaller y. Stable for axis-aligned and rotated boxes alike.
 */
export function orderQuad(q: ArrayLike<number>): Float64Array {
  const cx = (q[0] + q[2] + q[4] + q[6]) / 4, cy = (q[1] + q[3] + q[5] + q[7]) / 4;
  const idx = [0, 1, 2, 3];
  // Clockwise on screen = increasing atan2 with y pointing down.
  const ang = idx.map((i) => Math.atan2(q[2 * i + 1] - cy, q[2 * i] - cx));
  idx.sort((a, b) => ang[a] - ang[b]);
  let startAt = 0;
  let bestKey = Infinity;
  for (let k = 0; k < 4; k++) {
    const i = idx[k];
    const key = q[2 * i] + q[2 * i + 1];
    if (key < bestKey - 1e-9 || (Math.abs(key - bestKey) <= 1e-9 && q[2 * i + 1] < q[2 * idx[startAt] + 1])) {
      bestKey = key;
      startAt = k;
    }
  }
  const out = new Float64Array(8);
  for (let k = 0; k < 4; k++) {
    const i = idx[(startAt + k) % 4];
    out[2 * k] = q[2 * i];
    out[2 * k + 1] = q[2 * i + 1];
  }
  return out;
}

/** Shoelace area (absolute) of a polygon. */
export function polygonArea(p: ArrayLike<number>): number {
  const n = p.length >> 1;
  let a = 0;
  for (let i = 0, j = n - 1; i < n; j = i++) a += p[2 * j] * p[2 * i + 1] - p[2 * i] * p[2 * j + 1];
  return Math.abs(a) / 2;
}

/** Side lengths of a quad ordered TL, TR, BR, BL: width = max(top, bottom), height = max(left, right). */
export function quadSize(q: ArrayLike<number>): { width: number; height: number } {
  const d = (a: number, b: number) => Math.hypot(q[2 * a] - q[2 * b], q[2 * a + 1] - q[2 * b + 1]);
  return { width: Math.max(d(0, 1), d(3, 2)), height: Math.max(d(0, 3), d(1, 2)) };
}

/** Axis-aligned bounds `[minX, minY, maxX, maxY]` of a quad. */
export function quadBounds(q: ArrayLike<number>, at = 0): [number, number, number, number] {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (let k = 0; k < 4; k++) {
    const x = q[at + 2 * k], y = q[at + 2 * k + 1];
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  return [x0, y0, x1, y1];
}
