/**
 * Tensors between peers in the Open Inference Protocol's binary tensor data extension: a JSON header
 * of `Inference-Header-Content-Length` bytes naming each tensor (`name`, `shape`, `datatype`,
 * `parameters.binary_data_size`), then the tensors' raw little-endian bytes in that order. One codec
 * for both sides (requests carry `inputs`, responses `outputs`). Decoding checks everything (header
 * length, JSON, names, datatypes, shapes, sizes against shapes and against the body) and fails with
 * E_FABRIC_MESSAGE, never a crash; tensor bytes are copied into aligned typed arrays.
 */
import { TYPED } from '../runner/backends/ort-tensor.js';
import type { DType, Tensor } from '../runner/types.js';
import { TO_V2 } from '../serve/tensors.js';
import { FabricError } from '../spec/errors.js';

export const HEADER_LENGTH = 'inference-header-content-length';

const FROM_V2 = new Map<string, DType>(Object.entries(TO_V2).map(([k, v]) => [v, k as DType]));
const MAX_HEADER = 1 << 20;
const MAX_TENSORS = 64;
/** Tensor names as ONNX writes them (`/td3/td3.2/Mul_output_0`, `onnx::Conv_1`): printable, no spaces. */
const NAME = /^[!-~]{1,256}$/;

export interface V2Message {
  /** The JSON header without its tensor list. */
  header: Record<string, unknown>;
  tensors: Record<string, Tensor>;
}

const bad = (message: string, detail?: Record<string, unknown>) => new FabricError('E_FABRIC_MESSAGE', message, detail);

/** The body (header then bytes) and the value of its `Inference-Header-Content-Length`. */
export function encodeV2(
  header: Record<string, unknown>,
  key: 'inputs' | 'outputs',
  tensors: Record<string, Tensor>,
): { body: Buffer; headerLength: number } {
  const list = Object.entries(tensors).map(([name, t]) => ({
    name,
    shape: [...t.dims],
    datatype: TO_V2[t.type],
    parameters: { binary_data_size: t.data.byteLength },
  }));
  const json = Buffer.from(JSON.stringify({ ...header, [key]: list }));
  const parts = Object.values(tensors).map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  return { body: Buffer.concat([json, ...parts]), headerLength: json.length };
}

export function decodeV2(body: Uint8Array, headerLength: unknown, key: 'inputs' | 'outputs'): V2Message {
  const n = typeof headerLength === 'string' && /^[0-9]{1,8}$/.test(headerLength) ? Number(headerLength) : Number.NaN;
  if (!(n >= 2 && n <= body.length && n <= MAX_HEADER))
    throw bad(`${HEADER_LENGTH} must be between 2 and the body's ${body.length} bytes`, {
      header: headerLength ?? null,
    });
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(body.buffer, body.byteOffset, n).toString('utf8'));
  } catch (e) {
    throw bad(`the JSON header is not JSON: ${(e as Error).message}`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw bad('the JSON header is not an object');
  const { [key]: list, ...rest } = header as Record<string, unknown>;
  if (!Array.isArray(list) || list.length > MAX_TENSORS)
    throw bad(`the header's ${key} must be an array of at most ${MAX_TENSORS} tensors`);
  const tensors: Record<string, Tensor> = {};
  let off = n;
  for (const [i, item] of list.entries()) {
    const t = item as {
      name?: unknown;
      shape?: unknown;
      datatype?: unknown;
      parameters?: { binary_data_size?: unknown };
    };
    const where = { [key]: i };
    if (!t || typeof t !== 'object' || typeof t.name !== 'string' || !NAME.test(t.name))
      throw bad(`${key}[${i}] has no valid name`, where);
    if (Object.hasOwn(tensors, t.name)) throw bad(`${key}[${i}]: ${t.name} is named twice`, where);
    const type = typeof t.datatype === 'string' ? FROM_V2.get(t.datatype) : undefined;
    if (!type)
      throw bad(
        `${key}[${i}]: datatype ${JSON.stringify(t.datatype)} is not one of ${[...FROM_V2.keys()].join(', ')}`,
        where,
      );
    const shape = t.shape;
    if (!Array.isArray(shape) || shape.length > 8 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw bad(`${key}[${i}]: shape must be at most 8 non-negative integers`, where);
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    const size = t.parameters?.binary_data_size;
    const C = TYPED[type];
    if (!Number.isSafeInteger(count) || size !== count * C.BYTES_PER_ELEMENT)
      throw bad(
        `${key}[${i}]: binary_data_size ${JSON.stringify(size ?? null)} is not its shape's ${count * C.BYTES_PER_ELEMENT} bytes`,
        where,
      );
    if (off + size > body.length)
      throw bad(`${key}[${i}]: its bytes run past the body`, { ...where, size, left: body.length - off });
    const copy = new ArrayBuffer(size);
    new Uint8Array(copy).set(body.subarray(off, off + size));
    off += size;
    // defined, not assigned: a tensor named `__proto__` stays a tensor, not the record's prototype
    Object.defineProperty(tensors, t.name, {
      value: { type, dims: shape as number[], data: new C(copy, 0, count) },
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  if (off !== body.length) throw bad(`the body has ${body.length - off} bytes after the last tensor`);
  return { header: rest, tensors };
}
