/**
 * The normalisation params `preprocess` and `crop-batch` share (the `normalize` op's names and
 * defaults), their checks, and the kernels' view of an image.
 */
import type { ImageInput } from '../../native/index.js';
import { Type } from '../../spec/typebox-lite.js';
import type { OpRun } from './registry.js';
import type { ImageValue } from './values.js';

const Opt = Type.Optional;

/** Normalisation params shared by both ops (the `normalize` op's names and defaults). */
export const NormParams = {
  scale: Opt(Type.Number()),
  mean: Opt(Type.Array(Type.Number(), { minItems: 1, maxItems: 3 })),
  std: Opt(Type.Array(Type.Number({ exclusiveMinimum: 0 }), { minItems: 1, maxItems: 3 })),
  layout: Opt(Type.Union([Type.Literal('nchw'), Type.Literal('nhwc')])),
  channelOrder: Opt(Type.Union([Type.Literal('rgb'), Type.Literal('bgr')])),
  dtype: Opt(Type.Union([Type.Literal('float32'), Type.Literal('float16'), Type.Literal('uint8')])),
};
export interface NormP {
  scale?: number;
  mean?: number[];
  std?: number[];
  layout?: 'nchw' | 'nhwc';
  channelOrder?: 'rgb' | 'bgr';
  dtype?: 'float32' | 'float16' | 'uint8';
}

/**
 * uint8: the pixels as they are (for a model that normalises its input itself); scale, mean and std
 * do not apply. Both kernels write them themselves (`u8`: no float32 tensor, no pass over it).
 */
export function norm(p: NormP) {
  const raw = p.dtype === 'uint8';
  return {
    scale: raw ? 1 : (p.scale ?? 1 / 255),
    mean: raw ? undefined : p.mean,
    std: raw ? undefined : p.std,
    layout: p.layout ?? 'nchw',
    channelOrder: p.channelOrder ?? 'rgb',
    dtype: p.dtype === 'float16' ? 'f16' : raw ? 'u8' : 'f32',
  } as const;
}

/**
 * mean and std in the other scale's units: a 0-255 mean at scale 1/255 puts every value near −500,
 * a 0-1 std beside a 0-255 mean at scale 1 multiplies them by ~250; the model runs and reads
 * garbage. A mean above the brightest scaled pixel, or a std below one pixel level, is never a
 * data set's: refused, saying which scale goes with them.
 */
export function unitsProblem(p: Pick<NormP, 'scale' | 'mean' | 'std' | 'dtype'>): string | undefined {
  const scale = p.scale ?? 1 / 255;
  if (p.dtype === 'uint8' || !(scale > 0)) return undefined;
  const top = 255 * scale;
  const at = `at scale ${p.scale === undefined ? '1/255 (the default)' : scale}`;
  const m = p.mean?.find((v) => v > top * (1 + 1e-6));
  if (m !== undefined)
    return `mean ${m} is above the brightest pixel ${at}, ${+top.toPrecision(6)}: a mean in 0-255 units goes with scale 1`;
  const s = p.std?.find((v) => v < (top / 255) * (1 - 1e-6));
  if (s !== undefined)
    return `std ${s} is below one pixel level ${at}, ${+(top / 255).toPrecision(6)}: a std in 0-1 units goes with scale 1/255`;
  return undefined;
}

/** mean/std hold one value for all channels or one per channel (the kernels take 1 or 3 channels). */
export function normProblem(p: NormP): string | undefined {
  if (p.dtype === 'uint8') return undefined;
  const units = unitsProblem(p);
  if (units) return units;
  for (const [k, a] of [
    ['mean', p.mean],
    ['std', p.std],
  ] as const)
    if (a && a.length !== 1 && a.length !== 3) return `${k} holds ${a.length} values: give 1, or 1 per channel (3)`;
  return undefined;
}

/** Fails unless mean/std fit the image's channels (a grey image's 3 means would be read as its first). */
export function checkNorm(p: NormP, img: ImageValue, x: OpRun): void {
  if (p.dtype === 'uint8') return;
  const c = img.channels === 1 ? 1 : 3;
  for (const [k, a] of [
    ['mean', p.mean],
    ['std', p.std],
  ] as const)
    if (a && a.length !== 1 && a.length !== c)
      x.fail(`${k} has ${a.length} values for a ${img.channels}-channel image`, {
        [k]: a.length,
        channels: img.channels,
      });
}

export function imageInput(img: ImageValue, x: OpRun): ImageInput {
  if (img.channels !== 1 && img.channels !== 3)
    x.fail(`expected a 1- or 3-channel image, got ${img.channels} channels`);
  return { data: img.data, width: img.width, height: img.height, format: img.channels === 1 ? 'gray' : 'rgb' };
}

export const tensorType = (p: NormP) => p.dtype ?? 'float32';
/** Bytes per element the kernels write. */
export const elementBytes = (p: NormP) => (p.dtype === 'uint8' ? 1 : p.dtype === 'float16' ? 2 : 4);
