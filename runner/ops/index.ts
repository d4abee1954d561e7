/**
 * Pipeline helpers (runner/PIPELINE.md): thin adapters over the native kernels (native/index.ts,
 * with its portable TypeScript fallback) plus the logic no kernel covers (reading order, quad
 * helpers, rotation by quarter turns, vocabulary parsing, full softmax).
 */

export { argmax, softmax, topK } from './classify.js';
export { type CtcOptions, type CtcResult, ctcGreedyDecode, parseVocabulary } from './ctc.js';
export { type DbOptions, type DbResult, dbBoxes } from './detect.js';
export { orderQuad, polygonArea, quadBounds, quadSize } from './geometry.js';
export {
  type CropQuadOptions,
  cropQuad,
  type ImageShape,
  type ResizeOptions,
  type RotateOptions,
  resizeImage,
  rotateImage,
  type ToTensorOptions,
  toTensor,
} from './image.js';
export { iou, type NmsOptions, nms } from './nms.js';
export { type ReadingOrderOptions, readingOrder } from './order.js';
