/**
 * Reading order of text boxes: top to bottom, one column at a time, left to right across
 * columns, in the page's own frame. The page's text direction is estimated from the boxes
 * (pageAngle) and every box is turned into that frame first, so a tilted photo, a page on its
 * side or upside down reads like an upright one. Then a recursive projection cut (XY-cut) with
 * one twist: rows that share a column gutter are regrouped before cutting, so two columns whose
 * lines happen to align are still read one column after the other, while a heading spanning both
 * columns stays first. Tables are not columns: a would-be column that is narrow (a price list's
 * amounts) or whose boxes pair up row by row with its neighbour's (see isTable) joins it, so
 * tables and receipts read row by row, and boxes of one row share a line index.
 */
import { quadSize } from './geometry.js';

export interface ReadingOrderOptions {
  /**
   * Smallest horizontal gap between columns, in multiples of the median line height (the short
   * side of the boxes). Default 1.
   */
  columnGap?: number;
  /**
   * Narrowest column, in median line heights. A would-be column narrower than this (a price
   * list's amounts, a form's values) joins its nearest neighbour, so tables read row by row.
   * Default 6.
   */
  minColumnWidth?: number;
  /**
   * Fraction of its line height by which every box is shrunk on each side before projecting,
   * so padded boxes of neighbouring lines (DB unclip grows them) don't touch. Default 0.25.
   */
  shrink?: number;
  /**
   * How the page's text direction is estimated: `axial` (default) from the long edge of each
   * box, up to a half turn (boxes straight from a detector: an upside-down page reads as upright);
   * `oriented` from each quad's first edge (corner 0 → 1, the direction the text runs: boxes
   * whose corners start at the text's own top-left, as `text-lines` has them), which also tells
   * upside-down and sideways pages apart; `none`: the image axes.
   */
  direction?: 'axial' | 'oriented' | 'none';
}

export interface ReadingLayout {
  /** The permutation of the input boxes in reading order. */
  order: Int32Array;
  /**
   * Per position in `order`: its line. Boxes in a row of the page's frame (same baseline, left
   * to right, next to each other in the order) share a line; every other box is a line of its own.
   */
  line: Int32Array;
  /** The page's text direction in radians, clockwise from the image's x axis. */
  angle: number;
}

interface Node {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  cy: number;
  /** Line height (the box's short side). */
  h: number;
}

/** Splits `ids` into groups separated by gaps wider than `minGap` along x (axis 0) or y (axis 1). */
function split(ids: number[], nodes: Node[], axis: 0 | 1, minGap: number): number[][] {
  const lo = (i: number) => (axis === 0 ? nodes[i].x0 : nodes[i].y0);
  const hi = (i: number) => (axis === 0 ? nodes[i].x1 : nodes[i].y1);
  const sorted = [...ids].sort((a, b) => lo(a) - lo(b) || a - b);
  const groups: number[][] = [];
  let cur: number[] = [];
  let end = -Infinity;
  for (const i of sorted) {
    if (cur.length && lo(i) - end > minGap) {
      groups.push(cur);
      cur = [];
      end = -Infinity;
    }
    cur.push(i);
    end = Math.max(end, hi(i));
  }
  if (cur.length) groups.push(cur);
  return groups;
}

interface Params {
  colGap: number;
  minWidth: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[s.length >> 1] : 0;
};

/** Same baseline in the page's frame: centres within a third of the smaller line height. */
const sameRow = (a: Node, b: Node) => Math.abs(a.cy - b.cy) <= Math.min(a.h, b.h) / 3;

/**
 * Whether two neighbouring would-be columns are one table (read row by row). Rows pair up: at
 * least 80% of the boxes of the side with fewer boxes have a box on the other side on their
 * baseline. Unless both sides are prose: as wide as a column (minWidth) and filled (the median
 * box ≥ 80% of the side's width: ragged-right prose leaves less than a word free): two text columns set on one baseline grid pair up too, but
 * their lines fill their column, where a table's labels, amounts and values are short and ragged.
 * Two text columns whose baselines don't pair up are columns whatever their fill.
 */
function isTable(a: number[], b: number[], nodes: Node[], p: Params): boolean {
  const [few, many] = a.length <= b.length ? [a, b] : [b, a];
  const paired = few.filter((i) => many.some((j) => sameRow(nodes[i], nodes[j]))).length;
  if (paired < 0.8 * few.length) return false;
  const prose = (g: number[]) => {
    const x0 = Math.min(...g.map((i) => nodes[i].x0)),
      x1 = Math.max(...g.map((i) => nodes[i].x1));
    return x1 - x0 >= p.minWidth && median(g.map((i) => nodes[i].x1 - nodes[i].x0)) >= 0.8 * (x1 - x0);
  };
  return !(prose(a) && prose(b));
}

/** Column groups along x; narrow ones and tables merged into the neighbour across the smaller gap. */
function columns(ids: number[], nodes: Node[], p: Params): number[][] {
  const cols = split(ids, nodes, 0, p.colGap);
  const span = (g: number[]) => {
    let x0 = Infinity,
      x1 = -Infinity;
    for (const i of g) {
      x0 = Math.min(x0, nodes[i].x0);
      x1 = Math.max(x1, nodes[i].x1);
    }
    return [x0, x1];
  };
  for (;;) {
    if (cols.length < 2) return cols;
    const spans = cols.map(span);
    const narrow = spans.findIndex(([a, b]) => b - a < p.minWidth);
    if (narrow < 0) break;
    const gapLeft = narrow > 0 ? spans[narrow][0] - spans[narrow - 1][1] : Infinity;
    const gapRight = narrow < cols.length - 1 ? spans[narrow + 1][0] - spans[narrow][1] : Infinity;
    const other = gapLeft <= gapRight ? narrow - 1 : narrow + 1;
    const lo = Math.min(narrow, other);
    cols.splice(lo, 2, cols[lo].concat(cols[lo + 1]));
  }
  for (let k = 0; k + 1 < cols.length; ) {
    if (isTable(cols[k], cols[k + 1], nodes, p)) cols.splice(k, 2, cols[k].concat(cols[k + 1]));
    else k++;
  }
  return cols;
}

function order(ids: number[], nodes: Node[], p: Params, out: number[]): void {
  if (ids.length <= 1) {
    out.push(...ids);
    return;
  }
  const cols = columns(ids, nodes, p);
  if (cols.length > 1) {
    for (const c of cols) order(c, nodes, p, out);
    return;
  }
  const rows = split(ids, nodes, 1, 0);
  if (rows.length === 1) {
    // One visual line (or an overlapping tangle): left to right if every pair overlaps
    // vertically, else top to bottom.
    const sameLine = ids.every((a) => ids.every((b) => nodes[a].y0 <= nodes[b].y1 && nodes[b].y0 <= nodes[a].y1));
    const sorted = [...ids].sort(
      sameLine
        ? (a, b) => nodes[a].x0 - nodes[b].x0 || a - b
        : (a, b) => nodes[a].cy - nodes[b].cy || nodes[a].x0 - nodes[b].x0 || a - b,
    );
    out.push(...sorted);
    return;
  }
  // Consecutive rows that together show a column gutter form one multi-column block. This node
  // has no gutter overall, so no block can hold every row: each recursion makes progress.
  let block = rows[0];
  for (let r = 1; r < rows.length; r++) {
    const merged = block.concat(rows[r]);
    if (columns(merged, nodes, p).length > 1) block = merged;
    else {
      order(block, nodes, p, out);
      block = rows[r];
    }
  }
  order(block, nodes, p, out);
}

/** Angle wrapped into [-period/2, period/2). */
const wrap = (a: number, period: number) => a - period * Math.floor(a / period + 0.5);

/**
 * The page's text direction in radians (clockwise, y down) from `count` quads: the weighted
 * circular mean of the boxes' directions, refined by the weighted median of the deviations from
 * it (a few stray boxes — a vertical label, a stamp — don't pull it). Each box weighs its
 * elongation (long side − short side): near-square boxes (single characters) say nothing.
 * `axial`: directions of the long edge, modulo a half turn, in (−π/2, π/2]; `oriented`: corner
 * 0 → corner 1, a full turn. 0 when no box is elongated.
 */
export function pageAngle(quads: ArrayLike<number>, count: number, direction: 'axial' | 'oriented' = 'axial'): number {
  const period = direction === 'axial' ? Math.PI : 2 * Math.PI;
  const k = (2 * Math.PI) / period;
  const angles: number[] = [];
  const weights: number[] = [];
  let sx = 0,
    sy = 0;
  for (let i = 0; i < count; i++) {
    const q = (j: number) => quads[8 * i + j];
    const { width, height } = quadSize(Array.from({ length: 8 }, (_, j) => q(j)));
    const w = Math.abs(width - height);
    if (!(w > 0)) continue;
    // Long edge: 0 → 1 when the box is wider than tall, else 1 → 2 (oriented boxes run 0 → 1).
    const [a, b] = direction === 'oriented' || width >= height ? [0, 1] : [1, 2];
    const ang = Math.atan2(q(2 * b + 1) - q(2 * a + 1), q(2 * b) - q(2 * a));
    if (!Number.isFinite(ang)) continue;
    angles.push(ang);
    weights.push(w);
    sx += w * Math.cos(k * ang);
    sy += w * Math.sin(k * ang);
  }
  if (!angles.length) return 0;
  const mean = Math.atan2(sy, sx) / k;
  const dev = angles.map((a, i) => [wrap(a - mean, period), weights[i]] as const).sort((a, b) => a[0] - b[0]);
  const half = weights.reduce((s, w) => s + w, 0) / 2;
  let acc = 0;
  let med = 0;
  for (const [d, w] of dev) {
    acc += w;
    if (acc >= half) {
      med = d;
      break;
    }
  }
  const angle = wrap(mean + med, period);
  // Axial: (−π/2, π/2]: a page on its side reads as turned clockwise.
  return direction === 'axial' && angle <= -Math.PI / 2 + 1e-9 ? angle + Math.PI : angle;
}

/**
 * Reading order and lines of `count` quads (8 numbers each, in `quads`) in the page's frame.
 * NaN coordinates sort last, in input order, each a line of its own.
 */
export function readingLayout(
  quads: ArrayLike<number>,
  count: number,
  options: ReadingOrderOptions = {},
): ReadingLayout {
  const shrink = options.shrink ?? 0.25;
  const angle = options.direction === 'none' ? 0 : pageAngle(quads, count, options.direction ?? 'axial');
  // Into the page's frame: turn every point by −angle, so the text runs along +x, tops up.
  const c = Math.cos(angle),
    s = Math.sin(angle);
  const nodes: Node[] = [];
  const heights: number[] = [];
  const valid: number[] = [];
  const invalid: number[] = [];
  for (let i = 0; i < count; i++) {
    const q = Array.from({ length: 8 }, (_, k) => quads[8 * i + k]);
    let x0 = Infinity,
      y0 = Infinity,
      x1 = -Infinity,
      y1 = -Infinity;
    for (let k = 0; k < 4; k++) {
      const x = q[2 * k] * c + q[2 * k + 1] * s,
        y = q[2 * k + 1] * c - q[2 * k] * s;
      x0 = Math.min(x0, x);
      x1 = Math.max(x1, x);
      y0 = Math.min(y0, y);
      y1 = Math.max(y1, y);
    }
    const { width, height } = quadSize(q);
    const line = Math.min(width, height);
    const ok = [x0, y0, x1, y1].every(Number.isFinite);
    const sh = ok ? line * shrink : 0;
    nodes.push({ x0: x0 + sh, y0: y0 + sh, x1: x1 - sh, y1: y1 - sh, cy: (y0 + y1) / 2, h: line });
    if (ok) {
      valid.push(i);
      heights.push(line);
    } else invalid.push(i);
  }
  const out: number[] = [];
  const med = median(heights);
  order(valid, nodes, { colGap: (options.columnGap ?? 1) * med, minWidth: (options.minColumnWidth ?? 6) * med }, out);
  // Lines: a box continues the previous one's line when it sits on its baseline, after it.
  const line = new Int32Array(count);
  let n = 0;
  out.forEach((i, k) => {
    const prev = k ? nodes[out[k - 1]] : undefined;
    line[k] =
      prev && sameRow(prev, nodes[i]) && nodes[i].x0 >= prev.x0 && nodes[i].x0 >= prev.x1 - nodes[i].h ? n - 1 : n++;
  });
  for (let k = out.length; k < count; k++) line[k] = n++;
  out.push(...invalid);
  return { order: Int32Array.from(out), line, angle };
}

/**
 * Returns the permutation of `count` quads (8 numbers each, in `quads`) in reading order.
 * NaN coordinates sort last, in input order.
 */
export function readingOrder(quads: ArrayLike<number>, count: number, options: ReadingOrderOptions = {}): Int32Array {
  return readingLayout(quads, count, options).order;
}
