/**
 * Argument checks for native/index.ts. Everything the kernels rely on is checked here, in
 * TypeScript, before either backend runs: the addon then only sees well-formed options (it still
 * re-checks sizes, so a bypass cannot read out of bounds).
 */
import { NativeError } from '../spec/errors.js';
import type { TensorData, TensorDtype } from './index.js';

export function fail(argument: string, message: string, detail: Record<string, unknown> = {}): never {
  throw new NativeError('E_NATIVE_ARGUMENT', `${argument}: ${message}`, { argument, ...detail });
}

export function int(name: string, v: unknown, min: number, max = 2 ** 31 - 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) fail(name, `must be an integer, got ${describe(v)}`);
  if (v < min || v > max) fail(name, `must be in [${min}, ${max}], got ${v}`);
  return v;
}

export function num(name: string, v: unknown, opts: { min?: number; max?: number; finite?: boolean } = {}): number {
  if (typeof v !== 'number' || Number.isNaN(v)) fail(name, `must be a number, got ${describe(v)}`);
  if (opts.finite !== false && !Number.isFinite(v)) fail(name, `must be finite, got ${v}`);
  if (opts.min !== undefined && v < opts.min) fail(name, `must be >= ${opts.min}, got ${v}`);
  if (opts.max !== undefined && v > opts.max) fail(name, `must be <= ${opts.max}, got ${v}`);
  return v;
}

export function bool(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') fail(name, `must be a boolean, got ${describe(v)}`);
  return v;
}

export function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v))
    fail(name, `must be one of ${allowed.join(', ')}, got ${describe(v)}`);
  return v as T;
}

type Ctor<T> = { new (...args: never[]): T; name: string };

export function typed<T extends ArrayBufferView & { length: number }>(
  name: string,
  v: unknown,
  ctor: Ctor<T>,
  minLength = 0,
): T {
  if (!(v instanceof ctor)) fail(name, `must be a ${ctor.name}, got ${describe(v)}`);
  if (v.length < minLength) fail(name, `needs at least ${minLength} elements, has ${v.length}`);
  return v;
}

/** 1 or 3 numbers (a scalar applies to every channel). */
export function perChannel(name: string, v: unknown, fallback: number): [number, number, number] {
  if (v === undefined) return [fallback, fallback, fallback];
  if (typeof v === 'number') {
    num(name, v);
    return [v, v, v];
  }
  if (!Array.isArray(v) && !(v instanceof Float32Array) && !(v instanceof Float64Array))
    fail(name, `must be a number or 3 numbers, got ${describe(v)}`);
  const a = Array.from(v as ArrayLike<number>);
  if (a.length === 1) return perChannel(name, a[0], fallback);
  if (a.length !== 3) fail(name, `must hold 1 or 3 numbers, has ${a.length}`);
  a.forEach((x, i) => num(`${name}[${i}]`, x));
  return [a[0], a[1], a[2]];
}

export function options<T extends object>(name: string, v: unknown): T {
  if (v === undefined) return {} as T;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(name, `must be an object, got ${describe(v)}`);
  return v as T;
}

export function dims(name: string, v: unknown, rank: number): number[] {
  if (!Array.isArray(v) || v.length !== rank) fail(name, `must be ${rank} dimensions, got ${describe(v)}`);
  return v.map((d, i) => int(`${name}[${i}]`, d, 0));
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `array(${v.length})`;
  if (ArrayBuffer.isView(v)) return v.constructor.name;
  if (typeof v === 'object') return 'object';
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/** Per-call thread count, or the module default. */
export function threadCount(o: { threads?: number }, dflt: number): number {
  return o.threads === undefined ? dflt : int('threads', o.threads, 1, 256);
}

/** The array type of each output dtype (half floats as their bits). */
export const OUT = { f32: Float32Array, f16: Uint16Array, u8: Uint8Array } as const;
export type OutArray<D extends TensorDtype> = InstanceType<(typeof OUT)[D]>;
/** Makes a kernel's output array of exactly `size` elements (a caller's pool, say), instead of a new one. */
export type OutAlloc = <D extends TensorDtype>(dtype: D, size: number) => OutArray<D>;

/**
 * The caller's output tensor (checked for type and room), one from the caller's `alloc` (exactly the
 * size the kernel plans), or a new one; the array type tells the kernel the dtype.
 */
export function outTensor<D extends TensorDtype>(
  o: { out?: TensorData; outOffset?: number; alloc?: OutAlloc },
  dtype: D,
  size: number,
): { out: OutArray<D>; outOffset: number } {
  type Out = OutArray<D>;
  if (o.out === undefined && o.alloc !== undefined) {
    const out = typed<Out>('alloc()', o.alloc(dtype, size), OUT[dtype] as unknown as Ctor<Out>);
    if (out.length !== size) fail('alloc()', `returned ${out.length} elements, not ${size}`);
    return { out, outOffset: 0 };
  }
  if (o.out === undefined) return { out: new OUT[dtype](size) as Out, outOffset: 0 };
  const out = typed<Out>('out', o.out, OUT[dtype] as unknown as Ctor<Out>);
  const outOffset = int('outOffset', o.outOffset ?? 0, 0);
  if (outOffset + size > out.length) fail('out', `needs ${outOffset + size} elements, has ${out.length}`);
  return { out, outOffset };
}
