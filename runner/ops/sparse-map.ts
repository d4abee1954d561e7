/**
 * The DB probability map a GPU variant sends in sparse form (fixtures/onnx-prepost.ts sparseMap):
 * the thresholded mask in 8×8 blocks, only blocks holding a pixel above the threshold, each with the
 * mean probability of those pixels. Rebuilt here as the map db-postprocess reads: the mask exact,
 * each mask pixel at its block's mean (a box's score within ~0.005 of the float map's), 0 elsewhere.
 */

export interface SparseMap {
  /** [H/32, W/16]: one bit per 8×8 block, row-major, most significant bit first. */
  flags: Uint8Array;
  flagDims: readonly number[];
  /** [K, 8]: each sent block's 8 rows of 8 mask bits, most significant bit leftmost. */
  blocks: Uint8Array;
  /** [K]: round(255 × mean probability of the block's mask pixels). */
  means: Uint8Array;
}

/** Why a sparse map cannot be read (the caller turns it into its own error). */
export class SparseMapError extends Error {}

/** The map, `width` × `height`; every mask pixel strictly above `threshold`. */
export function denseFromSparse(
  s: SparseMap,
  threshold: number,
): { prob: Float32Array; width: number; height: number } {
  if (s.flagDims.length !== 2) throw new SparseMapError(`flags must be [H/32, W/16], got [${s.flagDims.join(', ')}]`);
  const height = s.flagDims[0] * 32,
    width = s.flagDims[1] * 16;
  const bw = width / 8;
  const n = (height / 8) * bw;
  if (s.flags.length * 8 !== n) throw new SparseMapError(`${s.flags.length} flag bytes for ${n} blocks`);
  let k = 0;
  for (const b of s.flags) for (let v = b; v; v &= v - 1) k++;
  if (s.blocks.length !== 8 * k || s.means.length !== k)
    throw new SparseMapError(`${k} blocks flagged, ${s.blocks.length / 8} sent with ${s.means.length} means`);
  const prob = new Float32Array(width * height);
  // A mask pixel must stay above the threshold whatever its block's mean rounded to.
  const floor = Math.fround(threshold) > threshold ? Math.fround(threshold) : threshold + 2 ** -23;
  let at = 0;
  for (let j = 0; j < s.flags.length; j++) {
    const f = s.flags[j];
    if (!f) continue;
    for (let bit = 0; bit < 8; bit++) {
      if (!(f & (0x80 >> bit))) continue;
      const block = j * 8 + bit;
      const x0 = (block % bw) * 8,
        y0 = Math.floor(block / bw) * 8;
      const v = Math.max(s.means[at] / 255, floor);
      for (let r = 0; r < 8; r++) {
        const row = s.blocks[at * 8 + r];
        if (!row) continue;
        const o = (y0 + r) * width + x0;
        for (let c = 0; c < 8; c++) if (row & (0x80 >> c)) prob[o + c] = v;
      }
      at++;
    }
  }
  return { prob, width, height };
}
