/**
 * Reading order of text boxes: top to bottom, one column at a time, left to right across
 * columns. A recursive projection cut (XY-cut) with one twist: rows that share a column gutter
 * are regrouped before cutting, so two columns whose lines happen to align are still read one
 * column after the other, while a heading spanning both columns stays first. Narrow "columns"
 * (amounts in a price list) are not columns: such tables read row by row.
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
}

interface Node {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  cy: number;
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

/** Column groups along x, narrow ones merged into the neighbour across the smaller gap. */
function columns(ids: number[], nodes: Node[], p: Params): number[][] {
  const cols = split(ids, nodes, 0, p.colGap);
  const span = (g: number[]) => {
    let x0 = Infinity, x1 = -Infinity;
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
    if (narrow < 0) return cols;
    const gapLeft = narrow > 0 ? spans[narrow][0] - spans[narrow - 1][1] : Infinity;
    const gapRight = narrow < cols.length - 1 ? spans[narrow + 1][0] - spans[narrow][1] : Infinity;
    const other = gapLeft <= gapRight ? narrow - 1 : narrow + 1;
    const lo = Math.min(narrow, other);
    cols.splice(lo, 2, cols[lo].concat(cols[lo + 1]));
  }
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
    const sorted = [...ids].sort(sameLine ? (a, b) => nodes[a].x0 - nodes[b].x0 || a - b : (a, b) => nodes[a].cy - nodes[b].cy || nodes[a].x0 - nodes[b].x0 || a - b);
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

/**
 * Returns the permutation of `count` quads (8 numbers each, in `quads`) in reading order.
 * NaN coordinates sort last, in input order.
 */
export function readingOrder(quads: ArrayLike<number>, count: number, options: ReadingOrderOptions = {}): Int32Array {
  const shrink = options.shrink ?? 0.25;
  const nodes: Node[] = [];
  const heights: number[] = [];
  const valid: number[] = [];
  const invalid: number[] = [];
  for (let i = 0; i < count; i++) {
    const q = Array.from({ length: 8 }, (_, k) => quads[8 * i + k]);
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (let k = 0; k < 4; k++) {
      x0 = Math.min(x0, q[2 * k]);
      x1 = Math.max(x1, q[2 * k]);
      y0 = Math.min(y0, q[2 * k + 1]);
      y1 = Math.max(y1, q[2 * k + 1]);
    }
    const { width, height } = quadSize(q);
    const line = Math.min(width, height);
    const ok = [x0, y0, x1, y1].every(Number.isFinite);
    const s = ok ? line * shrink : 0;
    nodes.push({ x0: x0 + s, y0: y0 + s, x1: x1 - s, y1: y1 - s, cy: (y0 + y1) / 2 });
    if (ok) {
      valid.push(i);
      heights.push(line);
    } else invalid.push(i);
  }
  heights.sort((a, b) => a - b);
  const median = heights.length ? heights[heights.length >> 1] : 0;
  const out: number[] = [];
  order(valid, nodes, { colGap: (options.columnGap ?? 1) * median, minWidth: (options.minColumnWidth ?? 6) * median }, out);
  out.push(...invalid);
  return Int32Array.from(out);
}
