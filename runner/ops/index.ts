/**
 * Pipeline helpers (runner/PIPELINE.md): thin adapters over the native kernels (native/index.ts,
 * with its portable TypeScript fallback) plus the logic no kernel covers (reading order, quad
 * helpers, rotation by quarter turns, vocabulary parsing, full softmax).
 */
export { resizeImage, rotateImage, cropQuad, toTensor, type ImageShape, type ResizeOptions, type RotateOptions, type CropQuadOptions, type ToTensorOptions } from './image.js';
export { orderQuad, polygonArea, quadSize, quadBounds } from './geometry.js';
export { dbBoxes, type DbOptions, type DbResult } from './detect.js';
export { softmax, argmax, topK } from './classify.js';
export { ctcGreedyDecode, parseVocabulary, type CtcOptions, type CtcResult } from './ctc.js';
export { nms, iou, type NmsOptions } from './nms.js';
export { readingOrder, type ReadingOrderOptions } from './order.js';
