/**
 * Issue 10, structure: one float -> half converter. native/portable/f16.ts is the definition; the
 * addon's kernels/common.h floatToHalf (F16C or software) and the runner's normalize op must give
 * the same bits over every sign and exponent with the mantissas where rounding decides (ties,
 * carries into the exponent, overflow to Infinity, half subnormals), NaN of any sign and payload
 * (the canonical 0x7e00), ±Infinity and ±0.
 */
import { describe, expect, it } from 'vitest';
import { rng } from '../fixtures/random.js';
import * as native from '../native/index.js';
import { floatsToHalves, floatToHalf, HALF_NAN } from '../native/portable/f16.js';
import { nativeExpected } from './native-helpers.js';

/** Bit patterns: each sign and exponent with boundary mantissas and 200 seeded random ones. */
function patterns(): Uint32Array {
  const out: number[] = [];
  const r = rng(16);
  const mantissas = [
    0, 1, 2, 3, 0x3ff, 0x400, 0xfff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x2001, 0x3000, 0x5000, 0x200000, 0x3fffff,
    0x400000, 0x400001, 0x7fe000, 0x7fefff, 0x7ff000, 0x7ff001, 0x7ffffe, 0x7fffff,
  ];
  for (let sign = 0; sign < 2; sign++)
    for (let exp = 0; exp < 256; exp++) {
      const m = [...mantissas];
      // Subnormal halves: ties and neighbours at every shift.
      for (let s = 13; s <= 24; s++)
        for (const d of [-1, 0, 1]) m.push(((1 << (s - 1)) + d) & 0x7fffff, ((3 << (s - 1)) + d) & 0x7fffff);
      for (let k = 0; k < 200; k++) m.push(Math.floor(r() * 0x800000));
      for (const man of m) out.push(((sign << 31) | (exp << 23) | man) >>> 0);
    }
  return Uint32Array.from(out);
}

describe('float -> half: one definition', () => {
  it('known values', () => {
    const cases: [number, number][] = [
      [0, 0],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65519.99, 0x7bff],
      [65520, 0x7c00],
      [1e9, 0x7c00],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -24, 1],
      [2 ** -25, 0],
      [1.5 * 2 ** -25, 1],
      [2 ** -14, 0x400],
      [-(2 ** -26), 0x8000],
      [1 + 2 ** -11, 0x3c00],
      [1 + 3 * 2 ** -11, 0x3c02],
      [NaN, HALF_NAN],
    ];
    for (const [v, h] of cases) expect([v, floatToHalf(v)]).toEqual([v, h]);
    const nans = new Uint32Array([0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff, 0xffffffff, 0x7fa00000]);
    expect(Array.from(floatsToHalves(new Float32Array(nans.buffer)))).toEqual(Array(nans.length).fill(HALF_NAN));
  });

  it('the scalar and array forms agree on every pattern', () => {
    const bits = patterns(),
      f = new Float32Array(bits.buffer),
      h = floatsToHalves(f);
    for (let i = 0; i < f.length; i++)
      if (h[i] !== floatToHalf(f[i])) expect([bits[i].toString(16), h[i], floatToHalf(f[i])]).toBe('equal');
  });

  it.skipIf(!nativeExpected)('the addon converter gives the same bits as the TypeScript one on every pattern', () => {
    const addon = native.nativeKernels('native') as unknown as {
      floatToHalf(src: Float32Array, dst: Uint16Array): void;
    };
    const bits = patterns(),
      f = new Float32Array(bits.buffer);
    const c = new Uint16Array(f.length);
    addon.floatToHalf(f, c);
    const ts = floatsToHalves(f);
    const diff: string[] = [];
    for (let i = 0; i < f.length && diff.length < 10; i++)
      if (c[i] !== ts[i]) diff.push(`${bits[i].toString(16)}: c++ ${c[i].toString(16)} ts ${ts[i].toString(16)}`);
    expect(diff).toEqual([]);
    expect(f.length).toBeGreaterThan(100_000);
  });

  it.skipIf(!nativeExpected)(
    'an f16 preprocess writes NaN, ±Infinity and rounding ties identically on both backends',
    async () => {
      const image = { data: new Uint8Array([0, 1, 2, 3, 255, 128]), width: 2, height: 1, format: 'rgb' as const };
      for (const [mean, std] of [
        [
          [NaN, 0, 0],
          [1, 1, 1],
        ],
        [
          [0, 0, 0],
          [0, 0, 1e-30],
        ],
        [
          [-65520, 65520, 0.5],
          [1, 1, 2 ** -20],
        ],
      ] as const) {
        const opts = {
          resize: { mode: 'stretch' as const, width: 2, height: 1 },
          dtype: 'f16' as const,
          mean: [...mean],
          std: [...std],
        };
        native.setNativeBackend('native');
        const a = await native.preprocess(image, opts).catch((e) => e.code);
        native.setNativeBackend('portable');
        const b = await native.preprocess(image, opts).catch((e) => e.code);
        native.setNativeBackend('auto');
        expect(typeof a === 'string' ? a : Array.from(a.data)).toEqual(typeof b === 'string' ? b : Array.from(b.data));
      }
    },
  );
});
