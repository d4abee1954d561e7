/**
 * Batched region crop: exact identities (whole-image crop, quarter-turn crop), a reference that
 * solves each homography from its four corner pairs by Gaussian elimination, and native vs
 * portable (|Δ| ≤ 2e-5 on normalised values).
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type CropOptions, cropBatchSync, type ImageInput } from '../native/index.js';
import { halfMaxDiff, maxAbsDiff, nativeExpected, onBoth, onPortable, randomBytes, rng } from './native-helpers.js';

function rgb(width: number, height: number, seed: number, extraStride = 0): ImageInput {
  const stride = width * 3 + extraStride;
  return { data: randomBytes(stride * height, seed), width, height, format: 'rgb', stride };
}

/** Homography taking (0,0),(w,0),(w,h),(0,h) to the quad, from the 8x8 linear system. */
function solveHomography(q: number[], w: number, h: number): number[] {
  const src = [
    [0, 0],
    [w, 0],
    [w, h],
    [0, h],
  ];
  const A: number[][] = [];
  for (let k = 0; k < 4; k++) {
    const [x, y] = src[k],
      X = q[2 * k],
      Y = q[2 * k + 1];
    A.push([x, y, 1, 0, 0, 0, -x * X, -y * X, X]);
    A.push([0, 0, 0, x, y, 1, -x * Y, -y * Y, Y]);
  }
  for (let c = 0; c < 8; c++) {
    let p = c;
    for (let r = c + 1; r < 8; r++) if (Math.abs(A[r][c]) > Math.abs(A[p][c])) p = r;
    [A[c], A[p]] = [A[p], A[c]];
    for (let r = 0; r < 8; r++) {
      if (r === c) continue;
      const f = A[r][c] / A[c][c];
      for (let k = c; k < 9; k++) A[r][k] -= f * A[c][k];
    }
  }
  return [...A.map((row, i) => row[8] / row[i]), 1];
}

/** Reference crop of one region (width w, height H, s×s samples), values in pixel units × scale. */
function refRegion(img: ImageInput, q: number[], w: number, H: number, s: number): Float64Array {
  const h = solveHomography(q, w, H);
  const stride = img.stride!;
  const px = (x: number, y: number, c: number) => img.data[y * stride + x * 3 + c];
  const out = new Float64Array(3 * w * H);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        let acc = 0;
        for (let j = 0; j < s; j++) {
          for (let i = 0; i < s; i++) {
            const u = x + (i + 0.5) / s,
              v = y + (j + 0.5) / s;
            const d = h[6] * u + h[7] * v + h[8];
            const sx = Math.min(Math.max((h[0] * u + h[1] * v + h[2]) / d - 0.5, 0), img.width - 1);
            const sy = Math.min(Math.max((h[3] * u + h[4] * v + h[5]) / d - 0.5, 0), img.height - 1);
            const x0 = Math.floor(sx),
              y0 = Math.floor(sy),
              fx = sx - x0,
              fy = sy - y0;
            const x1 = Math.min(x0 + 1, img.width - 1),
              y1 = Math.min(y0 + 1, img.height - 1);
            acc +=
              (1 - fy) * ((1 - fx) * px(x0, y0, c) + fx * px(x1, y0, c)) +
              fy * ((1 - fx) * px(x0, y1, c) + fx * px(x1, y1, c));
          }
        }
        out[c * w * H + y * w + x] = acc / (s * s) / 255;
      }
    }
  }
  return out;
}

function region(data: Float32Array | Uint16Array | Uint8Array, dims: number[], r: number, w: number): number[] {
  const [, C, H, W] = dims;
  const out: number[] = [];
  for (let c = 0; c < C; c++)
    for (let y = 0; y < H; y++) for (let x = 0; x < w; x++) out.push(data[((r * C + c) * H + y) * W + x]);
  return out;
}

describe('cropBatch', () => {
  it('a quad on the image border at native size reproduces the image exactly', () => {
    const img = rgb(23, 11, 1, 2);
    const r = onPortable(() => cropBatchSync(img, [0, 0, 23, 0, 23, 11, 0, 11], { height: 11, scale: 1 }));
    expect(r.dims).toEqual([1, 3, 11, 23]);
    const expected: number[] = [];
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 11; y++) for (let x = 0; x < 23; x++) expected.push(img.data[y * img.stride! + x * 3 + c]);
    expect(maxAbsDiff(r.data, expected)).toBeLessThan(1e-3);
  });

  it('a quarter-turn quad gives the rotated image', () => {
    const img = rgb(9, 6, 2);
    // TL=(9,0) TR=(9,6) BR=(0,6) BL=(0,0): output (x, y) reads source column 8 - y, row x.
    const r = onPortable(() => cropBatchSync(img, [9, 0, 9, 6, 0, 6, 0, 0], { height: 9, scale: 1 }));
    expect(r.dims).toEqual([1, 3, 9, 6]);
    for (let y = 0; y < 9; y++)
      for (let x = 0; x < 6; x++)
        expect(Math.abs(r.data[y * 6 + x] - img.data[x * img.stride! + (8 - y) * 3])).toBeLessThan(1e-3);
  });

  it('rotated and perspective quads match the reference; batch padded to the widest', () => {
    const img = rgb(160, 120, 3, 1);
    const r = rng(4);
    const quads: number[] = [];
    for (let k = 0; k < 6; k++) {
      const cx = 30 + r() * 100,
        cy = 30 + r() * 60,
        a = (r() - 0.5) * 1.2,
        w = 20 + r() * 60,
        h = 8 + r() * 20;
      const ca = Math.cos(a),
        sa = Math.sin(a);
      for (const [dx, dy] of [
        [-w / 2, -h / 2],
        [w / 2, -h / 2],
        [w / 2, h / 2],
        [-w / 2, h / 2],
      ]) {
        quads.push(cx + dx * ca - dy * sa + (r() - 0.5) * 4, cy + dx * sa + dy * ca + (r() - 0.5) * 4);
      }
    }
    const o: CropOptions = { height: 16, maxWidth: 200, padValue: -1 };
    const res = onPortable(() => cropBatchSync(img, quads, o));
    const [n, , H, W] = res.dims;
    expect(n).toBe(6);
    expect(W).toBe(Math.max(...res.widths));
    for (let k = 0; k < 6; k++) {
      const q = quads.slice(8 * k, 8 * k + 8);
      const wq = Math.max(Math.hypot(q[2] - q[0], q[3] - q[1]), Math.hypot(q[4] - q[6], q[5] - q[7]));
      const hq = Math.max(Math.hypot(q[6] - q[0], q[7] - q[1]), Math.hypot(q[4] - q[2], q[5] - q[3]));
      const w = Math.ceil((16 * wq) / hq);
      expect(res.widths[k]).toBe(w);
      const s = Math.max(1, Math.min(4, Math.round(Math.max(hq / 16, wq / w)))); // samples per axis: the shrink factor, rounded
      expect(maxAbsDiff(region(res.data, res.dims, k, w), refRegion(img, q, w, H, s))).toBeLessThan(1e-4);
      // Padding right of the region.
      for (let x = w; x < W; x++) expect(res.data[k * 3 * H * W + x]).toBe(-1);
    }
  });

  it('tall regions are read rotated when verticalRatio is set', () => {
    const img = rgb(40, 100, 5);
    const tall = [10, 5, 20, 5, 20, 95, 10, 95];
    const r = onPortable(() => cropBatchSync(img, tall, { height: 8, verticalRatio: 1.5 }));
    expect(r.rotated[0]).toBe(1);
    expect(r.widths[0]).toBe(Math.ceil((8 * 90) / 10));
    const plain = onPortable(() => cropBatchSync(img, tall, { height: 8 }));
    expect(plain.rotated[0]).toBe(0);
    expect(plain.widths[0]).toBe(1);
  });

  it('degenerate and empty inputs: point quad, zero regions, fixed width squeezes', () => {
    const img = rgb(5, 5, 6);
    const p = onPortable(() => cropBatchSync(img, [2, 2, 2, 2, 2, 2, 2, 2], { height: 4, minWidth: 3 }));
    expect(p.widths[0]).toBe(3);
    expect(Array.from(p.data).every(Number.isFinite)).toBe(true);
    const none = onPortable(() => cropBatchSync(img, [], { height: 4 }));
    expect(none.dims[0]).toBe(0);
    expect(none.data.length).toBe(0);
    const fixed = onPortable(() => cropBatchSync(img, [0, 0, 5, 0, 5, 1, 0, 1], { height: 4, width: 8 }));
    expect(fixed.dims).toEqual([1, 3, 4, 8]);
    expect(fixed.widths[0]).toBe(8);
  });
});

describe.skipIf(!nativeExpected)('cropBatch native vs portable', () => {
  it('random quads, f32 NCHW / f16 NHWC, gray and bgra sources', () => {
    const r = rng(7);
    const quads: number[] = [];
    for (let i = 0; i < 40; i++) quads.push(r() * 300 - 20);
    for (const format of ['rgb', 'bgra', 'gray'] as const) {
      const ch = format === 'gray' ? 1 : format === 'rgb' ? 3 : 4;
      const img: ImageInput = {
        data: randomBytes((257 * ch + 3) * 199, 8),
        width: 257,
        height: 199,
        format,
        stride: 257 * ch + 3,
      };
      const o: CropOptions = { height: 32, maxWidth: 320, verticalRatio: 1.5, mean: 0.5, std: 0.5, threads: 2 };
      const f32 = onBoth(() => cropBatchSync(img, quads, o));
      expect(f32.native.widths).toEqual(f32.portable.widths);
      expect(maxAbsDiff(f32.native.data, f32.portable.data)).toBeLessThan(2e-5);
      const f16 = onBoth(() => cropBatchSync(img, quads, { ...o, dtype: 'f16', layout: 'nhwc' }));
      // One half-float ulp at |v| <= 1 is <= 2^-10.
      expect(halfMaxDiff(f16.native.data, f16.portable.data)).toBeLessThanOrEqual(2 ** -10);
    }
  });
});

describe.skipIf(!nativeExpected)('cropBatch upright regions (rows interpolated once, kernels/crop.cc)', () => {
  it('every corner order of an upright rectangle, enlarged and shrunk, in one batch: as portable, and a half turn is the crop turned', () => {
    const img = rgb(97, 61, 5, 7);
    const rect = [6.25, 4.5, 90.5, 4.5, 90.5, 33.75, 6.25, 33.75];
    const turn = (q: number[], k: number) => Array.from({ length: 8 }, (_, i) => q[(i + 2 * k) % 8]);
    // mirrored too: listed bottom first (output rows walk up the image) and right to left
    const mirrorY = [rect[6], rect[7], rect[4], rect[5], rect[2], rect[3], rect[0], rect[1]];
    const mirrorX = [rect[2], rect[3], rect[0], rect[1], rect[6], rect[7], rect[4], rect[5]];
    const quads = [rect, turn(rect, 2), mirrorY, mirrorX, [-9, -3, 120, -3, 120, 70, -9, 70]];
    for (const height of [48, 20]) {
      const o: CropOptions = { height, maxWidth: 400, threads: 3 };
      const r = onBoth(() => cropBatchSync(img, quads.flat(), o));
      expect(r.native.widths).toEqual(r.portable.widths);
      expect(maxAbsDiff(r.native.data, r.portable.data)).toBeLessThan(2e-5);
      const [, C, H, W] = r.native.dims;
      const w = r.native.widths[0];
      const at = (q: number, c: number, y: number, x: number) =>
        (r.native.data as Float32Array)[((q * C + c) * H + y) * W + x];
      let far = 0;
      for (let c = 0; c < C; c++)
        for (let y = 0; y < H; y++)
          for (let x = 0; x < w; x++) far = Math.max(far, Math.abs(at(1, c, y, x) - at(0, c, H - 1 - y, w - 1 - x)));
      expect(far).toBeLessThan(1e-3);
    }
  });
});

describe('cropBatch u8 (pixels for a model that normalises itself)', () => {
  const r = rng(11);
  const quads: number[] = [];
  for (let i = 0; i < 48; i++) quads.push(r() * 300 - 20);
  const img: ImageInput = {
    data: randomBytes((257 * 3 + 3) * 199, 12),
    width: 257,
    height: 199,
    format: 'rgb',
    stride: 257 * 3 + 3,
  };
  const o: CropOptions = {
    height: 48,
    maxWidth: 320,
    verticalRatio: 1.5,
    scale: 1,
    padValue: 128,
    layout: 'nhwc',
    threads: 2,
  };
  /** The f32 tensor as a Uint8ClampedArray stores it: what crop-batch made of it before the kernel wrote u8. */
  const rounded = (f: Float32Array) => new Uint8Array(new Uint8ClampedArray(f).buffer);

  it.each(['portable', ...(nativeExpected ? ['native'] : [])])(
    '%s: the f32 crop rounded half to even, clamped, padding 128',
    (backend) => {
      const run = (d: CropOptions) =>
        backend === 'portable'
          ? onPortable(() => cropBatchSync(img, quads, d))
          : onBoth(() => cropBatchSync(img, quads, d)).native;
      const u8 = run({ ...o, dtype: 'u8' });
      const f32 = run(o);
      expect(u8.data).toBeInstanceOf(Uint8Array);
      expect(u8.dims).toEqual(f32.dims);
      expect(u8.widths).toEqual(f32.widths);
      expect(u8.data).toEqual(rounded(f32.data as Float32Array));
      const [, , W, C] = u8.dims;
      const k = u8.widths.findIndex((w) => w < W);
      expect(k).toBeGreaterThanOrEqual(0);
      expect(u8.data[(k * 48 * W + W - 1) * C]).toBe(128);
    },
  );

  it("into a caller's Uint8Array at an offset; a float array for u8 is refused", () => {
    const n = onPortable(() => cropBatchSync(img, quads.slice(0, 8), { ...o, dtype: 'u8' }));
    const out = new Uint8Array(n.data.length + 5);
    onPortable(() => cropBatchSync(img, quads.slice(0, 8), { ...o, dtype: 'u8', out, outOffset: 5 }));
    expect(out.subarray(5)).toEqual(n.data);
    expect(() =>
      cropBatchSync(img, quads.slice(0, 8), { ...o, dtype: 'u8', out: new Float32Array(out.length) }),
    ).toThrow();
  });
});

/**
 * The kernel's bytes pinned: sha256 of native outputs recorded from the plain per-sample loop (one
 * homography division a coordinate) before the affine path and the hoisting, so any change of
 * arithmetic in kernels/crop.cc shows here. Affine quads (upright and rotated rectangles with exact
 * corners: h[6] = h[7] = 0) take the division-free path (upright ones at one sample a pixel the
 * rows-interpolated-once one, byte for byte the same); perspective ones the general one. Portable stays within its usual distance.
 */
describe.skipIf(!nativeExpected)('cropBatch bytes: affine and perspective quads', () => {
  const img: ImageInput = {
    data: randomBytes((331 * 3 + 5) * 173, 21),
    width: 331,
    height: 173,
    format: 'rgb',
    stride: 331 * 3 + 5,
  };
  const affine = [
    [10, 10, 200, 10, 200, 40, 10, 40], // upright
    [0.5, 60.25, 330.75, 60.25, 330.75, 70.5, 0.5, 70.5], // upright, fractional, shrunk
    [20, 30, 220, 50, 217, 80, 17, 60], // rotated rectangle, sides (200, 20) and (-3, 30): exact corners
    [60, 120, 160, 105, 166, 145, 66, 160], // the other way, sides (100, -15) and (6, 40)
    [-20, -5, 400, -5, 400, 200, -20, 200], // beyond the image: edge replication
  ].flat();
  const perspective = [
    [12, 20, 250, 14, 244, 60, 18, 52],
    [40, 90, 300, 100, 290, 160, 30, 140],
    [100, 5, 180, 5, 200, 30, 90, 30],
    // a rectangle rotated by cos/sin: corners off by rounding, so h[6], h[7] ~1e-18 (the general path)
    [41.3189, 77.3353, 260.7801, 92.7293, 258.6811, 122.6647, 39.2199, 107.2707],
  ].flat();
  const sha = (a: ArrayBufferView) =>
    createHash('sha256')
      .update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
      .digest('hex')
      .slice(0, 16);
  const shapes: [string, CropOptions][] = [
    ['u8 nhwc', { height: 48, maxWidth: 640, scale: 1, dtype: 'u8', layout: 'nhwc', threads: 2 }],
    ['f32 nchw', { height: 32, maxWidth: 640, mean: 0.5, std: 0.5, threads: 3 }],
    ['f16 nhwc bgr', { height: 24, maxWidth: 640, dtype: 'f16', layout: 'nhwc', channelOrder: 'bgr', threads: 2 }],
  ];
  const golden: Record<string, string> = {
    'affine u8 nhwc': 'e38b2b5e274aa9a3',
    'affine f32 nchw': 'cc07bd0b210aac35',
    'affine f16 nhwc bgr': '969e0a1b53c0e5d4',
    'perspective u8 nhwc': '581879a8da27344f',
    'perspective f32 nchw': '17d67a1991ab67bc',
    'perspective f16 nhwc bgr': '8004dc33cb69735a',
  };
  for (const [kind, quads] of [
    ['affine', affine],
    ['perspective', perspective],
  ] as const)
    it.each(shapes)(`${kind}: %s`, (name, o) => {
      const r = onBoth(() => cropBatchSync(img, quads, o));
      expect(sha(r.native.data)).toBe(golden[`${kind} ${name}`]);
      expect(r.native.widths).toEqual(r.portable.widths);
      if (o.dtype === 'u8') expect(maxAbsDiff(r.native.data, r.portable.data)).toBeLessThanOrEqual(1);
      else if (o.dtype === 'f16') expect(halfMaxDiff(r.native.data, r.portable.data)).toBeLessThanOrEqual(2 ** -10);
      else expect(maxAbsDiff(r.native.data, r.portable.data)).toBeLessThan(2e-5);
    });
});
