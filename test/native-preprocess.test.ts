/**
 * Fused pre-processing: portable kernel vs a straightforward per-pixel reference (double
 * precision, weights written out per axis), and native vs portable. Tolerances: reference vs
 * kernel 1e-4 (float32 weights and sums), native vs portable 2e-5 on values of magnitude ≤ ~3,
 * f16 within one half-float ulp.
 */
import { describe, expect, it } from 'vitest';
import {
  type ImageInput,
  type PixelFormat,
  type PreprocessOptions,
  type PreprocessResult,
  preprocess,
  preprocessSync,
  type ResizeSpec,
} from '../native/index.js';
import { halfMaxDiff, maxAbsDiff, nativeExpected, onBoth, onPortable, randomBytes } from './native-helpers.js';

const CH: Record<PixelFormat, number> = { rgb: 3, rgba: 4, bgr: 3, bgra: 4, gray: 1 };
const RGB: Record<PixelFormat, number[]> = {
  rgb: [0, 1, 2],
  rgba: [0, 1, 2],
  bgr: [2, 1, 0],
  bgra: [2, 1, 0],
  gray: [0, 0, 0],
};

function image(width: number, height: number, format: PixelFormat, seed: number, extraStride = 0): ImageInput {
  const stride = width * CH[format] + extraStride;
  return { data: randomBytes(stride * height, seed), width, height, format, stride };
}

/** Weight of source index i for output index o of one axis (straight from the definitions). */
function weight(kind: 'bilinear' | 'area', o: number, i: number, src: number, dst: number): number {
  const s = src / dst;
  if (kind === 'area') {
    const lo = Math.max(o * s, i),
      hi = Math.min((o + 1) * s, i + 1);
    return hi > lo ? (hi - lo) / s : 0;
  }
  const c = Math.max((o + 0.5) * s - 0.5, 0);
  const i0 = Math.min(Math.floor(c), src - 1);
  if (i0 === src - 1) return i === i0 ? 1 : 0;
  const f = c - i0;
  return i === i0 ? 1 - f : i === i0 + 1 ? f : 0;
}

function kindOf(interp: string, src: number, dst: number): 'bilinear' | 'area' {
  const s = src / dst;
  if (interp === 'area') return s > 1 ? 'area' : 'bilinear';
  if (interp === 'auto') return s >= 2 ? 'area' : 'bilinear';
  return 'bilinear';
}

/** Reference output for a kernel result's geometry (resized region and padding come from `r`). */
function reference(img: ImageInput, o: PreprocessOptions, r: PreprocessResult): Float64Array {
  const c = CH[img.format];
  const stride = img.stride ?? img.width * c;
  const nhwc = o.layout === 'nhwc';
  const K = img.format === 'gray' ? 1 : 3;
  const [H, W] = nhwc ? [r.dims[1], r.dims[2]] : [r.dims[2], r.dims[3]];
  const { width: rw, height: rh } = r.resized;
  const order = o.channelOrder === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  const src = order.map((k) => RGB[img.format][k]);
  const scale = o.scale ?? 1 / 255;
  const mean = [0, 1, 2].map((k) => (Array.isArray(o.mean) ? o.mean[k] : (o.mean ?? 0)));
  const std = [0, 1, 2].map((k) => (Array.isArray(o.std) ? o.std[k] : (o.std ?? 1)));
  const padPixel = o.resize.mode === 'letterbox' ? (o.resize.padPixel ?? 114) : 0;
  const kx = kindOf(o.interpolation ?? 'auto', img.width, rw),
    ky = kindOf(o.interpolation ?? 'auto', img.height, rh);
  const out = new Float64Array(W * H * K);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      for (let k = 0; k < K; k++) {
        const ox = x - r.pad.x,
          oy = y - r.pad.y;
        let v: number;
        if (ox < 0 || oy < 0 || ox >= rw || oy >= rh) v = (padPixel as number) * scale;
        else {
          v = 0;
          for (let j = 0; j < img.height; j++) {
            const wy = weight(ky, oy, j, img.height, rh);
            if (!wy) continue;
            for (let i = 0; i < img.width; i++) {
              const wx = weight(kx, ox, i, img.width, rw);
              if (wx) v += wy * wx * img.data[j * stride + i * c + src[k]];
            }
          }
          v *= scale;
        }
        out[nhwc ? (y * W + x) * K + k : k * W * H + y * W + x] = (v - mean[k]) / std[k];
      }
    }
  }
  return out;
}

const cases: [string, ImageInput, PreprocessOptions][] = [
  ['rgb letterbox wide', image(97, 31, 'rgb', 1), { resize: { mode: 'letterbox', width: 64, height: 64 } }],
  [
    'rgba stretch odd stride',
    image(41, 37, 'rgba', 2, 3),
    { resize: { mode: 'stretch', width: 20, height: 30 }, interpolation: 'bilinear' },
  ],
  [
    'bgr area shrink, bgr out, mean/std',
    image(120, 90, 'bgr', 3, 1),
    {
      resize: { mode: 'stretch', width: 23, height: 17 },
      interpolation: 'area',
      channelOrder: 'bgr',
      mean: [0.485, 0.456, 0.406],
      std: [0.229, 0.224, 0.225],
    },
  ],
  [
    'bgra auto (area x, bilinear y) nhwc',
    image(200, 20, 'bgra', 4),
    { resize: { mode: 'stretch', width: 40, height: 15 }, layout: 'nhwc' },
  ],
  ['gray limitSide', image(70, 45, 'gray', 5, 7), { resize: { mode: 'limitSide', limit: 48, multiple: 16 } }],
  ['1x1 image letterbox', image(1, 1, 'rgb', 6), { resize: { mode: 'letterbox', width: 8, height: 5, padPixel: 0 } }],
  [
    '1x300 extreme aspect',
    image(1, 300, 'rgba', 7),
    { resize: { mode: 'letterbox', width: 32, height: 32, anchor: 'topLeft' } },
  ],
  ['300x1 extreme aspect', image(300, 1, 'rgb', 8, 5), { resize: { mode: 'letterbox', width: 32, height: 32 } }],
  [
    'upscale 3x5 -> 17x11',
    image(3, 5, 'rgb', 9),
    { resize: { mode: 'stretch', width: 17, height: 11 }, interpolation: 'area', scale: 1, mean: 100, std: 50 },
  ],
];

describe('preprocess vs reference', () => {
  for (const [name, img, o] of cases) {
    it(name, () => {
      const r = onPortable(() => preprocessSync(img, o));
      const ref = reference(img, o, r);
      expect(r.data.length).toBe(ref.length);
      expect(maxAbsDiff(r.data as Float32Array, ref)).toBeLessThan(1e-4);
    });
  }

  it('letterbox geometry: centred, scale and padding returned for the inverse mapping', () => {
    const r = onPortable(() =>
      preprocessSync(image(1920, 1080, 'rgba', 10), { resize: { mode: 'letterbox', width: 640, height: 640 } }),
    );
    expect(r.dims).toEqual([1, 3, 640, 640]);
    expect(r.resized).toEqual({ width: 640, height: 360 });
    expect(r.pad).toEqual({ x: 0, y: 140 });
    expect(r.scale.x).toBeCloseTo(1 / 3, 12);
    expect(r.data[0]).toBeCloseTo(114 / 255, 6);
  });

  it('limitSide rounds each side to the multiple (PaddleOCR det resize)', () => {
    const r = onPortable(() =>
      preprocessSync(image(1000, 500, 'rgb', 11), {
        resize: { mode: 'limitSide', limit: 960 },
        interpolation: 'bilinear',
      }),
    );
    expect(r.dims).toEqual([1, 3, 480, 960]);
    const s = onPortable(() =>
      preprocessSync(image(10, 7, 'rgb', 12), { resize: { mode: 'limitSide', limit: 64, side: 'min', multiple: 32 } }),
    );
    expect(s.dims).toEqual([1, 3, 64, 96]);
  });

  it('limitSide padTo: each side padded (bottom, right) to the smallest size that holds it, native and portable alike; bad sizes are E_NATIVE_ARGUMENT', () => {
    const img = image(1000, 500, 'rgb', 13);
    const o: PreprocessOptions & { resize: ResizeSpec & { mode: 'limitSide' } } = {
      resize: { mode: 'limitSide', limit: 960, padTo: [320, 544, 736, 960], padPixel: [1, 2, 3] },
      interpolation: 'bilinear',
      scale: 1,
    };
    const plain = preprocessSync(img, { ...o, resize: { mode: 'limitSide', limit: 960 } });
    const [native, portable] = [preprocessSync(img, o), onPortable(() => preprocessSync(img, o))];
    for (const r of [native, portable]) {
      // 960×480 resized, padded to 960×544; the plane's top-left is the unpadded tensor (within the
      // portable twin's rounding)
      expect(r.dims).toEqual([1, 3, 544, 960]);
      expect(r.resized).toEqual({ width: 960, height: 480 });
      expect(r.pad).toEqual({ x: 0, y: 0 });
      for (let c = 0; c < 3; c++)
        for (let y = 0; y < 544; y += 17) {
          const row = r.data.subarray((c * 544 + y) * 960, (c * 544 + y + 1) * 960);
          if (y < 480)
            expect(
              maxAbsDiff(
                row as Float32Array,
                plain.data.subarray((c * 480 + y) * 960, (c * 480 + y + 1) * 960) as Float32Array,
              ),
            ).toBeLessThan(1e-3);
          else expect(row.every((v) => v === c + 1)).toBe(true);
        }
    }
    // a side above every size keeps its own
    expect(preprocessSync(img, { ...o, resize: { ...o.resize, padTo: [320] } }).dims).toEqual([1, 3, 480, 960]);
    for (const padTo of [[544, 320], [0, 320], [1.5], 'x', Array.from({ length: 65 }, (_, i) => i + 1)])
      expect(() => preprocessSync(img, { ...o, resize: { ...o.resize, padTo: padTo as never } })).toThrow(
        expect.objectContaining({ code: 'E_NATIVE_ARGUMENT' }),
      );
  });

  it('alloc: the output comes from the caller, asked for at exactly the planned type and size; anything else is E_NATIVE_ARGUMENT', async () => {
    const img = image(30, 20, 'rgb', 14);
    const resize = { mode: 'letterbox', width: 16, height: 16 } as const;
    const asked: [string, number][] = [];
    const mine = new Uint8Array(3 * 16 * 16);
    const r = await preprocess(img, {
      resize,
      dtype: 'u8',
      alloc: ((d: string, n: number) => (asked.push([d, n]), mine)) as never,
    });
    expect(asked).toEqual([['u8', 768]]);
    expect(r.data).toBe(mine);
    expect(r.data).toEqual(preprocessSync(img, { resize, dtype: 'u8' }).data);
    for (const wrong of [new Uint8Array(767), new Float32Array(768)])
      expect(() => preprocessSync(img, { resize, dtype: 'u8', alloc: (() => wrong) as never })).toThrow(
        expect.objectContaining({ code: 'E_NATIVE_ARGUMENT' }),
      );
  });

  it('writes into a batch tensor at an offset and leaves the rest alone', () => {
    const out = new Float32Array(2 * 3 * 16 * 16).fill(-7);
    onPortable(() =>
      preprocessSync(image(30, 20, 'rgb', 13), {
        resize: { mode: 'letterbox', width: 16, height: 16 },
        out,
        outOffset: 3 * 16 * 16,
      }),
    );
    expect(out.subarray(0, 768).every((v) => v === -7)).toBe(true);
    expect(out.subarray(768).some((v) => v === -7)).toBe(false);
  });
});

describe.skipIf(!nativeExpected)('preprocess native vs portable', () => {
  for (const [name, img, o] of cases) {
    it(name, () => {
      const { native, portable } = onBoth(() => preprocessSync(img, { ...o, threads: 2 }));
      expect(native.dims).toEqual(portable.dims);
      expect(maxAbsDiff(native.data, portable.data)).toBeLessThan(2e-5);
    });
  }

  it('1080p RGBA -> 640x640 letterbox, f32 NCHW and f16 NHWC', () => {
    const img = image(1920, 1080, 'rgba', 14);
    for (const interpolation of ['bilinear', 'auto'] as const) {
      const o: PreprocessOptions = { resize: { mode: 'letterbox', width: 640, height: 640 }, interpolation };
      const f32 = onBoth(() => preprocessSync(img, o));
      expect(maxAbsDiff(f32.native.data, f32.portable.data)).toBeLessThan(2e-5);
      const f16 = onBoth(() =>
        preprocessSync(img, { ...o, dtype: 'f16', layout: 'nhwc', mean: [0.5, 0.5, 0.5], std: 0.5 }),
      );
      expect(f16.native.data).toBeInstanceOf(Uint16Array);
      // One half-float ulp at |v| <= 1 is <= 2^-10.
      expect(halfMaxDiff(f16.native.data, f16.portable.data)).toBeLessThanOrEqual(2 ** -10);
    }
  });

  it('same output for 1, 2 and 5 threads (deterministic)', () => {
    const img = image(333, 251, 'bgr', 15, 1);
    const run = (threads: number) =>
      onBoth(() => preprocessSync(img, { resize: { mode: 'letterbox', width: 160, height: 160 }, threads })).native
        .data;
    const one = run(1);
    expect(run(2)).toEqual(one);
    expect(run(5)).toEqual(one);
  });
});
