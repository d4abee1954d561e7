/**
 * Grid table for raw anchor-based YOLO heads (YOLOv5 without its in-graph decode): 5 floats per
 * output row (gridX, gridY, stride, anchorW, anchorH), rows ordered level, anchor, y, x as YOLOv5
 * flattens its heads. Pass it as DecodeOptions.grid with sigmoid: true.
 */
import { fail, int } from '../validate.js';

export interface YoloGridOptions {
  inputWidth: number;
  inputHeight: number;
  strides: readonly number[];
  /** Per level: anchor sizes in pixels, [w0, h0, w1, h1, …]. */
  anchors: readonly (readonly number[])[];
}

export function yoloGrid(o: YoloGridOptions): Float32Array {
  if (o.strides.length !== o.anchors.length) fail('anchors', 'needs one anchor list per stride');
  const rows: number[] = [];
  o.strides.forEach((s, level) => {
    const stride = int(`strides[${level}]`, s, 1);
    const a = o.anchors[level];
    if (a.length === 0 || a.length % 2) fail(`anchors[${level}]`, 'must hold width, height pairs');
    const nx = Math.ceil(int('inputWidth', o.inputWidth, 1) / stride),
      ny = Math.ceil(int('inputHeight', o.inputHeight, 1) / stride);
    for (let k = 0; k < a.length; k += 2)
      for (let y = 0; y < ny; y++) for (let x = 0; x < nx; x++) rows.push(x, y, stride, a[k], a[k + 1]);
  });
  return Float32Array.from(rows);
}
