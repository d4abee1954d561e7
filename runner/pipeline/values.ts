/**
 * The values a pipeline's environment holds between steps. Every value carries a `kind` tag so
 * a step can check what it was given and fail with the step's index rather than misbehave.
 */
import type { Tensor } from '../types.js';

/**
 * Maps coordinates of this image back to the image it was derived from:
 * `source = (p - offset) / scale`, per axis.
 */
export interface ImageTransform {
  scaleX: number;
  scaleY: number;
  offsetX: number;
  offsetY: number;
  /** Size of the source image. */
  width: number;
  height: number;
}

/** Decoded pixels, HWC, 8 bits per channel, RGB order for 3 channels. */
export interface ImageValue {
  kind: 'image';
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
  /** Present when the image was resized/letterboxed from another one. */
  transform?: ImageTransform;
  /**
   * For crops: the region of the source image (8 numbers) whose corners became this image's
   * top-left, top-right, bottom-right, bottom-left. Rotations keep it in step.
   */
  quad?: number[];
}

/** An ordered batch of images, e.g. one crop per region. */
export interface ImagesValue {
  kind: 'images';
  items: ImageValue[];
}

export interface TensorValue extends Tensor {
  kind: 'tensor';
  /** For a tensor made from an image (`preprocess`): maps its plane's coordinates back to that image. */
  transform?: ImageTransform;
  /** For a batch padded on the right (`crop-batch`): each item's valid width, in tensor columns. */
  widths?: Int32Array;
  /** With `widths`: the tensor's width, which `widths` are out of (its last dim in NCHW, dim 2 in NHWC). */
  paddedWidth?: number;
}

/** One tensor per item, for models run per region rather than batched. */
export interface TensorsValue {
  kind: 'tensors';
  items: TensorValue[];
}

/** Detected regions as quads (TL, TR, BR, BL) in pixels of the image named by the step that made them. */
export interface RegionsValue {
  kind: 'regions';
  count: number;
  quads: Float32Array;
  scores: Float32Array;
  /** Size of the image the quads refer to. */
  width: number;
  height: number;
}

/** Axis-aligned boxes `x1, y1, x2, y2` with scores and optional class ids. */
export interface BoxesValue {
  kind: 'boxes';
  count: number;
  boxes: Float32Array;
  scores: Float32Array;
  classes?: Int32Array;
  labels?: string[];
}

/** Top-k classes per item: `count × k` ids and scores. */
export interface ClassesValue {
  kind: 'classes';
  count: number;
  k: number;
  indices: Int32Array;
  scores: Float32Array;
  labels?: string[];
}

export interface TextsValue {
  kind: 'texts';
  texts: string[];
  scores: Float32Array;
}

/** A label mask (e.g. per-pixel argmax of a segmentation model). */
export interface MaskValue {
  kind: 'mask';
  width: number;
  height: number;
  data: Int32Array;
  labels?: string[];
}

export interface TextLine {
  text: string;
  score: number;
  /** Four corners in image pixels, clockwise from the text's own top-left. */
  box: [[number, number], [number, number], [number, number], [number, number]];
}

export interface TextLinesValue {
  kind: 'text-lines';
  lines: TextLine[];
}

/** A caller's input, before a step has interpreted it (e.g. an image path). */
export interface RawValue {
  kind: 'raw';
  value: unknown;
}

export type Value =
  | ImageValue
  | ImagesValue
  | TensorValue
  | TensorsValue
  | RegionsValue
  | BoxesValue
  | ClassesValue
  | TextsValue
  | MaskValue
  | TextLinesValue
  | RawValue;

export type ValueKind = Value['kind'];

export function tensorValue(t: Tensor): TensorValue {
  return { kind: 'tensor', type: t.type, dims: t.dims, data: t.data };
}
