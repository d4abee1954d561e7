/**
 * Byte-level archive crafting for test vectors and attack tests: an archive is described as a list
 * of entries with optional lies (sizes, CRC, flags, offsets, patched headers) and laid out with the
 * record encoders of pack/zip.ts. Without any lie, `craftArchive(parseArchive(pkg))` reproduces a
 * packed package byte for byte, so every hostile variant differs from a valid package only where
 * it says so.
 *
 * Deflate streams come from `deflateFixed`, a tiny fixed-Huffman encoder written here on purpose:
 * zlib's output differs between builds and CPUs, and frozen vectors must be reproducible anywhere.
 */
import { createHash } from 'node:crypto';
import { crc32, inflateRawSync } from 'node:zlib';
import * as Z from '../../pack/zip.js';
import { canonicalBytes } from '../../spec/canonical.js';
import { BLOCK_SIZE } from '../../spec/limits.js';
import type { FileRecord } from '../../spec/schema.js';

export type DosTime = { time: number; date: number };

export interface CraftEntry {
  name: string | Buffer;
  /** Uncompressed content (what the CRC and the manifest digests describe by default). */
  data: Buffer;
  /** 0 stored (default), 8 deflate (via deflateFixed), or any other value written as-is. */
  method?: number;
  /** Bytes stored in the archive; default: `data`, or its deflate stream for method 8. */
  raw?: Buffer;
  /** Header lies, written into both headers. */
  size?: number;
  compressedSize?: number;
  crc32?: number;
  flags?: number;
  /** Central external attributes (default: regular 0644 file). */
  externalAttr?: number;
  /** Alignment padding bytes in the local extra field, or 'align' for the minimal 64 KiB alignment. */
  padding?: number | 'align';
  /** Encode both headers with ZIP64 size records even though 32 bits suffice. */
  forceZip64Sizes?: boolean;
  /** Bytes inserted before this entry's local header. */
  gapBefore?: Buffer;
  /** Replaces the local header offset the central directory records for this entry. */
  offset?: (actual: number) => number;
  /** Byte surgery on the encoded headers (may return a replacement buffer). */
  patchLocal?: (h: Buffer) => Buffer | void;
  patchCentral?: (h: Buffer) => Buffer | void;
}

export interface CraftOptions {
  ts?: DosTime;
  /** Bytes before the archive. */
  prefix?: Buffer;
  /** Whether recorded offsets count the prefix (as `zip -A` does for self-extractors). Default false. */
  offsetsIncludePrefix?: boolean;
  /** Order of the central headers, as indices into the entries (default: physical order). */
  centralOrder?: number[];
  /** Bytes between the last entry and the central directory. */
  gapBeforeCentral?: Buffer;
  /** Write a ZIP64 end record and locator even when not needed. */
  forceZip64End?: boolean;
  patchEnd?: (end: Buffer) => Buffer | void;
  /** Bytes after the end record. */
  suffix?: Buffer;
}

const patched = (b: Buffer, f?: (h: Buffer) => Buffer | void): Buffer => (f ? (f(b) ?? b) : b);

/** Lays out entries contiguously (unless told otherwise) and appends the central directory and end record. */
export function craftArchive(entries: CraftEntry[], options: CraftOptions = {}): Buffer {
  const ts = options.ts ?? Z.DEFAULT_DOS_TIME;
  const parts: Buffer[] = [];
  let pos = 0;
  const push = (b: Buffer) => {
    parts.push(b);
    pos += b.length;
  };
  if (options.prefix) push(options.prefix);
  const base = options.offsetsIncludePrefix ? 0 : (options.prefix?.length ?? 0);
  const centrals: Buffer[] = [];
  for (const e of entries) {
    if (e.gapBefore) push(e.gapBefore);
    const name = typeof e.name === 'string' ? Buffer.from(e.name, 'utf8') : e.name;
    const method = e.method ?? 0;
    const raw = e.raw ?? (method === 8 ? deflateFixed(e.data) : e.data);
    const at = pos - base;
    const layout: Z.EntryLayout = {
      name,
      method: 0,
      crc32: e.crc32 ?? crc32(e.data) >>> 0,
      compressedSize: e.compressedSize ?? raw.length,
      size: e.size ?? e.data.length,
      localHeaderOffset: e.offset ? e.offset(at) : at,
      padding: 0,
    };
    if (e.padding === 'align') {
      const pad = Z.alignmentPadding(at, name, layout.size);
      if (pad === null) throw new Error(`cannot align ${name.toString()} at ${at}`);
      layout.padding = pad;
    } else layout.padding = e.padding ?? 0;
    let local = Z.encodeLocalHeader(layout, ts);
    let central = Z.encodeCentralHeader(layout, ts);
    if (e.forceZip64Sizes) [local, central] = [zip64Local(local), zip64Central(central)];
    local.writeUInt16LE(method, 8);
    central.writeUInt16LE(method, 10);
    if (e.flags !== undefined) {
      local.writeUInt16LE(e.flags, 6);
      central.writeUInt16LE(e.flags, 8);
    }
    if (e.externalAttr !== undefined) central.writeUInt32LE(e.externalAttr >>> 0, 38);
    push(patched(local, e.patchLocal));
    push(raw);
    centrals.push(patched(central, e.patchCentral));
  }
  if (options.gapBeforeCentral) push(options.gapBeforeCentral);
  const cd = Buffer.concat((options.centralOrder ?? centrals.map((_, i) => i)).map((i) => centrals[i]));
  const cdOffset = pos - base;
  push(cd);
  const end = options.forceZip64End
    ? zip64End(centrals.length, cdOffset, cd.length)
    : Z.encodeEnd(centrals.length, cdOffset, cd.length);
  push(patched(end, options.patchEnd));
  if (options.suffix) push(options.suffix);
  return Buffer.concat(parts);
}

/** Rewrites a classic local header into one carrying its sizes in a ZIP64 extra record. */
function zip64Local(h: Buffer): Buffer {
  const nameLen = h.readUInt16LE(26);
  const extra = Buffer.alloc(20);
  extra.writeUInt16LE(Z.ZIP64_EXTRA_ID, 0);
  extra.writeUInt16LE(16, 2);
  extra.writeBigUInt64LE(BigInt(h.readUInt32LE(22)), 4);
  extra.writeBigUInt64LE(BigInt(h.readUInt32LE(18)), 12);
  const out = Buffer.concat([h.subarray(0, Z.LOCAL_SIZE + nameLen), extra, h.subarray(Z.LOCAL_SIZE + nameLen)]);
  out.writeUInt16LE(45, 4);
  out.writeUInt32LE(Z.U32_MAX, 18);
  out.writeUInt32LE(Z.U32_MAX, 22);
  out.writeUInt16LE(h.readUInt16LE(28) + 20, 28);
  return out;
}

function zip64Central(h: Buffer): Buffer {
  const nameLen = h.readUInt16LE(28);
  if (h.readUInt16LE(30) !== 0) throw new Error('zip64Central expects a header without extra field');
  const extra = Buffer.alloc(20);
  extra.writeUInt16LE(Z.ZIP64_EXTRA_ID, 0);
  extra.writeUInt16LE(16, 2);
  extra.writeBigUInt64LE(BigInt(h.readUInt32LE(24)), 4);
  extra.writeBigUInt64LE(BigInt(h.readUInt32LE(20)), 12);
  const out = Buffer.concat([h.subarray(0, Z.CENTRAL_SIZE + nameLen), extra]);
  out.writeUInt16LE(45, 6);
  out.writeUInt32LE(Z.U32_MAX, 20);
  out.writeUInt32LE(Z.U32_MAX, 24);
  out.writeUInt16LE(20, 30);
  return out;
}

/** ZIP64 end record + locator + classic end record with every field at its maximum. */
export function zip64End(entries: number, cdOffset: number, cdSize: number): Buffer {
  const e64 = Buffer.alloc(Z.END64_SIZE);
  e64.writeUInt32LE(Z.SIG_END64, 0);
  e64.writeBigUInt64LE(BigInt(Z.END64_SIZE - 12), 4);
  e64.writeUInt16LE(Z.VERSION_MADE_BY, 12);
  e64.writeUInt16LE(45, 14);
  e64.writeBigUInt64LE(BigInt(entries), 24);
  e64.writeBigUInt64LE(BigInt(entries), 32);
  e64.writeBigUInt64LE(BigInt(cdSize), 40);
  e64.writeBigUInt64LE(BigInt(cdOffset), 48);
  const loc = Buffer.alloc(Z.LOCATOR64_SIZE);
  loc.writeUInt32LE(Z.SIG_LOCATOR64, 0);
  loc.writeBigUInt64LE(BigInt(cdOffset + cdSize), 8);
  loc.writeUInt32LE(1, 16);
  const end = Buffer.alloc(Z.END_SIZE);
  end.writeUInt32LE(Z.SIG_END, 0);
  end.writeUInt16LE(Z.U16_MAX, 8);
  end.writeUInt16LE(Z.U16_MAX, 10);
  end.writeUInt32LE(Z.U32_MAX, 12);
  end.writeUInt32LE(Z.U32_MAX, 16);
  return Buffer.concat([e64, loc, end]);
}

/**
 * Splits a well-formed classic (non-ZIP64) archive into craft entries. Trusts its input: it is for
 * packages this repository just wrote, not a reader.
 */
export function parseArchive(buf: Buffer): { entries: CraftEntry[]; ts: DosTime } {
  const endAt = buf.length - Z.END_SIZE;
  if (buf.readUInt32LE(endAt) !== Z.SIG_END) throw new Error('parseArchive: no end record at the end');
  const count = buf.readUInt16LE(endAt + 10);
  let p = buf.readUInt32LE(endAt + 16);
  const entries: CraftEntry[] = [];
  let ts: DosTime = Z.DEFAULT_DOS_TIME;
  for (let i = 0; i < count; i++) {
    const nameLen = buf.readUInt16LE(p + 28);
    const method = buf.readUInt16LE(p + 10);
    const compressedSize = buf.readUInt32LE(p + 20);
    const offset = buf.readUInt32LE(p + 42);
    if (i === 0) ts = { time: buf.readUInt16LE(p + 12), date: buf.readUInt16LE(p + 14) };
    const name = Buffer.from(buf.subarray(p + Z.CENTRAL_SIZE, p + Z.CENTRAL_SIZE + nameLen));
    const localExtra = buf.readUInt16LE(offset + 28);
    const dataAt = offset + Z.LOCAL_SIZE + buf.readUInt16LE(offset + 26) + localExtra;
    const raw = Buffer.from(buf.subarray(dataAt, dataAt + compressedSize));
    // Padding is re-derived on layout ('align'), so entries stay aligned when the manifest changes length.
    entries.push({
      name: name.toString('utf8'),
      data: method === 8 ? inflateRawSync(raw) : raw,
      method,
      padding: localExtra ? 'align' : 0,
    });
    p += Z.CENTRAL_SIZE + nameLen + buf.readUInt16LE(p + 30) + buf.readUInt16LE(p + 32);
  }
  return { entries, ts };
}

/** The manifest record of a payload file with the given content. */
export function fileRecord(path: string, data: Buffer): FileRecord {
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const blocks: string[] = [];
  for (let o = 0; o < data.length; o += BLOCK_SIZE) blocks.push(sha(data.subarray(o, o + BLOCK_SIZE)));
  return { path, size: data.length, sha256: sha(data), blocks };
}

/** Deep copy of the manifest held by the first entry (JSON.parse is fine: the input is our own). */
export function manifestOf(entries: CraftEntry[]): Record<string, unknown> & { files: FileRecord[] } {
  return JSON.parse(entries[0].data.toString('utf8'));
}

/** Replaces the first entry's data with the canonical bytes of `manifest`. */
export function withManifest(entries: CraftEntry[], manifest: unknown): CraftEntry[] {
  return [{ ...entries[0], data: canonicalBytes(manifest) }, ...entries.slice(1)];
}

/** Adds payload entries (sorted into the manifest's `files`, appended to the archive) and returns new entries. */
export function withFiles(
  entries: CraftEntry[],
  added: CraftEntry[],
  options: { listInManifest?: boolean } = {},
): CraftEntry[] {
  const m = manifestOf(entries);
  if (options.listInManifest !== false) {
    const byteOrder = (a: FileRecord, b: FileRecord) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path));
    m.files = [...m.files, ...added.map((e) => fileRecord(e.name.toString(), e.data))].sort(byteOrder);
  }
  return [...withManifest(entries, m), ...added];
}

// --- A deterministic fixed-Huffman deflate encoder (RFC 1951 §3.2.6) -------------------------------

const LEN_BASE = [
  3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258,
];
const LEN_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE = [
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
  8193, 12289, 16385, 24577,
];
const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];

/** One final fixed-Huffman block; greedy LZ77 with a one-candidate hash. Deterministic by construction. */
export function deflateFixed(data: Buffer): Buffer {
  const out: number[] = [];
  let acc = 0;
  let nbits = 0;
  const bits = (value: number, n: number) => {
    for (let i = 0; i < n; i++) {
      acc |= ((value >>> i) & 1) << nbits;
      if (++nbits === 8) {
        out.push(acc);
        acc = 0;
        nbits = 0;
      }
    }
  };
  const huff = (code: number, n: number) => {
    for (let i = n - 1; i >= 0; i--) bits((code >>> i) & 1, 1);
  };
  const symbol = (s: number) => {
    if (s < 144) huff(0x30 + s, 8);
    else if (s < 256) huff(0x190 + s - 144, 9);
    else if (s < 280) huff(s - 256, 7);
    else huff(0xc0 + s - 280, 8);
  };
  bits(1, 1); // BFINAL
  bits(1, 2); // BTYPE = 01, fixed Huffman
  const last = new Map<number, number>();
  let i = 0;
  while (i < data.length) {
    let len = 0;
    let dist = 0;
    if (i + 3 <= data.length) {
      const key = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
      const cand = last.get(key);
      last.set(key, i);
      if (cand !== undefined && i - cand <= 32768) {
        while (len < 258 && i + len < data.length && data[cand + len] === data[i + len]) len++;
        dist = i - cand;
      }
    }
    if (len >= 3) {
      let c = LEN_BASE.length - 1;
      while (LEN_BASE[c] > len) c--;
      symbol(257 + c);
      bits(len - LEN_BASE[c], LEN_EXTRA[c]);
      let d = DIST_BASE.length - 1;
      while (DIST_BASE[d] > dist) d--;
      huff(d, 5);
      bits(dist - DIST_BASE[d], DIST_EXTRA[d]);
      // Index the positions inside the match too, so runs find distance 1 (13 bits per 258 bytes).
      for (let k = i + 1; k < i + len && k + 3 <= data.length; k++)
        last.set((data[k] << 16) | (data[k + 1] << 8) | data[k + 2], k);
      i += len;
    } else {
      symbol(data[i]);
      i++;
    }
  }
  symbol(256);
  if (nbits) out.push(acc);
  return Buffer.from(out);
}
