/**
 * Shared helpers of the native-kernel tests: seeded randomness, images with odd strides, and the
 * two backends side by side. Native comparisons need the addon unless XPKG_NATIVE=portable says
 * this machine has none (then only the portable kernels are checked against the references).
 */
import { halfToFloat, nativeInfo, setNativeBackend } from '../native/index.js';

export const nativeExpected = process.env.XPKG_NATIVE !== 'portable';

import { rng } from '../fixtures/random.js';

export { rng };

export function randomBytes(n: number, seed: number): Uint8Array {
  const r = rng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(r() * 256);
  return out;
}

export function randomFloats(n: number, seed: number, scale = 1, offset = 0): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = offset + (r() * 2 - 1) * scale;
  return out;
}

/** Runs fn with the native backend, then with the portable one (sync code only). */
export function onBoth<T>(fn: () => T): { native: T; portable: T } {
  try {
    setNativeBackend('native');
    const native = fn();
    setNativeBackend('portable');
    const portable = fn();
    return { native, portable };
  } finally {
    setNativeBackend('auto');
  }
}

export function onPortable<T>(fn: () => T): T {
  try {
    setNativeBackend('portable');
    return fn();
  } finally {
    setNativeBackend('auto');
  }
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = d === d ? d : Infinity;
  }
  return m;
}

export const addonLoaded = (): boolean => nativeInfo().backend === 'native';

/** Largest difference of two half-float tensors as numbers (bits would differ wildly across ±0). */
export function halfMaxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(halfToFloat(a[i]) - halfToFloat(b[i])));
  return m;
}
