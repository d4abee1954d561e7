/**
 * Package outputs as V2 response tensors: tensors, masks and images as numeric tensors (JSON arrays,
 * or raw little-endian bytes with the binary extension); anything else (boxes, text lines,
 * classifications) as one BYTES element holding its `xpkg run --json` form.
 */
import { outputsToJson } from '../runner/outputs-json.js';
import type { DType } from '../runner/types.js';
import type { IoSpec } from '../spec/schema.js';
import { type ResponseTensor, TO_V2, type V2Datatype } from './tensors.js';

/** A typed array's bytes as they are (little-endian on every platform Node runs on). */
function rawBytes(a: ArrayBufferView): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

export interface EncodedOutput {
  tensor: ResponseTensor;
  /** Raw bytes when the output goes back as binary data. */
  binary?: Buffer;
}

/** One package output as a V2 response tensor, JSON or binary. */
export function outputTensor(spec: IoSpec | undefined, name: string, value: unknown, binary: boolean): EncodedOutput {
  const v = value as Record<string, unknown> | null;
  let datatype: V2Datatype;
  let shape: number[];
  let data: ArrayBufferView | undefined;
  if (v && typeof v === 'object' && typeof v.type === 'string' && Array.isArray(v.dims) && ArrayBuffer.isView(v.data)) {
    datatype = TO_V2[v.type as DType] ?? 'FP32';
    shape = [...(v.dims as number[])];
    data = v.data as ArrayBufferView;
    // an empty result (the runner skips a model on an empty batch) has no bytes to be of any type:
    // it is of the declared one, which the client reads it as (tritonclient: np.empty(0, dtype))
    const declared = spec?.type === 'tensor' ? TO_V2[spec.dtype as DType] : undefined;
    if (data.byteLength === 0 && declared) datatype = declared;
  } else if (v && typeof v === 'object' && typeof v.width === 'number' && v.data instanceof Int32Array) {
    datatype = 'INT32';
    shape = [v.height as number, v.width as number];
    data = v.data;
  } else if (v && typeof v === 'object' && typeof v.channels === 'number' && v.data instanceof Uint8Array) {
    datatype = 'UINT8';
    shape = [v.height as number, v.width as number, v.channels as number];
    data = v.data;
  } else {
    // text stays text; boxes, lines, classifications… are their `xpkg run --json` form
    const isText = typeof value === 'string';
    const text = isText ? value : JSON.stringify(outputsToJson({ v: value }).v);
    const parameters = { content_type: isText ? 'text/plain' : 'application/json', xpkg_type: spec?.type ?? 'json' };
    if (!binary) return { tensor: { name, shape: [1], datatype: 'BYTES', parameters, data: [text] } };
    const body = Buffer.from(text, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(body.length);
    const bytes = Buffer.concat([len, body]);
    return {
      tensor: { name, shape: [1], datatype: 'BYTES', parameters: { ...parameters, binary_data_size: bytes.length } },
      binary: bytes,
    };
  }
  if (binary) {
    const bytes = rawBytes(data);
    return { tensor: { name, shape, datatype, parameters: { binary_data_size: bytes.length } }, binary: bytes };
  }
  const json = outputsToJsonArray(data, datatype);
  return { tensor: { name, shape, datatype, data: json } };
}

const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** A typed array as a flat JSON array of numbers (FP16 as numbers, BOOL as booleans). */
function outputsToJsonArray(a: ArrayBufferView, datatype: V2Datatype): unknown[] {
  if (datatype === 'BOOL') return Array.from(a as Uint8Array, (x) => x !== 0);
  if (datatype === 'FP16') {
    return Array.from(a as Uint16Array, (bits) => {
      const s = bits & 0x8000 ? -1 : 1;
      const e = (bits >> 10) & 0x1f;
      const f = bits & 0x3ff;
      return e === 0
        ? s * f * 2 ** -24
        : e === 31
          ? f
            ? Number.NaN
            : s * Infinity
          : s * (1 + f / 1024) * 2 ** (e - 15);
    });
  }
  // beyond 2^53 a number is not the value: such a tensor stays bigints, written exactly (routes-infer.ts)
  if (a instanceof BigInt64Array)
    return a.every((x) => x >= -SAFE && x <= SAFE) ? Array.from(a, Number) : Array.from(a);
  return Array.from(a as Float32Array);
}
