/**
 * float32 -> IEEE half bits: the one converter of xpkg. The portable kernels and the runner's
 * normalize op use it, and kernels/common.h floatToHalf (the addon, F16C or not) gives the same
 * bits (test/native-hardening-f16.test.ts). Round to nearest even, overflow to ±Infinity, half
 * subnormals; every NaN becomes the one canonical quiet NaN 0x7e00, since JS engines and CPUs
 * disagree on a NaN's sign and payload (x86 arithmetic makes negative NaNs, JS may canonicalise),
 * and tensor bits must not depend on the platform.
 */
export const HALF_NAN = 0x7e00;

/** Half bits of the float32 with bit pattern x (an unsigned 32-bit integer). */
export function halfOfFloatBits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let man = x & 0x7fffff;
  if (exp === 0xff) return man ? HALF_NAN : sign | 0x7c00;
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    man |= 0x800000;
    const shift = 14 - e;
    let half = man >>> shift;
    const rem = man & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = sign | (e << 10) | (man >>> 13);
  const rem = man & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++; // may carry into the exponent: correct
  return half;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** A number rounded to float32, then to half bits. */
export function floatToHalf(value: number): number {
  f32[0] = value;
  return halfOfFloatBits(u32[0]);
}

/** x rounded to an integer, ties to even (x >= 0). */
function roundEven(x: number): number {
  const f = Math.floor(x);
  const r = x - f;
  return r > 0.5 || (r === 0.5 && f % 2 === 1) ? f + 1 : f;
}

/**
 * A number (a double, as JSON gives it) as half bits, rounded once: through float32 first, a value
 * just past the midpoint of two halves can land on it and round the wrong way (1 + 2^-11 + 2^-40
 * gave 1, not 1 + 2^-10). NaN, overflow and subnormals as halfOfFloatBits.
 */
export function doubleToHalf(value: number): number {
  if (Number.isNaN(value)) return HALF_NAN;
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  const a = Math.abs(value);
  // a half subnormal (or zero) counts units of 2^-24; 1024 of them is the smallest normal, whose bits these are
  if (a < 2 ** -14) return sign | roundEven(a * 2 ** 24);
  if (a >= 65520) return sign | 0x7c00; // the midpoint above the largest half (65504) rounds to even: Infinity
  let e = Math.floor(Math.log2(a));
  // log2 may be one off next to a power of two
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  // scaling by a power of two is exact: m is the significand with 10 fraction bits, rounded once
  let m = roundEven(a * 2 ** (10 - e));
  if (m === 2048) {
    e++;
    m = 1024;
  }
  return sign | ((e + 15) << 10) | (m - 1024);
}

/** Every element of src as half bits, into dst at offset (default: a new array). */
export function floatsToHalves(
  src: Float32Array,
  dst: Uint16Array = new Uint16Array(src.length),
  offset = 0,
): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) dst[offset + i] = halfOfFloatBits(bits[i]);
  return dst;
}

/** Every half's float value, by its bits (256 KiB, made on first use). */
let halfTable: Float32Array | undefined;

/** Every element of src (half bits) as float32, into a new array: the inverse of floatsToHalves. */
export function halvesToFloats(src: Uint16Array): Float32Array {
  halfTable ??= Float32Array.from({ length: 65536 }, (_, h) => halfToFloat(h));
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = halfTable[src[i]];
  return out;
}

/** Half bits -> number (for tests and callers reading f16 tensors). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0) return sign * man * 2 ** -24;
  if (exp === 0x1f) return man ? NaN : sign * Infinity;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}
