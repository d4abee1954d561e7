/**
 * A small protobuf wire-format reader/writer for ONNX models (no protobuf library is installed).
 *
 * A message decodes into its ordered list of fields, each keeping its own original bytes, so a
 * rewrite re-emits every field it does not touch byte-for-byte and only re-encodes what it changes.
 * Sub-messages decode on demand. Field numbers follow onnx/onnx.proto (ModelProto, GraphProto,
 * NodeProto, AttributeProto, TensorProto, ValueInfoProto, OperatorSetIdProto).
 *
 * The wire reader (runner/backends/protobuf.ts) throws a plain Error naming what and where on
 * malformed input (truncated data, bad varints, unknown wire types), never loops.
 */

// --- wire format -------------------------------------------------------------------------------

// The reading half lives with the runner, which scans models for external data before loading them.
import {
  bytesOf,
  decodeMessage,
  expectWire,
  type Field,
  fieldsOf,
  intOf,
  lastOf,
  type Message,
  readVarint,
  stringOf,
  sub,
  type WireType,
} from './protobuf.js';

export { bytesOf, decodeMessage, type Field, fieldsOf, intOf, lastOf, type Message, stringOf, sub, type WireType };

/** Varint bytes of `n`; negative int64 values take the 10-byte two's complement form. */
export function varint(n: number | bigint): number[] {
  let v = BigInt.asUintN(64, BigInt(n));
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) b |= 0x80;
    out.push(b);
  } while (v !== 0n);
  return out;
}

/** The message's bytes: its fields' bytes in order (so an untouched message comes back identical). */
export function encodeMessage(m: Message): Uint8Array {
  let n = 0;
  for (const f of m) n += f.raw.length;
  const out = new Uint8Array(n);
  let pos = 0;
  for (const f of m) {
    out.set(f.raw, pos);
    pos += f.raw.length;
  }
  return out;
}

function makeField(no: number, wire: WireType, value: Uint8Array | number[]): Field {
  const head = varint((no << 3) | wire);
  if (wire === 2) head.push(...varint(value.length));
  const raw = new Uint8Array(head.length + value.length);
  raw.set(head);
  raw.set(value, head.length);
  return { no, wire, raw, at: head.length };
}

export const varintField = (no: number, n: number | bigint): Field => makeField(no, 0, varint(n));
export const bytesField = (no: number, bytes: Uint8Array | number[]): Field => makeField(no, 2, bytes);
export const stringField = (no: number, s: string): Field => makeField(no, 2, new TextEncoder().encode(s));
export const messageField = (no: number, m: Message): Field => makeField(no, 2, encodeMessage(m));
export function floatField(no: number, x: number): Field {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, x, true);
  return makeField(no, 5, b);
}

// --- field access ------------------------------------------------------------------------------

export function floatOf(f: Field, what = 'message'): number {
  expectWire(f, 5, what);
  return new DataView(f.raw.buffer, f.raw.byteOffset + f.at, 4).getFloat32(0, true);
}

export const strings = (m: Message, no: number, what = 'message'): string[] =>
  fieldsOf(m, no).map((f) => stringOf(f, what));
export function string(m: Message, no: number, what = 'message'): string {
  const f = lastOf(m, no);
  return f ? stringOf(f, what) : '';
}

/** A repeated int64 field, packed or not (parsers must accept both). */
export function ints(m: Message, no: number, what = 'message'): number[] {
  const out: number[] = [];
  for (const f of fieldsOf(m, no)) {
    if (f.wire === 0) {
      out.push(intOf(f, what));
      continue;
    }
    const b = bytesOf(f, what);
    for (let pos = 0; pos < b.length; ) {
      const v = readVarint(b, pos, what);
      out.push(Number(BigInt.asIntN(64, v.value)));
      pos = v.end;
    }
  }
  return out;
}

/** A repeated float field, packed or not. */
export function floats(m: Message, no: number, what = 'message'): number[] {
  const out: number[] = [];
  for (const f of fieldsOf(m, no)) {
    if (f.wire === 5) {
      out.push(floatOf(f, what));
      continue;
    }
    const b = bytesOf(f, what);
    if (b.length % 4) throw new Error(`${what}: packed float field ${no} has ${b.length} bytes, not a multiple of 4`);
    const dv = new DataView(b.buffer, b.byteOffset, b.length);
    for (let i = 0; i < b.length; i += 4) out.push(dv.getFloat32(i, true));
  }
  return out;
}

/** `m` with every field `no` replaced by `fresh`, placed where the first one was (else at the end). */
export function replaceFields(m: Message, no: number, fresh: Field[]): Message {
  const out: Message = [];
  let placed = false;
  for (const f of m) {
    if (f.no !== no) out.push(f);
    else if (!placed) {
      out.push(...fresh);
      placed = true;
    }
  }
  if (!placed) out.push(...fresh);
  return out;
}

// --- ONNX --------------------------------------------------------------------------------------

/** Field numbers from onnx.proto. */
export const ONNX = {
  model: { irVersion: 1, producerName: 2, graph: 7, opsetImport: 8 },
  opset: { domain: 1, version: 2 },
  graph: { node: 1, name: 2, initializer: 5, input: 11, output: 12, valueInfo: 13 },
  node: { input: 1, output: 2, name: 3, opType: 4, attribute: 5, domain: 7 },
  attribute: { name: 1, f: 2, i: 3, s: 4, t: 5, g: 6, floats: 7, ints: 8, graphs: 11, type: 20 },
  tensor: { dims: 1, dataType: 2, floatData: 4, int64Data: 7, name: 8, rawData: 9, dataLocation: 14 },
  valueInfo: { name: 1, type: 2 },
} as const;

/** AttributeProto.AttributeType values used here. */
export const ATTR = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, FLOATS: 6, INTS: 7, GRAPHS: 10 } as const;
/** TensorProto.DataType.FLOAT */
export const FLOAT = 1;
/** ONNX TensorProto.DataType values of the element types xpkg's tensors have. */
export const ONNX_TYPE = { float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9, float16: 10 } as const;

export interface NodeView {
  input: string[];
  output: string[];
  name: string;
  opType: string;
  domain: string;
  attributes: Message[];
}

export function readNode(m: Message): NodeView {
  const N = ONNX.node;
  return {
    input: strings(m, N.input, 'NodeProto'),
    output: strings(m, N.output, 'NodeProto'),
    name: string(m, N.name, 'NodeProto'),
    opType: string(m, N.opType, 'NodeProto'),
    domain: string(m, N.domain, 'NodeProto'),
    attributes: fieldsOf(m, N.attribute).map((f) => sub(f, 'AttributeProto')),
  };
}

export interface AttributeView {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: string;
  t?: Message;
  floats: number[];
  ints: number[];
  /** Sub-graphs held by this attribute (If/Loop/Scan bodies). */
  graphs: Message[];
}

export function readAttribute(m: Message): AttributeView {
  const A = ONNX.attribute;
  const w = 'AttributeProto';
  const one = <T>(no: number, read: (f: Field, what: string) => T): T | undefined => {
    const f = lastOf(m, no);
    return f ? read(f, w) : undefined;
  };
  return {
    name: string(m, A.name, w),
    type: one(A.type, intOf) ?? 0,
    f: one(A.f, floatOf),
    i: one(A.i, intOf),
    s: one(A.s, stringOf),
    t: one(A.t, (f) => sub(f, 'TensorProto')),
    floats: floats(m, A.floats, w),
    ints: ints(m, A.ints, w),
    graphs: [...fieldsOf(m, A.g), ...fieldsOf(m, A.graphs)].map((f) => sub(f, 'GraphProto')),
  };
}

export interface TensorView {
  name: string;
  dims: number[];
  dataType: number;
}

export function readTensor(m: Message): TensorView {
  const T = ONNX.tensor;
  const f = lastOf(m, T.dataType);
  return {
    name: string(m, T.name, 'TensorProto'),
    dims: ints(m, T.dims, 'TensorProto'),
    dataType: f ? intOf(f, 'TensorProto') : 0,
  };
}

/** A FLOAT tensor's values (raw_data or float_data), or undefined if not float or stored externally. */
export function tensorFloat32(m: Message): Float32Array | undefined {
  const T = ONNX.tensor;
  const t = readTensor(m);
  const loc = lastOf(m, T.dataLocation);
  if (t.dataType !== FLOAT || (loc && intOf(loc, 'TensorProto') !== 0)) return undefined;
  const count = t.dims.reduce((a, d) => a * d, 1);
  const raw = lastOf(m, T.rawData);
  let out: Float32Array;
  if (raw) {
    const b = bytesOf(raw, 'TensorProto');
    if (b.length !== count * 4)
      throw new Error(`TensorProto ${t.name}: raw_data has ${b.length} bytes for ${count} floats`);
    const dv = new DataView(b.buffer, b.byteOffset, b.length);
    out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = dv.getFloat32(4 * i, true);
  } else {
    out = Float32Array.from(floats(m, T.floatData, 'TensorProto'));
    if (out.length !== count)
      throw new Error(`TensorProto ${t.name}: float_data has ${out.length} values for ${count}`);
  }
  return out;
}

/** A FLOAT TensorProto with little-endian raw_data (the form onnx's own writer uses). */
export function float32Tensor(name: string, dims: number[], data: Float32Array): Message {
  const T = ONNX.tensor;
  const raw = new Uint8Array(data.length * 4);
  const dv = new DataView(raw.buffer);
  for (let i = 0; i < data.length; i++) dv.setFloat32(4 * i, data[i], true);
  return [
    ...dims.map((d) => varintField(T.dims, d)),
    varintField(T.dataType, FLOAT),
    stringField(T.name, name),
    bytesField(T.rawData, raw),
  ];
}

export function floatAttribute(name: string, f: number): Message {
  const A = ONNX.attribute;
  return [stringField(A.name, name), floatField(A.f, f), varintField(A.type, ATTR.FLOAT)];
}

export function encodeNode(n: {
  input: string[];
  output: string[];
  name?: string;
  opType: string;
  attributes?: Message[];
}): Message {
  const N = ONNX.node;
  return [
    ...n.input.map((s) => stringField(N.input, s)),
    ...n.output.map((s) => stringField(N.output, s)),
    ...(n.name ? [stringField(N.name, n.name)] : []),
    stringField(N.opType, n.opType),
    ...(n.attributes ?? []).map((a) => messageField(N.attribute, a)),
  ];
}

/** The model's opset version for `domain` ('' and 'ai.onnx' are the same default domain). */
export function opsetVersion(model: Message, domain = ''): number | undefined {
  const O = ONNX.opset;
  const norm = (d: string) => (d === 'ai.onnx' ? '' : d);
  let v: number | undefined;
  for (const f of fieldsOf(model, ONNX.model.opsetImport)) {
    const o = sub(f, 'OperatorSetIdProto');
    if (norm(string(o, O.domain, 'OperatorSetIdProto')) !== norm(domain)) continue;
    const vf = lastOf(o, O.version);
    if (vf) v = intOf(vf, 'OperatorSetIdProto');
  }
  return v;
}
