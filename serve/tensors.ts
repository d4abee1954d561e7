/**
 * Open Inference Protocol (V2) tensors ↔ a package's typed inputs and outputs.
 *
 * A request tensor is checked against the manifest declaration of the input it names before anything
 * runs: a tensor input needs the declared dtype and a shape that fits the declared one (fixed sizes,
 * one size per named dimension); an image input is raw pixels (UINT8 [H, W, C], C 1–4) or one encoded
 * image (BYTES [1]); text and JSON inputs are BYTES [1]. Data comes as JSON (flat or nested, row
 * major) or as raw little-endian bytes after the JSON header (the binary tensor data extension).
 * Outputs: tensor-output.ts.
 */

import { doubleToHalf } from '../native/portable/f16.js';
import type { DType, Tensor } from '../runner/types.js';
import { ServeError } from '../spec/errors.js';
import type { IoSpec, Manifest } from '../spec/schema.js';

export type V2Datatype =
  | 'BOOL'
  | 'UINT8'
  | 'UINT16'
  | 'UINT32'
  | 'UINT64'
  | 'INT8'
  | 'INT16'
  | 'INT32'
  | 'INT64'
  | 'FP16'
  | 'FP32'
  | 'FP64'
  | 'BYTES';

export const TO_V2: Record<DType, V2Datatype> = {
  float32: 'FP32',
  float16: 'FP16',
  int64: 'INT64',
  int32: 'INT32',
  uint8: 'UINT8',
  int8: 'INT8',
  bool: 'BOOL',
};
const FROM_V2 = Object.fromEntries(Object.entries(TO_V2).map(([k, v]) => [v, k])) as Partial<Record<string, DType>>;
const ITEM: Record<DType, number> = { float32: 4, float16: 2, int64: 8, int32: 4, uint8: 1, int8: 1, bool: 1 };

export interface RequestTensor {
  name: string;
  shape: number[];
  datatype: string;
  parameters?: Record<string, unknown>;
  data?: unknown;
}

export interface ResponseTensor {
  name: string;
  shape: number[];
  datatype: V2Datatype;
  parameters?: Record<string, unknown>;
  data?: unknown[];
}

const bad = (input: string, reason: string, summary: string, detail: Record<string, unknown> = {}) =>
  new ServeError('E_SERVE_INPUT', `input ${input}: ${summary}`, { input, reason, ...detail });

/** What the model metadata endpoint says about one declared input or output. */
export function metadataTensor(spec: IoSpec): { name: string; datatype: V2Datatype; shape: number[] } & {
  parameters: { xpkg_type: string };
} {
  const dims = (s: IoSpec['shape']) => (s ?? [-1]).map((d) => (typeof d === 'number' ? d : -1));
  const base = { parameters: { xpkg_type: spec.type } };
  if (spec.type === 'tensor' && spec.dtype && spec.dtype !== 'string')
    return { name: spec.name, datatype: TO_V2[spec.dtype as DType], shape: dims(spec.shape), ...base };
  if (spec.type === 'image') return { name: spec.name, datatype: 'UINT8', shape: [-1, -1, -1], ...base };
  if (spec.type === 'mask') return { name: spec.name, datatype: 'INT32', shape: [-1, -1], ...base };
  return { name: spec.name, datatype: 'BYTES', shape: [1], ...base };
}

function count(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The deepest nesting of JSON tensor data: the protocol's largest rank (the request schema's). */
const MAX_NESTING = 8;

/**
 * JSON tensor data (flat or nested, row major) flattened. Nesting deeper than any shape is refused
 * here, before anything recurses through it (a deep array would overflow the stack).
 */
function flatData(name: string, data: unknown): unknown[] {
  if (!Array.isArray(data)) throw bad(name, 'data', 'data must be an array');
  if (!data.some(Array.isArray)) return data;
  const flat = data.flat(MAX_NESTING - 1) as unknown[];
  if (flat.some(Array.isArray))
    throw bad(name, 'shape', `data is nested deeper than ${MAX_NESTING} levels`, { maxNesting: MAX_NESTING });
  return flat;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** JSON tensor data (flat or nested, row major) as a typed array of `dtype`. */
function fromJson(name: string, dtype: DType, data: unknown, n: number): Tensor['data'] {
  const flat = flatData(name, data);
  if (flat.length !== n)
    throw bad(name, 'size', `data holds ${flat.length} values, its shape needs ${n}`, { values: flat.length, need: n });
  const wrong = (i: number): never => {
    // an object is named, not printed: it may nest deeper than JSON.stringify recurses
    const x = flat[i];
    const v = x !== null && typeof x === 'object' ? 'an object' : typeof x === 'bigint' ? String(x) : JSON.stringify(x);
    throw bad(name, 'dtype', `element ${i} (${v}) is not a ${TO_V2[dtype]} value`, {
      index: i,
    });
  };
  switch (dtype) {
    case 'bool': {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        const v = flat[i];
        if (typeof v !== 'boolean') wrong(i);
        out[i] = v ? 1 : 0;
      }
      return out;
    }
    case 'float32':
    case 'float16': {
      const out = dtype === 'float32' ? new Float32Array(n) : new Uint16Array(n);
      for (let i = 0; i < n; i++) {
        const v = flat[i];
        // an integer beyond 2^53 (infer-body.ts keeps it exact) is still a float's value
        const f = typeof v === 'bigint' ? Number(v) : v;
        if (typeof f !== 'number') wrong(i);
        out[i] = dtype === 'float32' ? (f as number) : doubleToHalf(f as number);
      }
      return out;
    }
    case 'int64': {
      const out = new BigInt64Array(n);
      for (let i = 0; i < n; i++) {
        const v = flat[i];
        // beyond 2^53 the request's integers arrive as bigints (infer-body.ts), exact
        if (typeof v === 'bigint') {
          if (v < INT64_MIN || v > INT64_MAX) wrong(i);
          out[i] = v;
        } else {
          if (!Number.isSafeInteger(v)) wrong(i);
          out[i] = BigInt(v as number);
        }
      }
      return out;
    }
    default: {
      const [Ctor, lo, hi] =
        dtype === 'int32'
          ? ([Int32Array, -(2 ** 31), 2 ** 31 - 1] as const)
          : dtype === 'uint8'
            ? ([Uint8Array, 0, 255] as const)
            : ([Int8Array, -128, 127] as const);
      const out = new Ctor(n);
      for (let i = 0; i < n; i++) {
        const v = flat[i] as number;
        if (!Number.isInteger(v) || v < lo || v > hi) wrong(i);
        out[i] = v;
      }
      return out;
    }
  }
}

/** Raw little-endian bytes as a typed array of `dtype` (a view when aligned, else one copy). */
function fromBytes(dtype: DType, bytes: Uint8Array): Tensor['data'] {
  const size = ITEM[dtype];
  const b = bytes.byteOffset % size === 0 ? bytes : new Uint8Array(bytes);
  const n = b.byteLength / size;
  switch (dtype) {
    case 'float32':
      return new Float32Array(b.buffer, b.byteOffset, n);
    case 'float16':
      return new Uint16Array(b.buffer, b.byteOffset, n);
    case 'int64':
      return new BigInt64Array(b.buffer, b.byteOffset, n);
    case 'int32':
      return new Int32Array(b.buffer, b.byteOffset, n);
    case 'int8':
      return new Int8Array(b.buffer, b.byteOffset, n);
    default:
      return b;
  }
}

/** The declared shape fits: same rank, fixed sizes equal, one size per named dimension. */
function checkShape(spec: IoSpec, shape: number[]): void {
  if (!spec.shape) return;
  const named = new Map<string, number>();
  const ok =
    spec.shape.length === shape.length &&
    spec.shape.every((d, i) => {
      if (typeof d === 'number') return d < 0 || d === shape[i];
      const seen = named.get(d);
      named.set(d, shape[i]);
      return seen === undefined || seen === shape[i];
    });
  if (!ok)
    throw bad(
      spec.name,
      'shape',
      `shape ${JSON.stringify(shape)} does not fit the declared ${JSON.stringify(spec.shape)}`,
      {
        expected: spec.shape,
        actual: shape,
      },
    );
}

/** BYTES elements: binary (4-byte little-endian length, then the bytes) or JSON strings. */
function bytesElements(t: RequestTensor, binary: Uint8Array | undefined, base64: boolean): Buffer[] {
  if (binary) {
    const out: Buffer[] = [];
    const b = Buffer.from(binary.buffer, binary.byteOffset, binary.byteLength);
    for (let o = 0; o < b.length; ) {
      if (o + 4 > b.length) throw bad(t.name, 'size', 'BYTES data ends inside an element length');
      const len = b.readUInt32LE(o);
      if (o + 4 + len > b.length) throw bad(t.name, 'size', 'BYTES element runs past the binary data');
      out.push(b.subarray(o + 4, o + 4 + len));
      o += 4 + len;
    }
    return out;
  }
  return flatData(t.name, t.data).map((v, i) => {
    if (typeof v !== 'string') throw bad(t.name, 'dtype', `element ${i} is not a string`, { index: i });
    return base64 ? Buffer.from(v, 'base64') : Buffer.from(v, 'utf8');
  });
}

/**
 * One request tensor as the value of the input it names. `binary` holds its raw bytes when it came
 * with the binary extension.
 */
export function inputValue(spec: IoSpec, t: RequestTensor, binary?: Uint8Array): unknown {
  if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
    throw bad(t.name, 'shape', 'shape must be non-negative integers', { actual: t.shape });
  const n = count(t.shape);
  const one = () => {
    if (t.datatype !== 'BYTES' || n !== 1)
      // the right datatype with another element count is a shape problem, not a datatype one
      throw bad(
        t.name,
        t.datatype === 'BYTES' ? 'shape' : 'dtype',
        `a ${spec.type} input is BYTES [1], not ${t.datatype} ${JSON.stringify(t.shape)}`,
        { expected: 'BYTES', actual: t.datatype, shape: t.shape },
      );
    const els = bytesElements(t, binary, spec.type === 'image');
    if (els.length !== 1) throw bad(t.name, 'size', `BYTES data holds ${els.length} elements, its shape needs 1`);
    return els[0];
  };
  const numeric = (dtype: DType): Tensor['data'] => {
    if (binary) {
      if (binary.byteLength !== n * ITEM[dtype])
        throw bad(
          t.name,
          'size',
          `binary data is ${binary.byteLength} bytes, ${t.datatype} ${JSON.stringify(t.shape)} is ${n * ITEM[dtype]}`,
          {
            bytes: binary.byteLength,
            need: n * ITEM[dtype],
          },
        );
      return fromBytes(dtype, binary);
    }
    return fromJson(t.name, dtype, t.data, n);
  };
  switch (spec.type) {
    case 'tensor': {
      const dtype = FROM_V2[t.datatype];
      const declared = spec.dtype && spec.dtype !== 'string' ? (spec.dtype as DType) : undefined;
      if (!dtype || (declared && declared !== dtype))
        throw bad(
          t.name,
          'dtype',
          `datatype ${t.datatype}, the input is declared ${declared ? TO_V2[declared] : 'numeric'}`,
          {
            expected: declared ? TO_V2[declared] : undefined,
            actual: t.datatype,
          },
        );
      checkShape(spec, t.shape);
      return { type: dtype, dims: t.shape, data: numeric(dtype) } satisfies Tensor;
    }
    case 'image': {
      if (t.datatype === 'BYTES') return one();
      if (t.datatype !== 'UINT8' || t.shape.length !== 3 || t.shape[2] < 1 || t.shape[2] > 4)
        throw bad(
          t.name,
          'shape',
          `an image is UINT8 [height, width, channels 1-4] or BYTES [1] (encoded), not ${t.datatype} ${JSON.stringify(t.shape)}`,
          {
            actual: t.shape,
          },
        );
      const [height, width, channels] = t.shape;
      return { data: numeric('uint8') as Uint8Array, width, height, channels: channels as 1 | 2 | 3 | 4 };
    }
    case 'mask': {
      const dtype = FROM_V2[t.datatype];
      if (t.shape.length !== 2 || !dtype || !['int32', 'uint8', 'int8'].includes(dtype))
        throw bad(t.name, 'shape', 'a mask is a 2-D INT32, UINT8 or INT8 tensor', { actual: t.shape });
      const data = Int32Array.from(numeric(dtype) as Int32Array);
      return { height: t.shape[0], width: t.shape[1], data };
    }
    case 'text':
      return decodeText(t.name, one());
    default: {
      const text = decodeText(t.name, one());
      try {
        return JSON.parse(text);
      } catch {
        throw bad(t.name, 'json', `a ${spec.type} input is one JSON document`);
      }
    }
  }
}

function decodeText(name: string, b: Buffer): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(b);
  } catch {
    throw bad(name, 'utf8', 'not valid UTF-8');
  }
}

/** Every request tensor to the package's inputs by name (unknown, duplicate or missing inputs are refused). */
export function requestInputs(
  manifest: Manifest,
  tensors: RequestTensor[],
  binary: (Uint8Array | undefined)[],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  tensors.forEach((t, i) => {
    const spec = manifest.inputs.find((s) => s.name === t.name);
    if (!spec)
      throw bad(t.name, 'name', 'the model has no such input', { expected: manifest.inputs.map((s) => s.name) });
    // own keys only: an input named `constructor` is not given because every object inherits one
    if (Object.hasOwn(out, t.name)) throw bad(t.name, 'name', 'given twice');
    out[t.name] = inputValue(spec, t, binary[i]);
  });
  for (const s of manifest.inputs)
    if (!s.optional && !Object.hasOwn(out, s.name))
      throw bad(s.name, 'missing', 'missing', { expected: manifest.inputs.map((x) => x.name) });
  return out;
}
