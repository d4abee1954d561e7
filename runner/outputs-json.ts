/**
 * Run outputs as plain JSON (what `xpkg run --json` prints and what a daemon would send).
 *
 * Every typed array (tensor data, mask labels, image pixels) becomes a JSON array of numbers, row
 * major, when it has at most JSON_ARRAY_MAX elements; a larger one becomes
 * `{"dtype", "shape", "encoding": "base64", "data"}` with the raw little-endian bytes. float16 arrays
 * print as numbers; int64 ones print as numbers only when every value is a safe integer (else
 * base64); a float array holding NaN or ±Infinity, which JSON cannot write, is base64 too. A mask's
 * labels are written as uint8 when every label fits (a 256×256 mask: 87 KB of base64 instead of
 * 644 KB of `{"0": …}`).
 */
import { constants } from 'node:buffer';
import { RunnerError } from '../spec/errors.js';
import type { DType } from './types.js';

/** Typed arrays with more elements than this are written as base64. */
export const JSON_ARRAY_MAX = 4096;

/**
 * The most bytes one typed array may have in JSON: its base64 must fit one JavaScript string
 * (about 512 MiB of characters), with room left for the rest of the document.
 */
export const JSON_BYTES_MAX = Math.floor((constants.MAX_STRING_LENGTH - 2 ** 20) / 4) * 3;

export interface Base64Array {
  dtype: DType | 'uint16' | 'float64' | 'int16' | 'uint32';
  shape: number[];
  encoding: 'base64';
  data: string;
}

type AnyTyped = Exclude<NodeJS.TypedArray, BigUint64Array> | BigUint64Array;

function dtypeOf(a: ArrayBufferView): Base64Array['dtype'] {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof BigInt64Array) return 'int64';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof Uint32Array) return 'uint32';
  if (a instanceof Int16Array) return 'int16';
  if (a instanceof Uint16Array) return 'uint16';
  if (a instanceof Int8Array) return 'int8';
  return 'uint8';
}

/** IEEE half → number. */
export function halfToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1,
    e = (h >> 10) & 0x1f,
    f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/**
 * One typed array as JSON. `dtype` overrides the array's own (float16 and bool live in
 * Uint16Array and Uint8Array); `shape` defaults to the flat length.
 */
export function typedToJson(a: ArrayBufferView, shape?: readonly number[], dtype?: string): number[] | Base64Array {
  const arr = a as unknown as AnyTyped;
  const dt = (dtype ?? dtypeOf(a)) as Base64Array['dtype'];
  const n = arr.length;
  const unsafe =
    arr instanceof BigInt64Array &&
    arr.some((v) => v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER));
  if (n <= JSON_ARRAY_MAX && !unsafe) {
    const nums =
      dt === 'float16'
        ? Array.from(arr as Uint16Array, halfToNumber)
        : Array.from(arr as ArrayLike<number | bigint>, (v) => Number(v));
    // JSON has no NaN or ±Infinity (JSON.stringify would write null): such an array goes as base64, losslessly
    if (nums.every(Number.isFinite)) return nums;
  }
  if (a.byteLength > JSON_BYTES_MAX)
    throw new RunnerError(
      'E_RUN_BUDGET',
      `a ${dt} array of ${a.byteLength} bytes is too large to write as JSON (at most ${JSON_BYTES_MAX} bytes); take it from the library (Runner.run) instead`,
      { limit: 'json', need: a.byteLength, budget: JSON_BYTES_MAX, dtype: dt, shape: [...(shape ?? [n])] },
    );
  const bytes = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  return { dtype: dt, shape: [...(shape ?? [n])], encoding: 'base64', data: bytes.toString('base64') };
}

/** Mask labels: uint8 when they fit, else int32. */
function maskData(data: Int32Array, width: number, height: number): number[] | Base64Array {
  if (data.length <= JSON_ARRAY_MAX) return typedToJson(data);
  let fits = true;
  for (let i = 0; i < data.length && fits; i++) fits = data[i] >= 0 && data[i] <= 255;
  return typedToJson(fits ? Uint8Array.from(data) : data, [height, width]);
}

/** Any value with its typed arrays replaced (nested objects and arrays walked). */
function plain(v: unknown): unknown {
  if (ArrayBuffer.isView(v)) return typedToJson(v);
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    // The three shaped kinds: tensors, masks and images know their dims.
    if (typeof o.type === 'string' && Array.isArray(o.dims) && ArrayBuffer.isView(o.data)) {
      return { ...o, data: typedToJson(o.data, o.dims as number[], o.type === 'bool' ? 'bool' : o.type) };
    }
    if (
      typeof o.width === 'number' &&
      typeof o.height === 'number' &&
      o.data instanceof Int32Array &&
      o.channels === undefined
    ) {
      return { ...mapValues(o), data: maskData(o.data, o.width, o.height) };
    }
    if (
      typeof o.width === 'number' &&
      typeof o.height === 'number' &&
      typeof o.channels === 'number' &&
      ArrayBuffer.isView(o.data)
    ) {
      return { ...o, data: typedToJson(o.data, [o.height, o.width, o.channels]) };
    }
    return mapValues(o);
  }
  return v;
}

function mapValues(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, plain(x)]));
}

/** A run's outputs with every typed array as a JSON array or a base64 object (see the file comment). */
export function outputsToJson(outputs: Record<string, unknown>): Record<string, unknown> {
  return mapValues(outputs);
}
