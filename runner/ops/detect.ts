/**
 * DB text-detection post-processing (binarize, components, minimum-area rotated boxes, box score,
 * unclip) as an adapter over the native `dbPostprocess` kernel.
 */
import { dbPostprocessSync } from '../../native/index.js';

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
  const f = prob instanceof Float32Array ? prob : Float32Array.from({ length: width * height }, (_, i) => prob[i]);
  return dbPostprocessSync(f, {
    width,
    height,
    threshold: options.threshold,
    boxThreshold: options.boxThreshold,
    unclipRatio: options.unclipRatio,
    minSize: options.minSize ?? 3,
    maxCandidates: options.maxCandidates ?? 1000,
    dilate: options.dilate ?? false,
  });
}
