/**
 * Triton's classification extension: an output requested with `parameters.classification: n` comes
 * back as its n highest-valued elements instead of the tensor, each as the BYTES element
 * "<value>:<index>", highest first. A tensor of rank 2 or more is a batch (its first dimension) of
 * class scores: the answer is BYTES [batch, n]; a rank-1 tensor gives BYTES [n]; n beyond the number
 * of classes gives them all. Masks and images are INT32 and UINT8 tensors to a client
 * (tensor-output.ts), so they are classified alike; other outputs (boxes, text…) cannot be.
 */
import { ServeError } from '../spec/errors.js';
import type { EncodedOutput } from './tensor-output.js';

interface NumericTensor {
  type: string;
  dims: number[];
  data: ArrayLike<number | bigint>;
}

/** A package output as the numeric tensor a V2 client sees (tensor-output.ts): tensors, masks, images. */
function asTensor(v: unknown): NumericTensor | undefined {
  const t = v as Record<string, unknown> | null;
  if (!t || typeof t !== 'object' || !ArrayBuffer.isView(t.data)) return undefined;
  const data = t.data as unknown as ArrayLike<number>;
  if (typeof t.type === 'string' && Array.isArray(t.dims)) return t as unknown as NumericTensor;
  if (typeof t.width !== 'number' || typeof t.height !== 'number') return undefined;
  if (t.data instanceof Int32Array) return { type: 'int32', dims: [t.height, t.width], data };
  if (t.data instanceof Uint8Array && typeof t.channels === 'number')
    return { type: 'uint8', dims: [t.height, t.width, t.channels], data };
  return undefined;
}

/** IEEE half bits as a number. */
function half(bits: number): number {
  const s = bits & 0x8000 ? -1 : 1;
  const e = (bits >> 10) & 0x1f;
  const f = bits & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** A value as the text a client parses back: floats at their own precision, not the double's digits. */
function text(v: number | bigint, type: string): string {
  if (typeof v === 'bigint') return String(v);
  if (type === 'bool') return v ? '1' : '0';
  if (type === 'float32' || type === 'float16')
    return Number.isFinite(v) ? String(Number(v.toPrecision(7))) : String(v);
  return String(v);
}

/** The output `name` classified: its top `count` elements per batch row. */
export function classifyOutput(name: string, value: unknown, count: number, binary: boolean): EncodedOutput {
  const tensor = asTensor(value);
  if (!tensor)
    throw new ServeError('E_SERVE_REQUEST', `output ${name} is not a numeric tensor: it cannot be classified`, {
      output: name,
    });
  const { dims, type, data: values } = tensor;
  const at = (i: number): number | bigint => (type === 'float16' ? half(values[i] as number) : values[i]);
  const rows = dims.length >= 2 ? dims[0] : 1;
  const total = values.length;
  const per = rows === 0 ? 0 : total / rows;
  const k = Math.min(count, per);
  const data: string[] = [];
  for (let r = 0; r < rows; r++) {
    const idx = Array.from({ length: per }, (_, i) => i);
    // highest first; NaN last; equal values by index (Array.prototype.sort is stable)
    const key = (i: number) => {
      const v = at(r * per + i);
      return typeof v === 'number' && Number.isNaN(v) ? Number.NEGATIVE_INFINITY : v;
    };
    idx.sort((a, b) => {
      const x = key(a);
      const y = key(b);
      return x > y ? -1 : x < y ? 1 : 0;
    });
    for (const i of idx.slice(0, k)) data.push(`${text(at(r * per + i), type)}:${i}`);
  }
  const shape = dims.length >= 2 ? [rows, k] : [k];
  if (!binary) return { tensor: { name, shape, datatype: 'BYTES', data } };
  const bytes = Buffer.concat(
    data.map((s) => {
      const b = Buffer.from(s, 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32LE(b.length);
      return Buffer.concat([len, b]);
    }),
  );
  return {
    tensor: { name, shape, datatype: 'BYTES', parameters: { binary_data_size: bytes.length } },
    binary: bytes,
  };
}
