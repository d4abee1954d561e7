/**
 * Turns one row of a batch of crops by 180° in place, within its valid width (the padding on its
 * right stays where it is): what cutting the region with its corners turned by two places gives,
 * up to float rounding (the same samples, summed in another order).
 */
export function turnRow180(
  t: { data: Float32Array | Uint16Array | Uint8Array; dims: readonly number[]; widths: Int32Array },
  row: number,
  nhwc: boolean,
): void {
  const [, a, b, c] = t.dims;
  const [C, H, W] = nhwc ? [c, a, b] : [a, b, c];
  const w = t.widths[row];
  const d = t.data;
  const n = H * w;
  // element (y, x) and (H-1-y, w-1-x) are i and n-1-i in the valid rectangle read row by row
  const at = (i: number) => Math.floor(i / w) * W + (i % w);
  if (nhwc) {
    const base = row * H * W * C;
    for (let i = 0; i < n >> 1; i++) {
      const p = base + at(i) * C,
        q = base + at(n - 1 - i) * C;
      for (let k = 0; k < C; k++) {
        const v = d[p + k];
        d[p + k] = d[q + k];
        d[q + k] = v;
      }
    }
  } else {
    for (let k = 0; k < C; k++) {
      const base = (row * C + k) * H * W;
      for (let i = 0; i < n >> 1; i++) {
        const p = base + at(i),
          q = base + at(n - 1 - i);
        const v = d[p];
        d[p] = d[q];
        d[q] = v;
      }
    }
  }
}
