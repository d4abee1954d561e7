/**
 * Portable TypeScript kernels: the fallback when the addon is missing, and the browser path (this
 * folder imports nothing from Node). Each takes the same raw options object as the addon.
 */
import type { Kernels } from '../index.js';
import { ctcGreedy, segmentArgmax, softmaxTopK } from './classify.js';
import { decodeDetections, nms } from './detect.js';
import { cropBatch, preprocess } from './image.js';
import { dbPostprocess } from './textdet.js';

function call<O, R>(fn: (o: O) => R): Kernels[keyof Kernels] {
  const f = (o: O, async?: boolean): R | Promise<R> => (async ? Promise.resolve().then(() => fn(o)) : fn(o));
  return f as unknown as Kernels[keyof Kernels];
}

export const portable: Kernels = {
  preprocess: call(preprocess),
  cropBatch: call(cropBatch),
  nms: call(nms),
  decodeDetections: call(decodeDetections),
  segmentArgmax: call(segmentArgmax),
  softmaxTopK: call(softmaxTopK),
  ctcGreedy: call(ctcGreedy),
  dbPostprocess: call(dbPostprocess),
} as Kernels;

export { floatsToHalves, floatToHalf, halfToFloat } from './f16.js';
export { yoloGrid } from './grid.js';
export { makeTaps } from './image.js';
export { cropBatch, ctcGreedy, dbPostprocess, decodeDetections, nms, preprocess, segmentArgmax, softmaxTopK };
