/**
 * The fused image → tensor op over the native kernel (native/index.ts): `preprocess` (resize +
 * normalise + layout in one pass, optionally padded to size buckets with the page's own size beside).
 */
import { preprocess, type ResizeSpec } from '../../native/index.js';
import { Type } from '../../spec/typebox-lite.js';
import { checkNorm, elementBytes, imageInput, NormParams, norm, normProblem, tensorType } from './norm-params.js';
import { resizePlan } from './ops-image.js';
import { defineOp, Name } from './registry.js';
import type { TensorValue } from './values.js';

const Opt = Type.Optional;

/** Per channel, the 8-bit pixel nearest to what `(v × scale − mean) / std` maps to 0. */
function zeroPixel(p: { mean?: number[]; scale?: number }): number[] {
  const m = p.mean ?? [0];
  const scale = p.scale ?? 1 / 255;
  return [0, 1, 2].map((k) => Math.min(255, Math.max(0, Math.round(m[m.length === 1 ? 0 : k] / scale))));
}

/** An int32 [1] tensor of one size. */
const sizeTensor = (v: number): TensorValue => ({ kind: 'tensor', type: 'int32', dims: [1], data: Int32Array.of(v) });

defineOp({
  op: 'preprocess',
  stage: 'pre',
  summary:
    'Image → tensor in one pass (native kernel): resize (fixed, letterbox, limit-side), normalise, channel order, NCHW/NHWC, float32/float16 (or uint8 pixels); the tensor maps its coordinates back to the image.',
  params: Type.Object(
    {
      input: Name,
      output: Name,
      mode: Type.Union([Type.Literal('fixed'), Type.Literal('letterbox'), Type.Literal('limit-side')]),
      width: Opt(Type.Integer({ minimum: 1, maximum: 32768 })),
      height: Opt(Type.Integer({ minimum: 1, maximum: 32768 })),
      limitSide: Opt(Type.Integer({ minimum: 1, maximum: 32768 })),
      limitType: Opt(Type.Union([Type.Literal('max'), Type.Literal('min')])),
      multipleOf: Opt(Type.Integer({ minimum: 1, maximum: 1024 })),
      // limit-side: each side padded (bottom, right) to the smallest of these that holds it
      padBuckets: Opt(Type.Array(Type.Integer({ minimum: 1, maximum: 32768 }), { minItems: 1, maxItems: 64 })),
      // the resized image's own height and width (int32 [1]), for a model that masks the padding
      heightsOutput: Opt(Name),
      widthsOutput: Opt(Name),
      padValue: Opt(Type.Integer({ minimum: 0, maximum: 255 })),
      interpolation: Opt(Type.Union([Type.Literal('bilinear'), Type.Literal('area'), Type.Literal('auto')])),
      ...NormParams,
    },
    { additionalProperties: false },
  ),
  reads: (p) => [p.input],
  writes: (p) => [p.output, ...[p.heightsOutput, p.widthsOutput].filter((n): n is string => n !== undefined)],
  check(p) {
    if ((p.mode === 'fixed' || p.mode === 'letterbox') && (!p.width || !p.height))
      return `mode ${p.mode} needs width and height`;
    if (p.padBuckets && p.mode !== 'limit-side') return 'padBuckets goes with mode limit-side';
    if (p.padBuckets?.some((b, i) => i > 0 && b <= p.padBuckets![i - 1])) return 'padBuckets must ascend';
    return normProblem(p);
  },
  size(p) {
    if (p.mode === 'limit-side') return undefined;
    const px = p.width! * p.height!;
    return { pixels: px, bytes: px * elementBytes(p), what: `a ${p.width}×${p.height} tensor plane` };
  },
  async run(p, x) {
    const img = x.get(p.input, 'image');
    checkNorm(p, img, x);
    // The plane the kernel will fill, sized as the resize op sizes it, checked before it is allocated.
    const plane = resizePlan(
      {
        mode: p.mode,
        width: p.width,
        height: p.height,
        limitSide: p.limitSide,
        limitType: p.limitType,
        multipleOf: p.multipleOf,
      },
      img.width,
      img.height,
    );
    const c = img.channels === 1 ? 1 : 3;
    const bucket = (v: number) => p.padBuckets?.find((b) => b >= v) ?? v;
    const [ow, oh] = [bucket(plane.ow), bucket(plane.oh)];
    x.fits(
      { pixels: ow * oh, bytes: ow * oh * c * elementBytes(p) },
      `a ${c}×${oh}×${ow} tensor from a ${img.width}×${img.height} image`,
    );
    let resize: ResizeSpec;
    if (p.mode === 'fixed') resize = { mode: 'stretch', width: p.width!, height: p.height! };
    else if (p.mode === 'letterbox')
      resize = { mode: 'letterbox', width: p.width!, height: p.height!, padPixel: p.padValue ?? 114 };
    else
      resize = {
        mode: 'limitSide',
        limit: p.limitSide ?? 960,
        side: p.limitType ?? 'max',
        multiple: p.multipleOf ?? 1,
        // the padding: padValue, else the pixel that normalises to 0 (what a model's own zero padding reads)
        ...(p.padBuckets ? { padTo: p.padBuckets, padPixel: p.padValue ?? zeroPixel(p) } : {}),
      };
    const r = await preprocess(imageInput(img, x), {
      resize,
      interpolation: p.interpolation ?? 'auto',
      ...norm(p),
      // the model's input usually dies with the run: a reused array (scratch.ts)
      alloc: x.scratch,
    });
    // Compose with an earlier transform so later ops map back to the decoded image.
    const t = img.transform;
    const transform = t
      ? {
          scaleX: r.scale.x * t.scaleX,
          scaleY: r.scale.y * t.scaleY,
          offsetX: r.pad.x + t.offsetX * r.scale.x,
          offsetY: r.pad.y + t.offsetY * r.scale.y,
          width: t.width,
          height: t.height,
        }
      : {
          scaleX: r.scale.x,
          scaleY: r.scale.y,
          offsetX: r.pad.x,
          offsetY: r.pad.y,
          width: img.width,
          height: img.height,
        };
    x.set(p.output, {
      kind: 'tensor',
      type: tensorType(p),
      dims: r.dims,
      data: r.data,
      transform,
    } as TensorValue);
    if (p.heightsOutput) x.set(p.heightsOutput, sizeTensor(r.resized.height));
    if (p.widthsOutput) x.set(p.widthsOutput, sizeTensor(r.resized.width));
  },
});
