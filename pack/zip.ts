/**
 * Byte layout of the strict ZIP profile (spec/FORMAT.md §2): record encoders and decoders only.
 * Policy (what is allowed) lives in reader.ts; this file just knows where the fields are.
 */
import { ALIGNMENT, PADDING_EXTRA_ID } from '../spec/limits.js';

export const SIG_LOCAL = 0x04034b50;
export const SIG_CENTRAL = 0x02014b50;
export const SIG_END = 0x06054b50;
export const SIG_END64 = 0x06064b50;
export const SIG_LOCATOR64 = 0x07064b50;

export const LOCAL_SIZE = 30;
export const CENTRAL_SIZE = 46;
export const END_SIZE = 22;
export const END64_SIZE = 56;
export const LOCATOR64_SIZE = 20;

export const FLAG_UTF8 = 0x0800;
export const ZIP64_EXTRA_ID = 0x0001;
export const U32_MAX = 0xffffffff;
export const U16_MAX = 0xffff;
/** "made by" = Unix (3), spec version 4.5. */
export const VERSION_MADE_BY = (3 << 8) | 45;
/** Regular file, rw-r--r--, in the Unix half of the external attributes. */
export const EXTERNAL_ATTR = (0o100644 << 16) >>> 0;

/** DOS date/time of 1980-01-01 00:00:00, the default fixed timestamp. */
export const DEFAULT_DOS_TIME = { time: 0, date: (0 << 9) | (1 << 5) | 1 };

/** Fixed timestamp for every entry: SOURCE_DATE_EPOCH (UTC, clamped to the DOS range) or 1980-01-01. */
export function dosTimestamp(sourceDateEpoch: string | undefined = process.env.SOURCE_DATE_EPOCH): {
  time: number;
  date: number;
} {
  if (sourceDateEpoch === undefined || sourceDateEpoch === '') return DEFAULT_DOS_TIME;
  if (!/^[0-9]+$/.test(sourceDateEpoch))
    throw new RangeError(`SOURCE_DATE_EPOCH must be a non-negative integer, not ${JSON.stringify(sourceDateEpoch)}`);
  const ms = Math.min(
    Math.max(Number(sourceDateEpoch) * 1000, Date.UTC(1980, 0, 1)),
    Date.UTC(2107, 11, 31, 23, 59, 58),
  );
  const d = new Date(ms);
  return {
    time: (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | (d.getUTCSeconds() >> 1),
    date: ((d.getUTCFullYear() - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate(),
  };
}

export interface EntryLayout {
  name: Buffer;
  method: 0 | 8;
  crc32: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
  /** Alignment padding bytes in the local extra field, 0 or 4..65535 (record header included). */
  padding: number;
}

export const needsZip64Sizes = (e: { size: number; compressedSize: number }) =>
  e.size >= U32_MAX || e.compressedSize >= U32_MAX;
export const needsZip64Offset = (e: { localHeaderOffset: number }) => e.localHeaderOffset >= U32_MAX;
const versionNeeded = (zip64: boolean) => (zip64 ? 45 : 20);

/** Local extra field: [zip64 sizes] then [padding record]. */
export function localExtraLength(e: { size: number; compressedSize: number; padding: number }): number {
  return (needsZip64Sizes(e) ? 20 : 0) + e.padding;
}

export function localHeaderLength(e: { name: Buffer; size: number; compressedSize: number; padding: number }): number {
  return LOCAL_SIZE + e.name.length + localExtraLength(e);
}

/**
 * Padding (bytes of extra field) that puts the data of an entry whose local header starts at
 * `headerOffset` on an ALIGNMENT boundary; null when impossible (1..3 bytes: an extra record
 * needs 4).
 */
export function alignmentPadding(headerOffset: number, name: Buffer, size: number): number | null {
  const base = headerOffset + LOCAL_SIZE + name.length + (needsZip64Sizes({ size, compressedSize: size }) ? 20 : 0);
  const pad = (ALIGNMENT - (base % ALIGNMENT)) % ALIGNMENT;
  return pad === 0 || pad >= 4 ? pad : null;
}

export function encodeLocalHeader(e: EntryLayout, ts: { time: number; date: number }): Buffer {
  const z64 = needsZip64Sizes(e);
  const extraLen = localExtraLength(e);
  const b = Buffer.alloc(LOCAL_SIZE + e.name.length + extraLen);
  b.writeUInt32LE(SIG_LOCAL, 0);
  b.writeUInt16LE(versionNeeded(z64), 4);
  b.writeUInt16LE(FLAG_UTF8, 6);
  b.writeUInt16LE(e.method, 8);
  b.writeUInt16LE(ts.time, 10);
  b.writeUInt16LE(ts.date, 12);
  b.writeUInt32LE(e.crc32 >>> 0, 14);
  b.writeUInt32LE(z64 ? U32_MAX : e.compressedSize, 18);
  b.writeUInt32LE(z64 ? U32_MAX : e.size, 22);
  b.writeUInt16LE(e.name.length, 26);
  b.writeUInt16LE(extraLen, 28);
  e.name.copy(b, LOCAL_SIZE);
  let o = LOCAL_SIZE + e.name.length;
  if (z64) {
    b.writeUInt16LE(ZIP64_EXTRA_ID, o);
    b.writeUInt16LE(16, o + 2);
    b.writeBigUInt64LE(BigInt(e.size), o + 4);
    b.writeBigUInt64LE(BigInt(e.compressedSize), o + 12);
    o += 20;
  }
  if (e.padding) {
    b.writeUInt16LE(PADDING_EXTRA_ID, o);
    b.writeUInt16LE(e.padding - 4, o + 2);
  }
  return b;
}

export function centralExtraLength(e: EntryLayout): number {
  const n = (needsZip64Sizes(e) ? 16 : 0) + (needsZip64Offset(e) ? 8 : 0);
  return n ? n + 4 : 0;
}

export function encodeCentralHeader(e: EntryLayout, ts: { time: number; date: number }): Buffer {
  const zs = needsZip64Sizes(e);
  const zo = needsZip64Offset(e);
  const extraLen = centralExtraLength(e);
  const b = Buffer.alloc(CENTRAL_SIZE + e.name.length + extraLen);
  b.writeUInt32LE(SIG_CENTRAL, 0);
  b.writeUInt16LE(VERSION_MADE_BY, 4);
  b.writeUInt16LE(versionNeeded(zs || zo), 6);
  b.writeUInt16LE(FLAG_UTF8, 8);
  b.writeUInt16LE(e.method, 10);
  b.writeUInt16LE(ts.time, 12);
  b.writeUInt16LE(ts.date, 14);
  b.writeUInt32LE(e.crc32 >>> 0, 16);
  b.writeUInt32LE(zs ? U32_MAX : e.compressedSize, 20);
  b.writeUInt32LE(zs ? U32_MAX : e.size, 24);
  b.writeUInt16LE(e.name.length, 28);
  b.writeUInt16LE(extraLen, 30);
  b.writeUInt16LE(0, 32); // comment length
  b.writeUInt16LE(0, 34); // disk number start
  b.writeUInt16LE(0, 36); // internal attributes
  b.writeUInt32LE(EXTERNAL_ATTR, 38);
  b.writeUInt32LE(zo ? U32_MAX : e.localHeaderOffset, 42);
  e.name.copy(b, CENTRAL_SIZE);
  if (extraLen) {
    let o = CENTRAL_SIZE + e.name.length;
    b.writeUInt16LE(ZIP64_EXTRA_ID, o);
    b.writeUInt16LE(extraLen - 4, o + 2);
    o += 4;
    if (zs) {
      b.writeBigUInt64LE(BigInt(e.size), o);
      b.writeBigUInt64LE(BigInt(e.compressedSize), o + 8);
      o += 16;
    }
    if (zo) b.writeBigUInt64LE(BigInt(e.localHeaderOffset), o);
  }
  return b;
}

/** End records: ZIP64 end + locator only when a count, size or offset does not fit the classic record. */
export function encodeEnd(entries: number, cdOffset: number, cdSize: number): Buffer {
  const z64 = entries >= U16_MAX || cdOffset >= U32_MAX || cdSize >= U32_MAX;
  const parts: Buffer[] = [];
  if (z64) {
    const e64 = Buffer.alloc(END64_SIZE);
    e64.writeUInt32LE(SIG_END64, 0);
    e64.writeBigUInt64LE(BigInt(END64_SIZE - 12), 4);
    e64.writeUInt16LE(VERSION_MADE_BY, 12);
    e64.writeUInt16LE(45, 14);
    e64.writeUInt32LE(0, 16);
    e64.writeUInt32LE(0, 20);
    e64.writeBigUInt64LE(BigInt(entries), 24);
    e64.writeBigUInt64LE(BigInt(entries), 32);
    e64.writeBigUInt64LE(BigInt(cdSize), 40);
    e64.writeBigUInt64LE(BigInt(cdOffset), 48);
    const loc = Buffer.alloc(LOCATOR64_SIZE);
    loc.writeUInt32LE(SIG_LOCATOR64, 0);
    loc.writeUInt32LE(0, 4);
    loc.writeBigUInt64LE(BigInt(cdOffset + cdSize), 8);
    loc.writeUInt32LE(1, 16);
    parts.push(e64, loc);
  }
  const end = Buffer.alloc(END_SIZE);
  end.writeUInt32LE(SIG_END, 0);
  end.writeUInt16LE(0, 4);
  end.writeUInt16LE(0, 6);
  end.writeUInt16LE(z64 ? U16_MAX : entries, 8);
  end.writeUInt16LE(z64 ? U16_MAX : entries, 10);
  end.writeUInt32LE(z64 ? U32_MAX : cdSize, 12);
  end.writeUInt32LE(z64 ? U32_MAX : cdOffset, 16);
  end.writeUInt16LE(0, 20);
  parts.push(end);
  return Buffer.concat(parts);
}
