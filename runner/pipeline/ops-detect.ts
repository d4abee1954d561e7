/**
 * Detector and segmenter heads over the native kernels: `detect-decode` (YOLO-style output →
 * class-aware NMS → boxes in original image pixels) and `segment-argmax` (score map → label mask,
 * optionally mapped back to the original image).
 */

import { decodeDetections, segmentArgmax } from '../../native/index.js';
import { Type } from '../../spec/typebox-lite.js';
import { floats, frameOf, hasNaN, LabelParams, labelHooks, labelsOf, oneChannelLabels } from './ops-post.js';
import { defineOp, Name } from './registry.js';

const Opt = Type.Optional;

defineOp({
  op: 'detect-decode',
  stage: 'post',
  summary:
    'Decodes a YOLO-style detector output ([1, 4+C, A] anchor-free or [1, A, 5+C] with objectness), class-aware (or agnostic) NMS, boxes mapped back through the letterbox to the original image.',
  params: Type.Object(
    {
      input: Name,
      output: Name,
      image: Opt(Name),
      format: Opt(Type.Union([Type.Literal('anchor-free'), Type.Literal('objectness')])),
      box: Opt(Type.Union([Type.Literal('cxcywh'), Type.Literal('xyxy')])),
      layout: Opt(Type.Union([Type.Literal('attrs-first'), Type.Literal('anchors-first')])),
      sigmoid: Opt(Type.Boolean()),
      scoreThreshold: Opt(Type.Number()),
      iouThreshold: Opt(Type.Number({ minimum: 0, maximum: 1 })),
      agnostic: Opt(Type.Boolean()),
      preTopK: Opt(Type.Integer({ minimum: 0 })),
      maxOutput: Opt(Type.Integer({ minimum: 0 })),
      // coordinates are fractions of the model input's width and height, not pixels
      normalized: Opt(Type.Boolean()),
      ...LabelParams,
    },
    { additionalProperties: false },
  ),
  reads: (p) => [p.input, ...(p.image ? [p.image] : [])],
  writes: (p) => [p.output],
  assets: labelHooks.assets,
  check: (p) =>
    p.normalized && !p.image
      ? 'normalized needs image: the model input whose size the fractions are of'
      : labelHooks.check(p),
  async run(p, x) {
    const t = x.get(p.input, 'tensor');
    const dims = t.dims.length === 2 ? [1, ...t.dims] : t.dims;
    if (dims.length !== 3)
      x.fail(`expected a [1, attributes, anchors] or [1, anchors, attributes] tensor, got [${t.dims.join(', ')}]`);
    // the boxes of a batch would come out as one list, the images' detections mixed (0: no image, no boxes)
    if (dims[0] > 1)
      x.fail(`a batch of ${dims[0]} heads: detect-decode decodes one image's, [1, …] (infer a batch of 1)`, {
        dims: [...t.dims],
      });
    // the default guesses attributes on the shorter axis; a square head (YOLOv8 at 64×64: 84 × 84) has none
    if (!p.layout && dims[1] === dims[2])
      x.fail(`a ${dims[1]}×${dims[2]} head could be attributes × anchors or anchors × attributes: set layout`, {
        dims: [...t.dims],
      });
    const f = frameOf(p.image, x);
    const tr = f?.transform ?? (f && { scaleX: 1, scaleY: 1, offsetX: 0, offsetY: 0 });
    // fractions of the plane: (b × W − pad) / scale = (b − pad / W) / (scale / W)
    const [kx, ky] = p.normalized && f ? [f.width, f.height] : [1, 1];
    const r = await decodeDetections(floats(t, x), {
      dims: [...dims],
      ...(p.layout ? { layout: p.layout } : {}),
      format: p.format ?? 'anchor-free',
      box: p.box ?? 'cxcywh',
      sigmoid: p.sigmoid ?? false,
      scoreThreshold: p.scoreThreshold ?? 0.25,
      iouThreshold: p.iouThreshold ?? 0.45,
      agnostic: p.agnostic ?? false,
      ...(p.preTopK !== undefined ? { preTopK: p.preTopK } : {}),
      maxOutput: p.maxOutput ?? 300,
      ...(tr
        ? {
            letterbox: {
              scale: { x: tr.scaleX / kx, y: tr.scaleY / ky },
              pad: { x: tr.offsetX / kx, y: tr.offsetY / ky },
            },
          }
        : {}),
      ...(f ? { clip: { width: f.transform?.width ?? f.width, height: f.transform?.height ?? f.height } } : {}),
    });
    // a NaN in the detector's output that survived decoding has no place to report
    if (hasNaN(r.boxes) || hasNaN(r.scores)) x.fail('the detections hold NaN', { nan: true });
    const labels = await labelsOf(p, x);
    x.set(p.output, {
      kind: 'boxes',
      count: r.scores.length,
      boxes: r.boxes,
      scores: r.scores,
      classes: r.classes,
      ...(labels ? { labels } : {}),
    });
  },
});

defineOp({
  op: 'segment-argmax',
  stage: 'post',
  summary:
    'Per-pixel class of a segmentation score map ([1, C, H, W] or NHWC, softmax optional; one channel: class ids of an integer type, or probabilities above `threshold`) as a label mask; with `image`, mapped back to the original image (nearest, undoing the resize/letterbox).',
  params: Type.Object(
    {
      input: Name,
      output: Name,
      image: Opt(Name),
      layout: Opt(Type.Union([Type.Literal('nchw'), Type.Literal('nhwc')])),
      softmax: Opt(Type.Boolean()),
      // a one-channel probability map (a binary segmenter's sigmoid): pixels above it are class 1
      threshold: Opt(Type.Number()),
      ...LabelParams,
    },
    { additionalProperties: false },
  ),
  reads: (p) => [p.input, ...(p.image ? [p.image] : [])],
  writes: (p) => [p.output],
  ...labelHooks,
  async run(p, x) {
    const t = x.get(p.input, 'tensor');
    const d = t.dims.length === 3 ? [1, ...t.dims] : t.dims;
    if (d.length !== 4 || d[0] !== 1) x.fail(`expected a [1, C, H, W] (or NHWC) score map, got [${t.dims.join(', ')}]`);
    const nhwc = p.layout === 'nhwc';
    if (p.threshold !== undefined && (nhwc ? d[3] : d[1]) !== 1)
      x.fail(`threshold goes with a one-channel map, not [${t.dims.join(', ')}]`, { dims: [...t.dims] });
    // one channel: class ids (a model's own ArgMax) or a probability map, not scores to take the best of
    const r = {
      labels:
        oneChannelLabels(t, nhwc ? d[3] : d[1], p.threshold, x) ??
        (
          await segmentArgmax(floats(t, x), {
            dims: [...d],
            layout: nhwc ? 'nhwc' : 'nchw',
            softmax: p.softmax ?? false,
          })
        ).labels,
    };
    const mh = nhwc ? d[1] : d[2],
      mw = nhwc ? d[2] : d[3];
    const f = frameOf(p.image, x);
    let width = mw,
      height = mh,
      data: Int32Array;
    if (!f) data = Int32Array.from(r.labels);
    else {
      // Original pixel centre → model-input plane → mask pixel (the mask may be smaller than the plane).
      const tr = f.transform ?? { scaleX: 1, scaleY: 1, offsetX: 0, offsetY: 0, width: f.width, height: f.height };
      width = tr.width;
      height = tr.height;
      // The mask is sized by the original image the transform names, not by the model's output.
      x.fits({ pixels: width * height, bytes: width * height * 4 }, `a ${width}×${height} label mask`);
      const kx = mw / f.width,
        ky = mh / f.height;
      const xs = new Int32Array(width);
      for (let u = 0; u < width; u++)
        xs[u] = Math.min(mw - 1, Math.max(0, Math.floor(((u + 0.5) * tr.scaleX + tr.offsetX) * kx)));
      data = new Int32Array(width * height);
      for (let v = 0; v < height; v++) {
        const row = Math.min(mh - 1, Math.max(0, Math.floor(((v + 0.5) * tr.scaleY + tr.offsetY) * ky))) * mw;
        for (let u = 0; u < width; u++) data[v * width + u] = r.labels[row + xs[u]];
      }
    }
    const labels = await labelsOf(p, x);
    x.set(p.output, { kind: 'mask', width, height, data, ...(labels ? { labels } : {}) });
  },
});
