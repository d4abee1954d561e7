/**
 * Portable TypeScript kernels of the pipeline (runner/PIPELINE.md). Pure functions over typed
 * arrays: typed array(s) + dimensions + one options object in, fresh typed arrays out.
 */
export { resizeImage, rotateImage, cropQuad, toTensor, type ImageShape, type ResizeOptions, type RotateOptions, type CropQuadOptions, type ToTensorOptions } from './image.js';
export { convexHull, minAreaRect, rectCorners, orderQuad, polygonArea, quadSize, quadBounds, type RotatedRect } from './geometry.js';
export { binarize, dilate2x2, labelComponents, componentExtremes, quadMean, unclipRect, dbBoxes, type Components, type DbOptions, type DbResult } from './detect.js';
export { softmax, argmax, topK } from './classify.js';
export { ctcGreedyDecode, parseVocabulary, type CtcOptions, type CtcResult } from './ctc.js';
export { nms, iou, type NmsOptions } from './nms.js';
export { readingOrder, type ReadingOrderOptions } from './order.js';
