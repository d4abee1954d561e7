/**
 * Quadrilateral helpers on flat number arrays (points interleaved `x0, y0, x1, y1, …`); the
 * hull / rotated-rectangle kernels live in native/ (kernels/textdet.cc, native/portable/textdet.ts).
 */

/**
 * Orders four corners clockwise (y down) starting at the top-left: the corner with the smallest
 * x+y starts; ties go to the smaller y. Stable for axis-aligned and rotated boxes alike.
 */
export function orderQuad(q: ArrayLike<number>): Float64Array {
  const cx = (q[0] + q[2] + q[4] + q[6]) / 4,
    cy = (q[1] + q[3] + q[5] + q[7]) / 4;
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
  let x0 = Infinity,
    y0 = Infinity,
    x1 = -Infinity,
    y1 = -Infinity;
  for (let k = 0; k < 4; k++) {
    const x = q[at + 2 * k],
      y = q[at + 2 * k + 1];
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  return [x0, y0, x1, y1];
}

/** Turns point (x, y) by `a` radians (clockwise, y down) about the origin. */
function turn(x: number, y: number, a: number): [number, number] {
  const c = Math.cos(a),
    s = Math.sin(a);
  return [x * c - y * s, x * s + y * c];
}

/**
 * The rectangle around several quads in a frame turned by `angle` (the text running along its
 * x axis): corners clockwise from its top-left in that frame, back in image coordinates. One
 * box for a row of boxes on a tilted page.
 */
export function enclosingQuad(quads: readonly ArrayLike<number>[], angle: number): number[] {
  let x0 = Infinity,
    y0 = Infinity,
    x1 = -Infinity,
    y1 = -Infinity;
  for (const q of quads) {
    for (let k = 0; k < 4; k++) {
      const [x, y] = turn(q[2 * k], q[2 * k + 1], -angle);
      x0 = Math.min(x0, x);
      x1 = Math.max(x1, x);
      y0 = Math.min(y0, y);
      y1 = Math.max(y1, y);
    }
  }
  return [turn(x0, y0, angle), turn(x1, y0, angle), turn(x1, y1, angle), turn(x0, y1, angle)].flat();
}
