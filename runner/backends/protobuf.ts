/**
 * The reading half of a small protobuf wire-format codec for ONNX models (no protobuf library is
 * installed); runner/backends/onnx-proto.ts adds the writers and ONNX views on top of it.
 *
 * A message decodes into its ordered list of fields, each a view of its own original bytes (never a
 * copy, so skipping a large `raw_data` costs nothing), and sub-messages decode on demand. Malformed
 * input (truncated data, bad varints, unknown wire types) throws a plain Error naming what and
 * where, never loops.
 */

/** Protobuf wire types ONNX uses: varint, 64-bit, length-delimited, 32-bit (groups are rejected). */
export type WireType = 0 | 1 | 2 | 5;

export interface Field {
  readonly no: number;
  readonly wire: WireType;
  /** The field's whole encoding: key, length prefix if any, value. */
  readonly raw: Uint8Array;
  /** Where the value starts in `raw` (after the key and the length prefix). */
  readonly at: number;
}

/** A decoded message: its fields in wire order. */
export type Message = Field[];

export function readVarint(buf: Uint8Array, pos: number, what: string): { value: bigint; end: number } {
  let value = 0n;
  for (let i = 0; i < 10; i++) {
    if (pos + i >= buf.length) throw new Error(`${what}: truncated varint at byte ${pos}`);
    const b = buf[pos + i];
    // The 10th byte may only carry the 64th bit.
    if (i === 9 && b > 1) throw new Error(`${what}: varint overflows 64 bits at byte ${pos}`);
    value |= BigInt(b & 0x7f) << BigInt(7 * i);
    if (!(b & 0x80)) return { value, end: pos + i + 1 };
  }
  throw new Error(`${what}: varint longer than 10 bytes at byte ${pos}`);
}

/**
 * `readVarint` as a number, for keys and lengths: plain arithmetic up to 7 bytes (49 bits, exact),
 * BigInt beyond. Splitting a model's graph reads hundreds of thousands of them: BigInt for each
 * made `hasStaticInputs` cost ~35 ms of CPU per cold start of the OCR package.
 */
function readSmallVarint(buf: Uint8Array, pos: number, what: string): { value: number; end: number } {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 7; i++) {
    if (pos + i >= buf.length) throw new Error(`${what}: truncated varint at byte ${pos}`);
    const b = buf[pos + i];
    value += (b & 0x7f) * scale;
    if (!(b & 0x80)) return { value, end: pos + i + 1 };
    scale *= 128;
  }
  const big = readVarint(buf, pos, what);
  return { value: Number(big.value), end: big.end };
}

/**
 * Walks the fields of `buf` (one level), checking each as `decodeMessage` does, and hands each to
 * `visit` as offsets into `buf`: the field starts at `start`, its value at `at`, and it ends at
 * `end`. Nothing is allocated per field: a model of tens of millions of empty fields costs time in
 * proportion, not memory (decodeMessage's field records, ~200 bytes each, ran a 48 MB model out of
 * heap).
 */
export function forEachField(
  buf: Uint8Array,
  what: string,
  visit: (no: number, wire: WireType, start: number, at: number, end: number) => void,
): void {
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    const k = readSmallVarint(buf, pos, what);
    // a key above 2^49 has a field number above the protobuf maximum (2^29 - 1) and is refused below
    const no = Math.floor(k.value / 8);
    const wire = k.value % 8;
    if (no === 0 || no > 0x1fffffff) throw new Error(`${what}: invalid field number ${no} at byte ${start}`);
    let at = k.end;
    switch (wire) {
      case 0:
        pos = readSmallVarint(buf, at, what).end;
        break;
      case 1:
        pos = at + 8;
        break;
      case 5:
        pos = at + 4;
        break;
      case 2: {
        const len = readSmallVarint(buf, at, what);
        at = len.end;
        if (len.value > buf.length - at)
          throw new Error(`${what}: field ${no} is truncated (length ${len.value}, ${buf.length - at} bytes left)`);
        pos = at + len.value;
        break;
      }
      default:
        throw new Error(`${what}: unsupported wire type ${wire} for field ${no} at byte ${start}`);
    }
    if (pos > buf.length) throw new Error(`${what}: field ${no} is truncated at byte ${start}`);
    visit(no, wire as WireType, start, at, pos);
  }
}

/** Splits `buf` into its fields (one level; sub-messages stay bytes until `sub()` decodes them). */
export function decodeMessage(buf: Uint8Array, what = 'message'): Message {
  const fields: Message = [];
  forEachField(buf, what, (no, wire, start, at, end) => {
    fields.push({ no, wire, raw: buf.subarray(start, end), at: at - start });
  });
  return fields;
}

/** Each length-delimited field `no` of `buf`, as a view of its value, in wire order (another wire type throws). */
export function eachBytes(buf: Uint8Array, no: number, what: string, fn: (value: Uint8Array) => void): void {
  forEachField(buf, what, (n, wire, _start, at, end) => {
    if (n !== no) return;
    if (wire !== 2) throw new Error(`${what}: field ${no} has wire type ${wire}, expected 2`);
    fn(buf.subarray(at, end));
  });
}

/** The last length-delimited field `no` of `buf` (protobuf merge semantics for a singular field). */
export function lastBytes(buf: Uint8Array, no: number, what: string): Uint8Array | undefined {
  let last: Uint8Array | undefined;
  eachBytes(buf, no, what, (b) => {
    last = b;
  });
  return last;
}

/** The last varint field `no` of `buf` as a signed 64-bit integer (int64/int32/enum), as a JS number. */
export function lastInt(buf: Uint8Array, no: number, what: string): number | undefined {
  let value: number | undefined;
  forEachField(buf, what, (n, wire, _start, at) => {
    if (n !== no) return;
    if (wire !== 0) throw new Error(`${what}: field ${no} has wire type ${wire}, expected 0`);
    value = Number(BigInt.asIntN(64, readVarint(buf, at, what).value));
  });
  return value;
}

const decoder = new TextDecoder();

export function expectWire(f: Field, wire: WireType, what: string): void {
  if (f.wire !== wire) throw new Error(`${what}: field ${f.no} has wire type ${f.wire}, expected ${wire}`);
}

export const fieldsOf = (m: Message, no: number): Field[] => m.filter((f) => f.no === no);
/** The last occurrence wins for a singular field (protobuf merge semantics). */
export function lastOf(m: Message, no: number): Field | undefined {
  for (let i = m.length - 1; i >= 0; i--) if (m[i].no === no) return m[i];
  return undefined;
}

export function bytesOf(f: Field, what = 'message'): Uint8Array {
  expectWire(f, 2, what);
  return f.raw.subarray(f.at);
}
export const stringOf = (f: Field, what = 'message'): string => decoder.decode(bytesOf(f, what));
/** UTF-8 text of a length-delimited value (from `eachBytes`/`lastBytes`). */
export const textOf = (b: Uint8Array): string => decoder.decode(b);
export const sub = (f: Field, what = 'message'): Message => decodeMessage(bytesOf(f, what), what);

/** A varint field as a signed 64-bit integer (int64/int32/enum), as a JS number. */
export function intOf(f: Field, what = 'message'): number {
  expectWire(f, 0, what);
  return Number(BigInt.asIntN(64, readVarint(f.raw, f.at, what).value));
}
