/**
 * Per-entry checks of the strict profile: central header fields, local header against central,
 * compression limits, and decoding (inflate with the declared size as a hard cap, CRC).
 */
import { crc32, InflateFailure, inflateRaw } from '../platform/index.js';
import { FormatError } from '../spec/errors.js';
import { LIMITS, PADDING_EXTRA_ID } from '../spec/limits.js';
import type { EntryInfo } from './types.js';
import * as Z from './zip.js';

export interface CentralEntry extends EntryInfo {
  time: number;
  date: number;
  nameBytes: Buffer;
  zip64Sizes: boolean;
  /** Alignment padding found in the local header. */
  padding: number;
}

// ignoreBOM: keep a leading U+FEFF so the name grammar rejects it (a stripping decoder would make
// the bytes "\xEF\xBB\xBFa" and "a" the same name).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function parseCentral(
  cd: Buffer,
  p: number,
  index: number,
  nameLen: number,
  extraLen: number,
  commentLen: number,
): CentralEntry {
  const flags = cd.readUInt16LE(p + 8);
  const method = cd.readUInt16LE(p + 10);
  const nameBytes = Buffer.from(cd.subarray(p + Z.CENTRAL_SIZE, p + Z.CENTRAL_SIZE + nameLen));
  let name: string;
  try {
    name = utf8.decode(nameBytes);
  } catch {
    throw new FormatError('E_PATH_UNSAFE', `entry ${index} has a name that is not valid UTF-8`, { index });
  }
  const where = { name, index };
  if (commentLen) throw new FormatError('E_ARCHIVE_COMMENT', `entry ${JSON.stringify(name)} has a comment`, where);
  if (flags & 0x0001 || flags & 0x0040 || method === 99)
    throw new FormatError('E_ARCHIVE_ENCRYPTED', `entry ${JSON.stringify(name)} is encrypted`, where);
  if (flags & 0x0008)
    throw new FormatError('E_ARCHIVE_DATA_DESCRIPTOR', `entry ${JSON.stringify(name)} uses a data descriptor`, where);
  if (flags !== Z.FLAG_UTF8)
    throw new FormatError(
      'E_ARCHIVE_UNSUPPORTED',
      `entry ${JSON.stringify(name)} has general-purpose flags 0x${flags.toString(16)}; only the UTF-8 flag is allowed`,
      { ...where, flags },
    );
  if (method !== 0 && method !== 8)
    throw new FormatError(
      'E_ARCHIVE_METHOD',
      `entry ${JSON.stringify(name)} uses compression method ${method}; only stored (0) and deflate (8) are allowed`,
      { ...where, method },
    );
  const madeBy = cd.readUInt16LE(p + 4);
  const external = cd.readUInt32LE(p + 38);
  const mode = external >>> 16;
  // Exactly Unix + spec 4.5: any other value would be a byte that changes without anything noticing.
  if (madeBy !== Z.VERSION_MADE_BY)
    throw new FormatError(
      'E_ARCHIVE_UNSUPPORTED',
      `entry ${JSON.stringify(name)} has 'version made by' 0x${madeBy.toString(16)}; only 0x${Z.VERSION_MADE_BY.toString(16)} (Unix, 4.5) is allowed`,
      { ...where, madeBy },
    );
  if ((mode & 0o170000) !== 0o100000 || name.endsWith('/'))
    throw new FormatError(
      'E_ARCHIVE_SPECIAL_FILE',
      `entry ${JSON.stringify(name)} is not a regular file (mode ${mode.toString(8)})`,
      { ...where, mode },
    );
  if (external !== Z.EXTERNAL_ATTR)
    throw new FormatError(
      'E_ARCHIVE_UNSUPPORTED',
      `entry ${JSON.stringify(name)} has attributes ${external.toString(16)}; only a regular 0644 file is allowed`,
      { ...where, external },
    );
  if (cd.readUInt16LE(p + 34) !== 0 || cd.readUInt16LE(p + 36) !== 0)
    throw new FormatError(
      'E_ARCHIVE_UNSUPPORTED',
      `entry ${JSON.stringify(name)} has a disk number or internal attributes`,
      where,
    );
  let compressedSize = cd.readUInt32LE(p + 20);
  let size = cd.readUInt32LE(p + 24);
  let localHeaderOffset = cd.readUInt32LE(p + 42);
  const zip64Sizes = compressedSize === Z.U32_MAX || size === Z.U32_MAX;
  const zip64Offset = localHeaderOffset === Z.U32_MAX;
  if (zip64Sizes && !(compressedSize === Z.U32_MAX && size === Z.U32_MAX))
    throw new FormatError(
      'E_ARCHIVE_EXTRA_FIELD',
      `entry ${JSON.stringify(name)}: ZIP64 sizes must both be in the extra field`,
      where,
    );
  const expectExtra = zip64Sizes || zip64Offset ? 4 + (zip64Sizes ? 16 : 0) + (zip64Offset ? 8 : 0) : 0;
  if (extraLen !== expectExtra)
    throw new FormatError(
      'E_ARCHIVE_EXTRA_FIELD',
      `entry ${JSON.stringify(name)} has ${extraLen} bytes of central extra field; expected ${expectExtra}`,
      where,
    );
  if (expectExtra) {
    const x = p + Z.CENTRAL_SIZE + nameLen;
    if (cd.readUInt16LE(x) !== Z.ZIP64_EXTRA_ID || cd.readUInt16LE(x + 2) !== expectExtra - 4)
      throw new FormatError(
        'E_ARCHIVE_EXTRA_FIELD',
        `entry ${JSON.stringify(name)}: malformed ZIP64 extra field`,
        where,
      );
    let o = x + 4;
    if (zip64Sizes) {
      size = Number(cd.readBigUInt64LE(o));
      compressedSize = Number(cd.readBigUInt64LE(o + 8));
      o += 16;
      if (!Z.needsZip64Sizes({ size, compressedSize }))
        throw new FormatError(
          'E_ARCHIVE_EXTRA_FIELD',
          `entry ${JSON.stringify(name)}: ZIP64 sizes used where 32 bits suffice`,
          where,
        );
    }
    if (zip64Offset) {
      localHeaderOffset = Number(cd.readBigUInt64LE(o));
      if (localHeaderOffset < Z.U32_MAX)
        throw new FormatError(
          'E_ARCHIVE_EXTRA_FIELD',
          `entry ${JSON.stringify(name)}: ZIP64 offset used where 32 bits suffice`,
          where,
        );
    }
    if (
      !Number.isSafeInteger(size) ||
      !Number.isSafeInteger(compressedSize) ||
      !Number.isSafeInteger(localHeaderOffset)
    )
      throw new FormatError('E_ARCHIVE_LIMIT', 'size or offset beyond 2^53', where);
  }
  const versionNeeded = cd.readUInt16LE(p + 6);
  if (versionNeeded !== (zip64Sizes || zip64Offset ? 45 : 20))
    throw new FormatError('E_ARCHIVE_UNSUPPORTED', `entry ${JSON.stringify(name)} needs version ${versionNeeded}`, {
      ...where,
      versionNeeded,
    });
  return {
    name,
    nameBytes,
    method: method as 0 | 8,
    crc32: cd.readUInt32LE(p + 16),
    compressedSize,
    size,
    localHeaderOffset,
    dataOffset: -1,
    time: cd.readUInt16LE(p + 12),
    date: cd.readUInt16LE(p + 14),
    zip64Sizes,
    padding: 0,
  };
}

export function checkLocal(e: CentralEntry, fixed: Buffer, rest: Buffer, nameLen: number, extraLen: number): void {
  const mismatch = (field: string) =>
    new FormatError(
      'E_ARCHIVE_HEADER_MISMATCH',
      `local header of ${JSON.stringify(e.name)} disagrees with the central directory on ${field}`,
      { name: e.name, field },
    );
  const z64 = Z.needsZip64Sizes(e);
  if (fixed.readUInt16LE(4) !== (z64 ? 45 : 20)) throw mismatch('version needed');
  const flags = fixed.readUInt16LE(6);
  if (flags & 0x0008)
    throw new FormatError('E_ARCHIVE_DATA_DESCRIPTOR', `entry ${JSON.stringify(e.name)} uses a data descriptor`, {
      name: e.name,
    });
  if (flags !== Z.FLAG_UTF8) throw mismatch('flags');
  if (fixed.readUInt16LE(8) !== e.method) throw mismatch('method');
  if (fixed.readUInt16LE(10) !== e.time || fixed.readUInt16LE(12) !== e.date) throw mismatch('timestamp');
  if (fixed.readUInt32LE(14) !== e.crc32) throw mismatch('CRC-32');
  const lc = fixed.readUInt32LE(18);
  const ls = fixed.readUInt32LE(22);
  if (z64 ? lc !== Z.U32_MAX || ls !== Z.U32_MAX : lc !== e.compressedSize || ls !== e.size)
    throw new FormatError(
      'E_ARCHIVE_SIZE_MISMATCH',
      `local header of ${JSON.stringify(e.name)} declares other sizes than the central directory`,
      {
        name: e.name,
        local: { compressedSize: lc, size: ls },
        central: { compressedSize: e.compressedSize, size: e.size },
      },
    );
  if (nameLen !== e.nameBytes.length || !rest.subarray(0, nameLen).equals(e.nameBytes)) throw mismatch('name');
  // Local extra: [ZIP64 sizes] then [padding record], nothing else.
  let o = nameLen;
  const endX = nameLen + extraLen;
  if (z64) {
    if (endX - o < 20 || rest.readUInt16LE(o) !== Z.ZIP64_EXTRA_ID || rest.readUInt16LE(o + 2) !== 16)
      throw new FormatError(
        'E_ARCHIVE_EXTRA_FIELD',
        `local ZIP64 extra field of ${JSON.stringify(e.name)} missing or malformed`,
        { name: e.name },
      );
    if (Number(rest.readBigUInt64LE(o + 4)) !== e.size || Number(rest.readBigUInt64LE(o + 12)) !== e.compressedSize)
      throw new FormatError(
        'E_ARCHIVE_SIZE_MISMATCH',
        `local ZIP64 sizes of ${JSON.stringify(e.name)} disagree with the central directory`,
        { name: e.name },
      );
    o += 20;
  }
  if (o < endX) {
    if (endX - o < 4 || rest.readUInt16LE(o) !== PADDING_EXTRA_ID || rest.readUInt16LE(o + 2) !== endX - o - 4)
      throw new FormatError(
        'E_ARCHIVE_EXTRA_FIELD',
        `local extra field of ${JSON.stringify(e.name)} holds something other than ZIP64 sizes and alignment padding`,
        { name: e.name },
      );
    for (let k = o + 4; k < endX; k++)
      if (rest[k] !== 0)
        throw new FormatError('E_ARCHIVE_EXTRA_FIELD', `alignment padding of ${JSON.stringify(e.name)} is not zero`, {
          name: e.name,
        });
    // Whether this padding is allowed and minimal depends on the neighbours: the reader checks it.
    const pad = endX - o;
    e.padding = pad;
  }
}

export function checkCompression(e: CentralEntry): void {
  if (e.method === 0) {
    if (e.compressedSize !== e.size)
      throw new FormatError(
        'E_ARCHIVE_SIZE_MISMATCH',
        `stored entry ${JSON.stringify(e.name)} has compressed size ${e.compressedSize} ≠ size ${e.size}`,
        { name: e.name },
      );
    return;
  }
  if (e.size > LIMITS.deflatedEntryBytes)
    throw new FormatError(
      'E_ARCHIVE_BOMB',
      `deflated entry ${JSON.stringify(e.name)} expands to ${e.size} bytes; larger payloads must be stored`,
      { name: e.name, size: e.size, limit: LIMITS.deflatedEntryBytes },
    );
  if (e.compressedSize > e.size + Math.ceil(e.size / 4) + LIMITS.deflateSlackBytes)
    throw new FormatError(
      'E_ARCHIVE_BOMB',
      `deflated entry ${JSON.stringify(e.name)} has a ${e.compressedSize}-byte stream for ${e.size} bytes, more than any encoder writes`,
      { name: e.name, size: e.size, compressedSize: e.compressedSize },
    );
  if (e.size > LIMITS.ratioFreeBytes && e.size > e.compressedSize * LIMITS.compressionRatio) {
    throw new FormatError(
      'E_ARCHIVE_BOMB',
      `deflated entry ${JSON.stringify(e.name)} claims a compression ratio above ${LIMITS.compressionRatio}:1`,
      { name: e.name, size: e.size, compressedSize: e.compressedSize },
    );
  }
}

/**
 * The ratio limit over all deflated entries together: entries each small enough to be free of it
 * cannot add up to gigabytes of inflating (20,000 × 1 MiB of zeros is a 30 MB file).
 */
export function checkCompressionTotal(entries: readonly CentralEntry[]): void {
  let size = 0;
  let compressedSize = 0;
  for (const e of entries)
    if (e.method === 8) {
      size += e.size;
      compressedSize += e.compressedSize;
    }
  if (size > LIMITS.ratioFreeBytes && size > compressedSize * LIMITS.compressionRatio)
    throw new FormatError(
      'E_ARCHIVE_BOMB',
      `deflated entries together claim a compression ratio above ${LIMITS.compressionRatio}:1`,
      { size, compressedSize },
    );
}

/** Decodes an entry's data (inflating with the declared size as a hard cap) and checks deflate framing and CRC. */
export async function entryBytes(
  e: Pick<EntryInfo, 'name' | 'method' | 'size' | 'crc32'>,
  raw: Buffer,
): Promise<Buffer> {
  if (e.method === 0) return raw;
  let out: Buffer;
  let consumed: number;
  try {
    const r = await inflateRaw(raw, e.size);
    out = Buffer.from(r.out.buffer, r.out.byteOffset, r.out.byteLength);
    consumed = r.consumed;
  } catch (err) {
    const tooBig = err instanceof InflateFailure && err.reason === 'too-large';
    throw new FormatError(
      tooBig ? 'E_ARCHIVE_BOMB' : 'E_ARCHIVE_SIZE_MISMATCH',
      `entry ${JSON.stringify(e.name)}: ${tooBig ? 'inflates past its declared size' : `deflate data is corrupt (${(err as Error).message})`}`,
      { name: e.name },
    );
  }
  if (out.length !== e.size)
    throw new FormatError(
      'E_ARCHIVE_SIZE_MISMATCH',
      `entry ${JSON.stringify(e.name)} inflates to ${out.length} bytes, not the declared ${e.size}`,
      { name: e.name, actual: out.length, size: e.size },
    );
  if (consumed !== raw.length)
    throw new FormatError(
      'E_ARCHIVE_SIZE_MISMATCH',
      `entry ${JSON.stringify(e.name)}: deflate stream ends ${raw.length - consumed} bytes before its data does`,
      { name: e.name },
    );
  if (crc32(out) !== e.crc32)
    throw new FormatError('E_ARCHIVE_CRC', `entry ${JSON.stringify(e.name)}: CRC-32 mismatch`, { name: e.name });
  return out;
}

/** For the stored manifest/signatures (small): CRC check too, since they are parsed before any digest check. */
export function checkStoredCrc(name: string, data: Buffer, expected: number): void {
  if (crc32(data) !== expected)
    throw new FormatError('E_ARCHIVE_CRC', `entry ${JSON.stringify(name)}: CRC-32 mismatch`, { name });
}
