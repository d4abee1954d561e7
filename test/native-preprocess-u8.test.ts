/**
 * preprocess with dtype u8: the kernel writes pixels itself (for GPU variants that normalise in the
 * model). Contracts: native and portable write the same bytes; native u8 is exactly the native
 * float32 output as a Uint8ClampedArray stores it (the float plane the runner rounded before); the
 * portable u8 is the float32 value rounded the same way; an unknown dtype is refused with a code
 * (crops write u8 too: test/native-crop.test.ts).
 */
import { describe, expect, it } from 'vitest';
import {
  cropBatchSync,
  type ImageInput,
  type PixelFormat,
  type PreprocessOptions,
  preprocessSync,
} from '../native/index.js';
import { NativeError } from '../spec/errors.js';
import { syncCodeOf } from './helpers/errors.js';
import { nativeExpected, onBoth, onPortable, randomBytes } from './native-helpers.js';

const CH: Record<PixelFormat, number> = { rgb: 3, rgba: 4, bgr: 3, bgra: 4, gray: 1 };

function image(width: number, height: number, format: PixelFormat, seed: number, extraStride = 0): ImageInput {
  const stride = width * CH[format] + extraStride;
  return { data: randomBytes(stride * height, seed), width, height, format, stride };
}

/** Smooth gradients: many values land near x.5 after resampling, where double and float sums part. */
function gradient(width: number, height: number): ImageInput {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = x & 255;
      data[i + 1] = (x + y) & 255;
      data[i + 2] = (3 * y) & 255;
    }
  return { data, width, height, format: 'rgb' };
}

const u8 = { dtype: 'u8', scale: 1 } as const;
const cases: [string, ImageInput, PreprocessOptions][] = [
  [
    '1080p rgb -> 320² letterbox nhwc (the detector GPU variant)',
    image(1920, 1080, 'rgb', 1),
    { resize: { mode: 'letterbox', width: 320, height: 320 }, layout: 'nhwc', ...u8 },
  ],
  [
    '1080p gradient -> 960 limit-side nhwc bilinear (the OCR det GPU variant)',
    gradient(1920, 1080),
    { resize: { mode: 'limitSide', limit: 960, multiple: 32 }, layout: 'nhwc', interpolation: 'bilinear', ...u8 },
  ],
  [
    'gradient upscaled 7/3 (non-dyadic bilinear weights)',
    gradient(93, 61),
    { resize: { mode: 'stretch', width: 217, height: 142 }, ...u8 },
  ],
  [
    'rgba odd stride, area shrink, nchw',
    image(301, 207, 'rgba', 2, 5),
    { resize: { mode: 'stretch', width: 97, height: 53 }, interpolation: 'area', ...u8 },
  ],
  [
    'bgr to rgb, auto, letterbox top-left, pad 0',
    image(640, 480, 'bgr', 3),
    { resize: { mode: 'letterbox', width: 256, height: 256, padPixel: 0, anchor: 'topLeft' }, layout: 'nhwc', ...u8 },
  ],
  [
    'gray, area',
    image(500, 333, 'gray', 4, 3),
    { resize: { mode: 'stretch', width: 123, height: 77 }, interpolation: 'area', ...u8 },
  ],
  [
    'scale 2 and a mean: clamped at 0 and 255',
    image(120, 90, 'rgb', 5),
    {
      resize: { mode: 'stretch', width: 71, height: 50 },
      interpolation: 'area',
      dtype: 'u8',
      scale: 2,
      mean: [60, 0, 200],
      std: 1,
    },
  ],
];

describe('preprocess u8', () => {
  it('writes a Uint8Array of the f32 shape, pixel values, padding in pixels', () => {
    const img = image(64, 32, 'rgb', 6);
    const r = onPortable(() =>
      preprocessSync(img, { resize: { mode: 'letterbox', width: 48, height: 48, padPixel: 7 }, layout: 'nhwc', ...u8 }),
    );
    expect(r.data).toBeInstanceOf(Uint8Array);
    expect(r.dims).toEqual([1, 48, 48, 3]);
    expect(r.pad).toEqual({ x: 0, y: 12 });
    expect([...r.data.subarray(0, 3)]).toEqual([7, 7, 7]);
  });

  it('portable: the float32 value of the same kernel, rounded half to even and clamped', () => {
    // Area shrinks: that path is float32-exact on both dtypes, so the rounding is the only difference.
    for (const [, img, o] of cases.filter(([, , o]) => o.interpolation === 'area')) {
      const f = onPortable(() => preprocessSync(img, { ...o, dtype: 'f32' }));
      const b = onPortable(() => preprocessSync(img, o));
      expect(Buffer.from(b.data.buffer)).toEqual(Buffer.from(Uint8ClampedArray.from(f.data).buffer));
    }
  });

  it('writes at an offset of a caller batch and refuses an array of another type', () => {
    const out = new Uint8Array(2 * 16 * 16 * 3).fill(9);
    const o: PreprocessOptions = { resize: { mode: 'stretch', width: 16, height: 16 }, layout: 'nhwc', ...u8 };
    onPortable(() => preprocessSync(image(30, 20, 'rgb', 7), { ...o, out, outOffset: 768 }));
    expect(out.subarray(0, 768).every((v) => v === 9)).toBe(true);
    expect(
      syncCodeOf(() => preprocessSync(image(30, 20, 'rgb', 7), { ...o, out: new Float32Array(768) }), NativeError),
    ).toBe('E_NATIVE_ARGUMENT');
  });

  it('an unknown dtype is refused with a code, by crops too', () => {
    const img = image(40, 30, 'rgb', 8);
    const quad = [2, 2, 30, 2, 30, 12, 2, 12];
    expect(syncCodeOf(() => cropBatchSync(img, quad, { height: 16, dtype: 'u16' as 'f32' }), NativeError)).toBe(
      'E_NATIVE_ARGUMENT',
    );
  });
});

describe.skipIf(!nativeExpected)('preprocess u8 native vs portable', () => {
  for (const [name, img, o] of cases) {
    it(`same bytes: ${name}`, () => {
      const { native, portable } = onBoth(() => preprocessSync(img, { ...o, threads: 3 }));
      expect(native.data).toBeInstanceOf(Uint8Array);
      expect(native.dims).toEqual(portable.dims);
      expect(Buffer.from(native.data.buffer).equals(Buffer.from(portable.data.buffer))).toBe(true);
    });
  }

  it('native u8 is the native f32 plane rounded as the runner rounded it before (no behaviour change)', () => {
    for (const [, img, o] of cases) {
      const { native: f } = onBoth(() => preprocessSync(img, { ...o, dtype: 'f32' }));
      const { native: b } = onBoth(() => preprocessSync(img, o));
      expect(Buffer.from(b.data.buffer).equals(Buffer.from(Uint8ClampedArray.from(f.data).buffer))).toBe(true);
    }
  });
});
