import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cropQuad, resizeImage, rotateImage, toTensor } from '../runner/ops/image.js';

const img = (w: number, h: number, c: number, f: (x: number, y: number, ch: number) => number) => {
  const d = new Uint8Array(w * h * c);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) for (let ch = 0; ch < c; ch++) d[(y * w + x) * c + ch] = f(x, y, ch);
  return d;
};

/** Straightforward 2-D reference of the documented filter: bilinear (half-pixel centres, edges clamped); area averaging when shrinking with antialias. */
function refResize(
  src: Uint8Array,
  sw: number,
  sh: number,
  c: number,
  dw: number,
  dh: number,
  antialias: boolean,
): Uint8Array {
  const weights = (srcSize: number, dstSize: number, o: number) => {
    const scale = srcSize / dstSize;
    const w = new Float64Array(srcSize);
    if (antialias && scale > 1) {
      // Each source pixel weighs by how much of [o, o + 1) × scale it covers.
      for (let i = 0; i < srcSize; i++)
        w[i] = Math.max(0, Math.min((o + 1) * scale, i + 1) - Math.max(o * scale, i)) / scale;
      return w;
    }
    const support = 1;
    const center = Math.max(0, (o + 0.5) * scale - 0.5);
    for (let i = Math.ceil(center - support); i <= Math.floor(center + support); i++) {
      const v = Math.max(0, 1 - Math.abs(i - center) / support);
      w[Math.min(Math.max(i, 0), srcSize - 1)] += v;
    }
    const sum = w.reduce((a, b) => a + b, 0);
    return w.map((v) => v / sum);
  };
  const out = new Uint8Array(dw * dh * c);
  for (let y = 0; y < dh; y++) {
    const wy = weights(sh, dh, y);
    for (let x = 0; x < dw; x++) {
      const wx = weights(sw, dw, x);
      for (let ch = 0; ch < c; ch++) {
        let a = 0;
        for (let j = 0; j < sh; j++) {
          if (!wy[j]) continue;
          for (let i = 0; i < sw; i++) if (wx[i]) a += src[(j * sw + i) * c + ch] * wx[i] * wy[j];
        }
        out[(y * dw + x) * c + ch] = Math.min(255, Math.max(0, Math.round(a)));
      }
    }
  }
  return out;
}

const maxDiff = (a: Uint8Array, b: Uint8Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe('resizeImage', () => {
  it('matches the 2-D reference on random images, shrinking and enlarging, with and without antialias', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 12 }),
        fc.constantFrom(1, 3),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 12 }),
        fc.boolean(),
        fc.integer(),
        (sw, sh, c, dw, dh, antialias, seed) => {
          const src = img(sw, sh, c, (x, y, ch) => (x * 37 + y * 91 + ch * 13 + seed) & 255);
          const got = resizeImage(src, { width: sw, height: sh, channels: c }, { width: dw, height: dh, antialias });
          expect(got.length).toBe(dw * dh * c);
          // float32 accumulation vs float64: rounding may differ by one level
          expect(maxDiff(got, refResize(src, sw, sh, c, dw, dh, antialias))).toBeLessThanOrEqual(1);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('keeps a constant image constant at any size', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 0, max: 255 }),
        (sw, sh, dw, dh, v) => {
          const out = resizeImage(
            new Uint8Array(sw * sh * 3).fill(v),
            { width: sw, height: sh, channels: 3 },
            { width: dw, height: dh },
          );
          expect(out.every((p) => p === v)).toBe(true);
        },
      ),
    );
  });

  it('is the identity at the same size and spreads a 1×1 image', () => {
    const src = img(5, 3, 3, (x, y, c) => x * 40 + y * 7 + c);
    expect(resizeImage(src, { width: 5, height: 3, channels: 3 }, { width: 5, height: 3 })).toEqual(src);
    const one = resizeImage(
      new Uint8Array([10, 20, 30]),
      { width: 1, height: 1, channels: 3 },
      { width: 4, height: 2 },
    );
    expect(Array.from(one)).toEqual([
      10, 20, 30, 10, 20, 30, 10, 20, 30, 10, 20, 30, 10, 20, 30, 10, 20, 30, 10, 20, 30, 10, 20, 30,
    ]);
  });

  it('handles extreme aspect ratios and zero-sized targets', () => {
    const line = img(2000, 1, 1, (x) => (x < 1000 ? 0 : 255));
    const small = resizeImage(line, { width: 2000, height: 1, channels: 1 }, { width: 2, height: 5 });
    // the triangle filter of radius 1000 reaches across the edge: dark left, light right, symmetric
    for (let r = 0; r < 5; r++) {
      expect(small[2 * r]).toBeLessThan(64);
      expect(small[2 * r] + small[2 * r + 1]).toBe(255);
    }
    const tall = resizeImage(
      img(1, 3000, 1, (_x, y) => y % 256),
      { width: 1, height: 3000, channels: 1 },
      { width: 3, height: 1 },
    );
    expect(tall.length).toBe(3);
    expect(resizeImage(line, { width: 2000, height: 1, channels: 1 }, { width: 0, height: 4 }).length).toBe(0);
  });

  it('averages when shrinking with antialias (no aliasing of a fine checkerboard)', () => {
    const checker = img(64, 64, 1, (x, y) => ((x + y) % 2 ? 255 : 0));
    const aa = resizeImage(checker, { width: 64, height: 64, channels: 1 }, { width: 7, height: 7 });
    for (const v of aa) expect(Math.abs(v - 127.5)).toBeLessThan(20);
  });
});

describe('rotateImage', () => {
  it('maps every pixel by the quarter-turn formula (counter-clockwise)', () => {
    const w = 4,
      h = 3;
    const src = img(w, h, 2, (x, y, c) => y * 40 + x * 4 + c);
    const r1 = rotateImage(src, { width: w, height: h, channels: 2 }, { turns: 1 });
    expect([r1.width, r1.height]).toEqual([3, 4]);
    // CCW: the top-right pixel becomes the top-left one
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let c = 0; c < 2; c++) expect(r1.data[((w - 1 - x) * h + y) * 2 + c]).toBe(src[(y * w + x) * 2 + c]);
    const r2 = rotateImage(src, { width: w, height: h, channels: 2 }, { turns: 2 });
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) expect(r2.data[((h - 1 - y) * w + (w - 1 - x)) * 2]).toBe(src[(y * w + x) * 2]);
  });

  it('four quarter turns, or one and three, give the image back', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 9 }),
        fc.constantFrom(1, 3),
        fc.integer({ min: 0, max: 3 }),
        (w, h, c, t) => {
          const src = img(w, h, c, (x, y, ch) => (x * 31 + y * 17 + ch) & 255);
          let cur: { data: Uint8Array; width: number; height: number } = { data: src, width: w, height: h };
          for (let i = 0; i < 4; i++)
            cur = rotateImage(cur.data, { width: cur.width, height: cur.height, channels: c }, { turns: t || 1 });
          expect(cur.data).toEqual(src);
          const a = rotateImage(src, { width: w, height: h, channels: c }, { turns: 1 });
          const b = rotateImage(a.data, { width: a.width, height: a.height, channels: c }, { turns: 3 });
          expect([b.width, b.height]).toEqual([w, h]);
          expect(b.data).toEqual(src);
        },
      ),
    );
  });
});

describe('cropQuad', () => {
  it('an axis-aligned quad on pixel edges (pixel i spans [i, i + 1)) is an exact sub-image copy', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 20 }),
        fc.nat(),
        fc.nat(),
        fc.nat(),
        fc.nat(),
        (w, h, a, b, c, d) => {
          const src = img(w, h, 3, (x, y, ch) => (x * 29 + y * 53 + ch * 7) & 255);
          const [x0, x1] = [a % w, c % w].sort((p, q) => p - q);
          const [y0, y1] = [b % h, d % h].sort((p, q) => p - q);
          const cw = x1 - x0 + 1,
            ch = y1 - y0 + 1;
          const out = cropQuad(
            src,
            { width: w, height: h, channels: 3 },
            { quad: [x0, y0, x1 + 1, y0, x1 + 1, y1 + 1, x0, y1 + 1], width: cw, height: ch },
          );
          for (let y = 0; y < ch; y++)
            for (let x = 0; x < cw; x++)
              for (let k = 0; k < 3; k++) expect(out[(y * cw + x) * 3 + k]).toBe(src[((y + y0) * w + x + x0) * 3 + k]);
        },
      ),
    );
  });

  it('starting the quad at the top-right corner gives the crop turned 90° counter-clockwise', () => {
    const w = 9,
      h = 6;
    const src = img(w, h, 1, (x, y) => x * 20 + y);
    const plain = cropQuad(
      src,
      { width: w, height: h, channels: 1 },
      { quad: [1, 1, 8, 1, 8, 5, 1, 5], width: 7, height: 4 },
    );
    const turned = cropQuad(
      src,
      { width: w, height: h, channels: 1 },
      { quad: [8, 1, 8, 5, 1, 5, 1, 1], width: 4, height: 7 },
    );
    expect(turned).toEqual(rotateImage(plain, { width: 7, height: 4, channels: 1 }, { turns: 1 }).data);
  });

  it('replicates edges outside the image, and survives degenerate quads and 1×1 output', () => {
    const src = img(3, 3, 1, (x, y) => 10 * (y * 3 + x));
    const out = cropQuad(
      src,
      { width: 3, height: 3, channels: 1 },
      { quad: [-5, -5, 10, -5, 10, 10, -5, 10], width: 4, height: 4 },
    );
    expect(out[0]).toBe(0);
    expect(out[15]).toBe(80);
    const point = cropQuad(
      src,
      { width: 3, height: 3, channels: 1 },
      { quad: [1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5], width: 3, height: 2 },
    );
    expect(Array.from(point)).toEqual([40, 40, 40, 40, 40, 40]);
    expect(
      Array.from(
        cropQuad(
          src,
          { width: 3, height: 3, channels: 1 },
          { quad: [2.5, 0.5, 2.5, 0.5, 2.5, 0.5, 2.5, 0.5], width: 1, height: 1 },
        ),
      ),
    ).toEqual([20]);
    expect(
      cropQuad(src, { width: 3, height: 3, channels: 1 }, { quad: [0, 0, 1, 0, 1, 1, 0, 1], width: 0, height: 3 })
        .length,
    ).toBe(0);
  });

  it('supersamples when shrinking in the same pass: a fine checkerboard averages to grey', () => {
    const src = img(40, 40, 1, (x, y) => ((x + y) % 2 ? 255 : 0));
    const once = cropQuad(
      src,
      { width: 40, height: 40, channels: 1 },
      { quad: [0, 0, 40, 0, 40, 40, 0, 40], width: 8, height: 8, supersample: false },
    );
    const multi = cropQuad(
      src,
      { width: 40, height: 40, channels: 1 },
      { quad: [0, 0, 40, 0, 40, 40, 0, 40], width: 8, height: 8 },
    );
    const spread = (a: Uint8Array) => Math.max(...a) - Math.min(...a);
    expect(spread(once)).toBeGreaterThan(200);
    expect(spread(multi)).toBeLessThan(spread(once) / 2);
    const flat = cropQuad(
      new Uint8Array(300).fill(77),
      { width: 10, height: 10, channels: 3 },
      { quad: [1, 2, 8, 1, 9, 9, 0, 8], width: 3, height: 2 },
    );
    expect(flat.every((v) => v === 77)).toBe(true);
  });

  it('samples a rotated quad bilinearly (centre of a 45° square over a gradient)', () => {
    const src = img(11, 11, 1, (x) => x * 10);
    const out = cropQuad(
      src,
      { width: 11, height: 11, channels: 1 },
      { quad: [5.5, 1.5, 9.5, 5.5, 5.5, 9.5, 1.5, 5.5], width: 5, height: 5 },
    );
    expect(out[2 * 5 + 2]).toBe(50);
  });
});

describe('toTensor', () => {
  const ref = (
    src: Uint8Array,
    w: number,
    h: number,
    c: number,
    o: {
      scale: number;
      mean: number[];
      std: number[];
      nchw: boolean;
      bgr: boolean;
      pw: number;
      ph: number;
      pad: number;
    },
  ) => {
    const out = new Float32Array(o.pw * o.ph * c).fill(o.pad);
    for (let y = 0; y < Math.min(h, o.ph); y++)
      for (let x = 0; x < Math.min(w, o.pw); x++)
        for (let k = 0; k < c; k++) {
          const sc = o.bgr && c >= 3 && k < 3 ? 2 - k : k;
          const v = (src[(y * w + x) * c + sc] * o.scale - o.mean[k]) / o.std[k];
          out[o.nchw ? k * o.pw * o.ph + y * o.pw + x : (y * o.pw + x) * c + k] = v;
        }
    return out;
  };

  it('matches a per-pixel reference in both layouts, both channel orders, with padding', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 1, max: 7 }),
        fc.constantFrom(1, 3),
        fc.nat(4),
        fc.nat(4),
        fc.boolean(),
        fc.boolean(),
        fc.float({ min: -2, max: 2, noNaN: true }),
        (w, h, c, padW, padH, nchw, bgr, pad) => {
          const src = img(w, h, c, (x, y, ch) => (x * 71 + y * 13 + ch * 101) & 255);
          const mean = [0.1, 0.2, 0.3, 0.4].slice(0, c),
            std = [0.5, 0.25, 2, 1].slice(0, c);
          const o = { scale: 1 / 255, mean, std, nchw, bgr, pw: w + padW, ph: h + padH, pad };
          const got = toTensor(
            src,
            { width: w, height: h, channels: c },
            {
              scale: o.scale,
              mean,
              std,
              layout: nchw ? 'nchw' : 'nhwc',
              bgr,
              planeWidth: o.pw,
              planeHeight: o.ph,
              padValue: pad,
            },
          );
          const want = ref(src, w, h, c, o);
          expect(got.length).toBe(want.length);
          for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i], 5);
        },
      ),
    );
  });

  it('writes at an offset into a batch buffer and leaves the rest alone', () => {
    const dst = new Float32Array(2 * 3 * 2 * 2).fill(9);
    toTensor(new Uint8Array(12).fill(255), { width: 2, height: 2, channels: 3 }, { dst, offset: 12, scale: 1 });
    expect(Array.from(dst.subarray(0, 12)).every((v) => v === 9)).toBe(true);
    expect(Array.from(dst.subarray(12)).every((v) => v === 255)).toBe(true);
  });
});
