/**
 * The strict random-access reader every command uses (spec/FORMAT.md §2–§5).
 *
 * It trusts nothing: the end record, every central header, every local header, the layout (one
 * contiguous run of entries, then the central directory, then the end record, no gaps, no overlap),
 * the names, the manifest, and the match between entries and the manifest's file list are all
 * checked on open. Payload digests are checked by verifyIntegrity() or per file by readVerified().
 * All reads go through one ByteSource (pack/source.ts): a file handle under Node, a File, Blob or
 * URL in the browser, so the browser runs exactly these checks.
 */
import {
  crc32,
  INTEGRITY,
  MAX_BYTES,
  sha256Blocks,
  sha256Hex,
  sha256Incremental,
  sha256Moving,
} from '../platform/index.js';
import { FormatError, SigningError, UsageError } from '../spec/errors.js';
import { ALIGNMENT, LIMITS, MANIFEST_PATH, RESERVED_PREFIX, SIGNATURES_PATH } from '../spec/limits.js';
import { modelPaths, parseManifest } from '../spec/manifest.js';
import { PARTIAL_PATH, parsePartial } from '../spec/partial.js';
import { assertNoCollisions, assertSafePath } from '../spec/paths.js';
import type { Manifest } from '../spec/schema.js';
import {
  type CentralEntry,
  checkCompression,
  checkCompressionTotal,
  checkLocal,
  checkStoredCrc,
  entryBytes,
  parseCentral,
} from './entries.js';
import { FileSource } from './file-source.js';
import { SharedReads } from './shared-reads.js';
import { type ByteSource, localHasher } from './source.js';
import type { EntryInfo, IntegrityReport, OpenOptions, PackageReaderLike } from './types.js';
import * as Z from './zip.js';

/**
 * §2.5: every non-empty model entry is stored at a multiple of ALIGNMENT with minimal padding. The
 * only other padding allowed is the 4-byte "shim" on the entry right before an aligned one whose
 * own padding would otherwise have to be 1–3 bytes (impossible: an extra record needs 4).
 */
function checkAlignment(
  central: CentralEntry[],
  models: ReadonlySet<string>,
  sigEntry: CentralEntry | undefined,
): void {
  const mustAlign = (e: CentralEntry | undefined) => !!e && e !== sigEntry && models.has(e.name) && e.size > 0;
  central.forEach((e, k) => {
    if (mustAlign(e)) {
      if (e.padding !== 0 && Z.alignmentPadding(e.localHeaderOffset, e.nameBytes, e.size) !== e.padding) {
        throw new FormatError(
          'E_ARCHIVE_EXTRA_FIELD',
          `alignment padding of ${JSON.stringify(e.name)} is not the minimal ${ALIGNMENT}-byte alignment`,
          { path: e.name, padding: e.padding },
        );
      }
      if (e.method !== 0 || e.dataOffset % ALIGNMENT !== 0) {
        throw new FormatError(
          'E_ARCHIVE_ALIGNMENT',
          `model file ${JSON.stringify(e.name)} must be stored uncompressed at a multiple of ${ALIGNMENT}`,
          { path: e.name, dataOffset: e.dataOffset, method: e.method },
        );
      }
      if (Z.alignmentPadding(e.localHeaderOffset, e.nameBytes, e.size) !== e.padding) {
        throw new FormatError(
          'E_ARCHIVE_EXTRA_FIELD',
          `alignment padding of ${JSON.stringify(e.name)} is not the minimal ${ALIGNMENT}-byte alignment`,
          { path: e.name, padding: e.padding },
        );
      }
      return;
    }
    if (e.padding === 0) return;
    const next = central[k + 1];
    const shim =
      e.padding === 4 &&
      mustAlign(next) &&
      Z.alignmentPadding(next.localHeaderOffset - 4, next.nameBytes, next.size) === null;
    if (!shim)
      throw new FormatError('E_ARCHIVE_EXTRA_FIELD', `padding on ${JSON.stringify(e.name)}, which needs no alignment`, {
        path: e.name,
        padding: e.padding,
      });
  });
}

/** The most bytes one buffer holds here (4 GiB on 64-bit Node 20); larger files must be streamed. */
const MAX_BUFFER = MAX_BYTES;
const STREAM_CHUNK = 4 * 1024 * 1024;

/** Bytes the checks of small and deflated files may hold at once (one file is always let through). */
const INLINE_BYTES = 64 * 1024 * 1024;

/** Runs tasks in the order asked, each holding `bytes` of a budget of `limit` while it runs. */
function byteGate(limit: number) {
  let used = 0;
  const queue: { bytes: number; go: () => void }[] = [];
  let head = 0;
  const pump = () => {
    while (head < queue.length && (used === 0 || used + queue[head].bytes <= limit)) {
      const w = queue[head++];
      used += w.bytes;
      w.go();
    }
  };
  return {
    async run(bytes: number, task: () => Promise<void>): Promise<void> {
      await new Promise<void>((go) => {
        queue.push({ bytes, go });
        pump();
      });
      try {
        await task();
      } finally {
        used -= bytes;
        pump();
      }
    },
  };
}

const digestMismatch = (path: string, expected: string, actual: string) =>
  new FormatError('E_DIGEST_MISMATCH', `${JSON.stringify(path)} does not match its manifest digest`, {
    path,
    expected,
    actual,
  });

export class PackageReader implements PackageReaderLike {
  /** Verified reads a full verification reuses, and reads started ahead (pack/shared-reads.ts). */
  private readonly shared = new SharedReads();

  private constructor(
    readonly path: string,
    private readonly source: ByteSource,
    readonly fileSize: number,
    readonly entries: readonly EntryInfo[],
    private readonly byName: ReadonlyMap<string, EntryInfo>,
    readonly manifest: Manifest,
    readonly manifestBytes: Buffer,
    readonly id: string,
    readonly signaturesBytes: Buffer | null,
    /** Offset where the central directory starts (= end of the last entry). */
    readonly centralDirectoryOffset: number,
    /** The one DOS timestamp every entry carries. */
    readonly dosTime: { time: number; date: number },
    /** Payload files a partial package leaves out (spec/OCI.md §4); empty for a whole package. */
    readonly absent: ReadonlySet<string> = new Set(),
  ) {}

  /** Opens and structurally checks a package. Throws FormatError with a specific code. */
  static async open(path: string): Promise<PackageReader> {
    return PackageReader.fromSource(await FileSource.open(path));
  }

  /** Opens and checks a package from any random-access source; the source is closed on failure. */
  static async fromSource(source: ByteSource): Promise<PackageReader> {
    try {
      return await PackageReader.parse(source.name, source, source.size);
    } catch (e) {
      await source.close();
      throw e;
    }
  }

  private static async parse(path: string, source: ByteSource, fileSize: number): Promise<PackageReader> {
    const readAt = async (offset: number, length: number): Promise<Buffer> => {
      if (offset < 0 || length < 0 || offset + length > fileSize) {
        throw new FormatError(
          'E_ARCHIVE_TRUNCATED',
          `record at ${offset}+${length} runs past the end of the file (${fileSize} bytes)`,
          { offset, length, fileSize },
        );
      }
      const b = Buffer.alloc(length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await source.read(b, got, length - got, offset + got);
        if (bytesRead === 0) throw new FormatError('E_ARCHIVE_TRUNCATED', 'file shrank while being read', { offset });
        got += bytesRead;
      }
      return b;
    };

    // --- End of central directory: exactly at the end, no comment. -------------------------------
    if (fileSize < Z.END_SIZE)
      throw new FormatError('E_ARCHIVE_TRUNCATED', `file is ${fileSize} bytes, too short for a ZIP end record`, {
        fileSize,
      });
    const endOffset = fileSize - Z.END_SIZE;
    const end = await readAt(endOffset, Z.END_SIZE);
    if (end.readUInt32LE(0) !== Z.SIG_END) {
      // Tell "comment or trailing bytes" apart from "no end record at all".
      const tailLen = Math.min(fileSize, 65535 + Z.END_SIZE + 1024);
      const tail = await readAt(fileSize - tailLen, tailLen);
      // Every complete record, last first: a comment may itself hold the signature (or a whole fake
      // end record), so the last one found need not be the record whose comment reaches the end.
      const sig = Buffer.from([0x50, 0x4b, 0x05, 0x06]);
      let realEnd = -1;
      for (let at = tail.lastIndexOf(sig); at >= 0; at = at > 0 ? tail.lastIndexOf(sig, at - 1) : -1) {
        if (at + Z.END_SIZE > tailLen) continue;
        const commentLen = tail.readUInt16LE(at + 20);
        if (commentLen > 0 && at + Z.END_SIZE + commentLen === tailLen)
          throw new FormatError('E_ARCHIVE_COMMENT', 'archive comments are not allowed', { commentLength: commentLen });
        if (realEnd < 0) realEnd = fileSize - tailLen + at;
      }
      if (realEnd < 0)
        throw new FormatError('E_ARCHIVE_NO_END', 'no ZIP end-of-central-directory record', { fileSize });
      throw new FormatError('E_ARCHIVE_TRAILING', `${fileSize - realEnd - Z.END_SIZE} bytes after the end record`, {
        endOffset: realEnd,
        fileSize,
      });
    }
    const disk = end.readUInt16LE(4);
    const cdDisk = end.readUInt16LE(6);
    let entriesOnDisk = end.readUInt16LE(8);
    let entryCount = end.readUInt16LE(10);
    let cdSize = end.readUInt32LE(12);
    let cdOffset = end.readUInt32LE(16);
    if (end.readUInt16LE(20) !== 0) throw new FormatError('E_ARCHIVE_COMMENT', 'archive comments are not allowed');
    if (disk !== 0 || cdDisk !== 0)
      throw new FormatError('E_ARCHIVE_UNSUPPORTED', 'multi-disk archives are not allowed', { disk, cdDisk });
    let cdEnd = endOffset;
    const z64 =
      entriesOnDisk === Z.U16_MAX || entryCount === Z.U16_MAX || cdSize === Z.U32_MAX || cdOffset === Z.U32_MAX;
    if (z64) {
      if (
        !(entriesOnDisk === Z.U16_MAX && entryCount === Z.U16_MAX && cdSize === Z.U32_MAX && cdOffset === Z.U32_MAX)
      ) {
        throw new FormatError(
          'E_ARCHIVE_UNSUPPORTED',
          'a ZIP64 end record must be signalled by all end-record fields at their maximum',
        );
      }
      const loc = await readAt(endOffset - Z.LOCATOR64_SIZE, Z.LOCATOR64_SIZE);
      if (loc.readUInt32LE(0) !== Z.SIG_LOCATOR64)
        throw new FormatError('E_ARCHIVE_NO_END', 'ZIP64 end locator missing');
      const end64Offset = Number(loc.readBigUInt64LE(8));
      if (loc.readUInt32LE(4) !== 0 || loc.readUInt32LE(16) !== 1)
        throw new FormatError('E_ARCHIVE_UNSUPPORTED', 'multi-disk archives are not allowed');
      if (end64Offset !== endOffset - Z.LOCATOR64_SIZE - Z.END64_SIZE) {
        throw new FormatError(
          end64Offset < endOffset - Z.LOCATOR64_SIZE - Z.END64_SIZE ? 'E_ARCHIVE_GAP' : 'E_ARCHIVE_OVERLAP',
          'ZIP64 end record is not immediately before its locator',
          { end64Offset },
        );
      }
      const e64 = await readAt(end64Offset, Z.END64_SIZE);
      if (e64.readUInt32LE(0) !== Z.SIG_END64 || Number(e64.readBigUInt64LE(4)) !== Z.END64_SIZE - 12) {
        throw new FormatError(
          'E_ARCHIVE_UNSUPPORTED',
          'malformed ZIP64 end record (or an extensible data sector, which is not allowed)',
        );
      }
      // Exactly what the writer puts there, as in central headers: otherwise four bytes of a
      // signed package could change with nothing noticing (and a version some readers refuse).
      if (e64.readUInt16LE(12) !== Z.VERSION_MADE_BY || e64.readUInt16LE(14) !== 45)
        throw new FormatError(
          'E_ARCHIVE_UNSUPPORTED',
          'ZIP64 end record: version made by or needed is not 4.5 (Unix)',
          {
            madeBy: e64.readUInt16LE(12),
            versionNeeded: e64.readUInt16LE(14),
          },
        );
      if (e64.readUInt32LE(16) !== 0 || e64.readUInt32LE(20) !== 0)
        throw new FormatError('E_ARCHIVE_UNSUPPORTED', 'multi-disk archives are not allowed');
      entriesOnDisk = Number(e64.readBigUInt64LE(24));
      entryCount = Number(e64.readBigUInt64LE(32));
      cdSize = Number(e64.readBigUInt64LE(40));
      cdOffset = Number(e64.readBigUInt64LE(48));
      cdEnd = end64Offset;
      if (entryCount < Z.U16_MAX && cdSize < Z.U32_MAX && cdOffset < Z.U32_MAX) {
        throw new FormatError('E_ARCHIVE_UNSUPPORTED', 'ZIP64 end record used where the classic one suffices');
      }
    }
    if (entriesOnDisk !== entryCount)
      throw new FormatError('E_ARCHIVE_UNSUPPORTED', 'entry counts in the end record disagree', {
        entriesOnDisk,
        entryCount,
      });
    if (entryCount > LIMITS.entries)
      throw new FormatError('E_ARCHIVE_LIMIT', `${entryCount} entries; the limit is ${LIMITS.entries}`, {
        entries: entryCount,
        limit: LIMITS.entries,
      });
    if (cdSize > LIMITS.centralDirectoryBytes)
      throw new FormatError(
        'E_ARCHIVE_LIMIT',
        `central directory of ${cdSize} bytes exceeds ${LIMITS.centralDirectoryBytes}`,
        { cdSize },
      );
    if (cdOffset + cdSize !== cdEnd) {
      const between =
        cdOffset + cdSize < cdEnd && cdOffset + cdSize >= 0
          ? await readAt(cdOffset + cdSize, Math.min(cdEnd - cdOffset - cdSize, 1 << 20))
          : null;
      if (between && between.indexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06])) >= 0) {
        throw new FormatError('E_ARCHIVE_MULTIPLE_END', 'more than one end-of-central-directory record', {
          cdOffset,
          cdSize,
          endOffset: cdEnd,
        });
      }
      // A central directory found right before the end record, later than recorded: the whole
      // archive was shifted by bytes put in front of it (e.g. `cat stub.sh pkg.xpkg`).
      const shifted = cdEnd - cdSize;
      if (cdSize >= 4 && shifted > cdOffset && (await readAt(shifted, 4)).readUInt32LE(0) === Z.SIG_CENTRAL) {
        throw new FormatError('E_ARCHIVE_PREFIX', `${shifted - cdOffset} bytes before the archive`, {
          prefixLength: shifted - cdOffset,
        });
      }
      if (cdOffset + cdSize > cdEnd)
        throw new FormatError('E_ARCHIVE_OVERLAP', 'central directory overlaps the end record', {
          cdOffset,
          cdSize,
          endOffset: cdEnd,
        });
      throw new FormatError(
        'E_ARCHIVE_GAP',
        `${cdEnd - cdOffset - cdSize} unaccounted bytes between the central directory and the end record`,
        { cdOffset, cdSize, endOffset: cdEnd },
      );
    }

    // --- Central directory. --------------------------------------------------------------------
    const cd = await readAt(cdOffset, cdSize);
    const central: CentralEntry[] = [];
    let p = 0;
    for (let i = 0; i < entryCount; i++) {
      if (p + Z.CENTRAL_SIZE > cd.length)
        throw new FormatError('E_ARCHIVE_TRUNCATED', 'central directory ends inside a header', { index: i });
      if (cd.readUInt32LE(p) !== Z.SIG_CENTRAL)
        throw new FormatError('E_ARCHIVE_HEADER_MISMATCH', `central header ${i} has a bad signature`, {
          index: i,
          offset: cdOffset + p,
        });
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      if (p + Z.CENTRAL_SIZE + nameLen + extraLen + commentLen > cd.length)
        throw new FormatError('E_ARCHIVE_TRUNCATED', 'central directory ends inside a header', { index: i });
      central.push(parseCentral(cd, p, i, nameLen, extraLen, commentLen));
      p += Z.CENTRAL_SIZE + nameLen + extraLen + commentLen;
    }
    if (p !== cd.length)
      throw new FormatError('E_ARCHIVE_GAP', `${cd.length - p} stray bytes at the end of the central directory`, {
        offset: cdOffset + p,
      });

    // Names: safe grammar, no duplicates or collisions, reserved names in their places.
    central.forEach((e, index) => assertSafePath(e.name, { index }));
    assertNoCollisions(central.map((e) => e.name));
    const ts = central[0] ? { time: central[0].time, date: central[0].date } : null;
    for (const e of central) {
      if (ts && (e.time !== ts.time || e.date !== ts.date))
        throw new FormatError(
          'E_ARCHIVE_TIMESTAMP',
          `entry ${JSON.stringify(e.name)} has a different timestamp from the first entry`,
          { name: e.name },
        );
    }

    // --- Local headers and layout: contiguous from offset 0, in central-directory order. -----------
    source.prefetch?.(central.map((e) => e.localHeaderOffset));
    let cursor = 0;
    for (const [k, e] of central.entries()) {
      if (e.localHeaderOffset !== cursor) {
        if (cursor === 0)
          throw new FormatError('E_ARCHIVE_PREFIX', `${e.localHeaderOffset} bytes before the first entry`, {
            offset: e.localHeaderOffset,
          });
        // Out of order: listed before an entry stored earlier, or skipping an entry listed later.
        if (
          e.localHeaderOffset < central[k - 1].localHeaderOffset ||
          (e.localHeaderOffset > cursor && central.some((x) => x.localHeaderOffset === cursor))
        ) {
          throw new FormatError('E_ARCHIVE_ORDER', 'central directory order differs from the order of the entries', {
            name: e.name,
          });
        }
        throw new FormatError(
          e.localHeaderOffset < cursor ? 'E_ARCHIVE_OVERLAP' : 'E_ARCHIVE_GAP',
          `entry ${JSON.stringify(e.name)} starts at ${e.localHeaderOffset}, expected ${cursor}`,
          { name: e.name, offset: e.localHeaderOffset, expected: cursor },
        );
      }
      const fixed = await readAt(cursor, Z.LOCAL_SIZE);
      if (fixed.readUInt32LE(0) !== Z.SIG_LOCAL)
        throw new FormatError(
          'E_ARCHIVE_HEADER_MISMATCH',
          `no local header for ${JSON.stringify(e.name)} at ${cursor}`,
          { name: e.name, offset: cursor },
        );
      const nameLen = fixed.readUInt16LE(26);
      const extraLen = fixed.readUInt16LE(28);
      const rest = await readAt(cursor + Z.LOCAL_SIZE, nameLen + extraLen);
      checkLocal(e, fixed, rest, nameLen, extraLen);
      e.dataOffset = cursor + Z.LOCAL_SIZE + nameLen + extraLen;
      cursor = e.dataOffset + e.compressedSize;
      if (cursor > cdOffset)
        throw new FormatError(
          'E_ARCHIVE_OVERLAP',
          `data of ${JSON.stringify(e.name)} runs into the central directory`,
          { name: e.name, end: cursor, cdOffset },
        );
    }
    if (central.length === 0 && cdOffset !== 0)
      throw new FormatError('E_ARCHIVE_PREFIX', `${cdOffset} bytes before the central directory`, { offset: cdOffset });
    if (cursor !== cdOffset)
      throw new FormatError(
        'E_ARCHIVE_GAP',
        `${cdOffset - cursor} bytes between the last entry and the central directory`,
        { end: cursor, cdOffset },
      );

    // --- Manifest first, signatures (optional) last, nothing else reserved. ----------------------
    const manifestEntry = central.find((e) => e.name === MANIFEST_PATH);
    if (!manifestEntry) throw new FormatError('E_MANIFEST_MISSING', `no ${MANIFEST_PATH} entry`);
    if (central[0] !== manifestEntry)
      throw new FormatError('E_ARCHIVE_ORDER', `${MANIFEST_PATH} must be the first entry`);
    const sigEntry = central.find((e) => e.name === SIGNATURES_PATH);
    if (sigEntry && central[central.length - 1] !== sigEntry)
      throw new FormatError('E_ARCHIVE_ORDER', `${SIGNATURES_PATH} must be the last entry`);
    const partialEntry = central.find((e) => e.name === PARTIAL_PATH);
    if (partialEntry && central[central.length - (sigEntry ? 2 : 1)] !== partialEntry)
      throw new FormatError('E_ARCHIVE_ORDER', `${PARTIAL_PATH} must come right before the signatures, or last`);
    for (const e of central) {
      if (
        e !== manifestEntry &&
        e !== sigEntry &&
        e !== partialEntry &&
        e.name.toLowerCase().startsWith(RESERVED_PREFIX)
      ) {
        throw new FormatError('E_FILE_EXTRA', `unknown reserved entry ${JSON.stringify(e.name)}`, { path: e.name });
      }
    }
    // The unsigned metadata entries are stored (FORMAT.md §6, OCI.md §4): one spelling per package,
    // and no inflate of bytes no signature covers.
    for (const e of [sigEntry, partialEntry]) {
      if (e && e.method !== 0)
        throw new FormatError('E_ARCHIVE_METHOD', `${e.name} must be stored (method 0), not compressed`, {
          name: e.name,
          method: e.method,
        });
    }
    for (const e of central) checkCompression(e);
    checkCompressionTotal(central);

    // Metadata is parsed before any digest check, so its CRC is checked here.
    const metadata = async (e: CentralEntry): Promise<Buffer> => {
      const data = await entryBytes(e, await readAt(e.dataOffset, e.compressedSize));
      if (e.method === 0) checkStoredCrc(e.name, data, e.crc32);
      return data;
    };
    if (manifestEntry.size > LIMITS.manifestBytes) {
      throw new FormatError(
        'E_MANIFEST_TOO_LARGE',
        `manifest is ${manifestEntry.size} bytes; the limit is ${LIMITS.manifestBytes}`,
        { size: manifestEntry.size, limit: LIMITS.manifestBytes },
      );
    }
    const { manifest, bytes, id } = parseManifest(await metadata(manifestEntry));
    let signaturesBytes: Buffer | null = null;
    if (sigEntry) {
      if (sigEntry.size > LIMITS.signaturesBytes) {
        throw new SigningError(
          'E_SIG_TOO_LARGE',
          `${SIGNATURES_PATH} is ${sigEntry.size} bytes; the limit is ${LIMITS.signaturesBytes}`,
          { size: sigEntry.size, limit: LIMITS.signaturesBytes },
        );
      }
      signaturesBytes = await metadata(sigEntry);
    }
    let absent: ReadonlySet<string> = new Set();
    if (partialEntry) {
      if (partialEntry.size > LIMITS.manifestBytes)
        throw new FormatError('E_FILE_PARTIAL', `${PARTIAL_PATH} is larger than ${LIMITS.manifestBytes} bytes`);
      absent = parsePartial(await metadata(partialEntry), manifest);
    }

    // --- Entries against the manifest's file list. ------------------------------------------------
    const listed = new Map(manifest.files.map((f) => [f.path, f]));
    const payload = central.filter((e) => e !== manifestEntry && e !== sigEntry && e !== partialEntry);
    for (const e of payload) {
      if (absent.has(e.name))
        throw new FormatError('E_FILE_PARTIAL', `${JSON.stringify(e.name)} is recorded absent but is in the archive`, {
          path: e.name,
        });
      const f = listed.get(e.name);
      if (!f)
        throw new FormatError('E_FILE_EXTRA', `entry ${JSON.stringify(e.name)} is not in the manifest`, {
          path: e.name,
        });
      if (f.size !== e.size)
        throw new FormatError(
          'E_FILE_SIZE',
          `entry ${JSON.stringify(e.name)} is ${e.size} bytes; the manifest says ${f.size}`,
          { path: e.name, size: e.size, expected: f.size },
        );
    }
    const present = new Set(payload.map((e) => e.name));
    for (const f of manifest.files)
      if (!present.has(f.path) && !absent.has(f.path))
        throw new FormatError(
          'E_FILE_MISSING',
          `manifest lists ${JSON.stringify(f.path)} but the archive has no such entry`,
          { path: f.path },
        );
    checkAlignment(central, modelPaths(manifest), sigEntry);

    const entries: EntryInfo[] = central.map(
      ({ name, method, crc32: c, compressedSize, size, localHeaderOffset, dataOffset }) => ({
        name,
        method,
        crc32: c,
        compressedSize,
        size,
        localHeaderOffset,
        dataOffset,
      }),
    );
    return new PackageReader(
      path,
      source,
      fileSize,
      entries,
      new Map(entries.map((e) => [e.name, e])),
      manifest,
      bytes,
      id,
      signaturesBytes,
      cdOffset,
      ts!,
      absent,
    );
  }

  entry(name: string): EntryInfo | undefined {
    return this.byName.get(name);
  }

  /** Positional read of archive bytes (for copying the archive verbatim). */
  async readFrom(buf: Buffer, length: number, position: number): Promise<{ bytesRead: number }> {
    const r = await this.source.read(buf, 0, length, position);
    if (r.bytesRead === 0 && length > 0)
      throw new FormatError('E_ARCHIVE_TRUNCATED', 'package shrank after it was opened', { position });
    return r;
  }

  /** Raw bytes of an entry's stored data (compressed form for deflated entries). Unverified. */
  async readRaw(e: EntryInfo, offset = 0, length = e.compressedSize - offset): Promise<Buffer> {
    const b = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await this.source.read(b, got, length - got, e.dataOffset + offset + got);
      if (bytesRead === 0)
        throw new FormatError('E_ARCHIVE_TRUNCATED', 'package shrank after it was opened', { path: e.name });
      got += bytesRead;
    }
    return b;
  }

  /**
   * One payload file whole, its size and SHA-256 checked on exactly the bytes returned. A file too
   * large for one Buffer is refused up front (E_USAGE): read it with `streamVerified` instead.
   */
  readVerified(path: string): Promise<Buffer> {
    return this.shared.take(path) ?? this.shared.track(path, this.readWhole(path));
  }

  /**
   * Starts the verified read of a whole payload file now (say, while a runtime starts) for the
   * read that will use it: readVerified/streamVerified hand these bytes over, and verifyIntegrity
   * awaits their check instead of reading the file again. Resolves once the read settled (a
   * failure is the taker's to see).
   */
  prefetch(path: string): Promise<void> {
    return this.shared.prefetch(path, () => this.readWhole(path));
  }

  /** Lets go of prefetched bytes no read took (all of them by default). */
  dropPrefetched(paths?: Iterable<string>): void {
    this.shared.drop(paths);
  }

  private async readWhole(path: string): Promise<Buffer> {
    const { e, f } = this.payload(path);
    if (f.size > MAX_BUFFER)
      throw new UsageError(
        'E_USAGE',
        `${JSON.stringify(path)} is ${f.size} bytes, more than one Buffer holds (${MAX_BUFFER}); stream it with streamVerified`,
        { path, size: f.size, limit: MAX_BUFFER },
      );
    const data = await entryBytes(e, await this.readRaw(e));
    if (data.length !== f.size) throw digestMismatch(path, f.sha256, `${data.length} bytes`);
    // 'blocks' (spec/FORMAT.md §10.1): the signed block digests cover every byte; a one-block
    // file's block digest is its SHA-256.
    if (INTEGRITY === 'blocks' && f.blocks.length > 1) {
      const got = await sha256Blocks(data, this.manifest.blockSize);
      const k = got.findIndex((d, i) => d !== f.blocks[i]);
      if (k >= 0) throw digestMismatch(path, f.blocks[k], got[k]);
      return data;
    }
    // hashed on the hashing thread when it runs (platform/hash-thread.ts): `data` moves there and back
    const { bytes, hex } = await sha256Moving(data);
    if (hex !== f.sha256) throw digestMismatch(path, f.sha256, hex);
    return bytes;
  }

  /**
   * One payload file in chunks of at most `chunkBytes`, for files of any size: each chunk is hashed
   * as it is handed to `sink` (awaited before the next read, which may reuse the chunk's memory), and
   * the SHA-256 of them all is checked after the last one, so the caller must discard everything it
   * received when this throws. Deflated entries (never model files, §2.5) inflate whole first.
   */
  async streamVerified(
    path: string,
    sink: (chunk: Buffer) => void | Promise<void>,
    chunkBytes = STREAM_CHUNK,
  ): Promise<void> {
    const ahead = this.shared.take(path);
    if (!ahead) return this.shared.track(path, this.streamNow(path, sink, chunkBytes));
    const data = await ahead;
    for (let p = 0; p < data.length; p += chunkBytes) await sink(data.subarray(p, p + chunkBytes));
  }

  private async streamNow(
    path: string,
    sink: (chunk: Buffer) => void | Promise<void>,
    chunkBytes = STREAM_CHUNK,
  ): Promise<void> {
    const { e, f } = this.payload(path);
    if (e.method !== 0) return void (await sink(await this.readWhole(path)));
    if (e.size !== f.size)
      throw new FormatError(
        'E_FILE_SIZE',
        `entry ${JSON.stringify(path)} is ${e.size} bytes; the manifest says ${f.size}`,
        { path, size: e.size, expected: f.size },
      );
    if (INTEGRITY === 'blocks') return this.streamBlocks(e, f, sink);
    const h = sha256Incremental();
    const buf = Buffer.allocUnsafe(Math.max(1, Math.min(chunkBytes, e.size)));
    let n = 0;
    while (n < e.size) {
      const len = Math.min(buf.length, e.size - n);
      const { bytesRead } = await this.source.read(buf, 0, len, e.dataOffset + n);
      if (bytesRead === 0) throw new FormatError('E_ARCHIVE_TRUNCATED', 'package shrank after it was opened', { path });
      const chunk = buf.subarray(0, bytesRead);
      h.update(chunk);
      n += bytesRead;
      await sink(chunk);
    }
    const sha = h.digest();
    if (sha !== f.sha256) throw digestMismatch(path, f.sha256, sha);
  }

  /** streamVerified by blocks (§10.1): each block is checked before it is handed over. */
  private async streamBlocks(
    e: EntryInfo,
    f: Manifest['files'][number],
    sink: (chunk: Buffer) => void | Promise<void>,
  ): Promise<void> {
    const bs = this.manifest.blockSize;
    for (let k = 0; k * bs < e.size; k++) {
      const block = await this.readRaw(e, k * bs, Math.min(bs, e.size - k * bs));
      const [got] = await sha256Blocks(block, bs);
      if (got !== f.blocks[k]) throw digestMismatch(f.path, f.blocks[k], got);
      await sink(block);
    }
  }

  private payload(path: string): { e: EntryInfo; f: Manifest['files'][number] } {
    const e = this.byName.get(path);
    const f = this.manifest.files.find((x) => x.path === path);
    if (!e || !f)
      throw new FormatError('E_FILE_MISSING', `no payload file ${JSON.stringify(path)}`, {
        path,
        ...(this.absent.has(path) ? { absent: true } : {}),
      });
    return { e, f };
  }

  async verifyIntegrity(options: OpenOptions = {}): Promise<IntegrityReport> {
    const t0 = performance.now();
    const bs = this.manifest.blockSize;
    // A partial package holds only its present files; the absent ones are not there to check.
    const present = this.manifest.files.filter((f) => !this.absent.has(f.path));
    const total = present.reduce((n, f) => n + f.size, 0);
    let done = 0;
    const progress = (n: number) => {
      done += n;
      options.onProgress?.(done, total);
    };
    const mismatch = (path: string, what: string, detail: Record<string, unknown>) =>
      new FormatError('E_DIGEST_MISMATCH', `${JSON.stringify(path)}: ${what} does not match the manifest`, {
        path,
        ...detail,
      });
    // Small and deflated files are hashed here; worker threads (≈50 ms to start) only pay off for big ones.
    const SMALL = 1024 * 1024;
    const inline = (f: (typeof this.manifest.files)[number]) =>
      this.byName.get(f.path)!.method === 8 || f.size <= SMALL;
    const bigOnes = present.filter((f) => !inline(f));
    // Started all at once, the small files' reads held every one of them in memory together: a
    // package of 10,000 files of 1 MiB took 10 GiB to verify.
    const inlineBytes = byteGate(INLINE_BYTES);
    const jobCount = bigOnes.reduce((n, f) => n + 1 + Math.ceil(f.blocks.length / 4), 0);
    using pool = bigOnes.length ? (this.source.hasher?.(jobCount) ?? localHasher(this.source)) : null;
    // Without a whole-file pass, big stored files are verified by their signed blocks alone (§10.1).
    const whole = pool?.whole?.bind(pool);
    const jobs: Promise<void>[] = [];
    // Longest sequential jobs first so they overlap with the block jobs.
    const files = [...present].sort((a, b) => b.size - a.size);
    for (const f of files) {
      const e = this.byName.get(f.path)!;
      const covered = this.shared.covered(f.path);
      if (covered) {
        // Read whole and checked by a load through this reader (or being read now): not read again.
        // A read that stopped short for another reason leaves it to be checked here, block by block.
        jobs.push(
          covered.then(async (ok) => {
            if (!ok) await this.streamNow(f.path, () => {});
            progress(f.size);
          }),
        );
        continue;
      }
      if (inline(f)) {
        jobs.push(
          inlineBytes.run(e.compressedSize + (e.method === 8 ? f.size : 0), async () => {
            const raw = await this.readRaw(e);
            const data = await entryBytes(e, raw);
            const sha = sha256Hex(data);
            if (sha !== f.sha256) throw mismatch(f.path, 'SHA-256', { expected: f.sha256, actual: sha });
            const digests = f.blocks.length === 1 ? [sha] : await sha256Blocks(data, bs);
            f.blocks.forEach((d, k) => {
              if (digests[k] !== d) throw mismatch(f.path, `block ${k}`, { block: k, expected: d, actual: digests[k] });
            });
            if (e.method === 0 && crc32(data) !== e.crc32)
              throw new FormatError('E_ARCHIVE_CRC', `${JSON.stringify(f.path)}: CRC-32 does not match its header`, {
                path: f.path,
              });
            progress(f.size);
          }),
        );
        continue;
      }
      if (whole) {
        jobs.push(
          whole(e.dataOffset, e.size).then((r) => {
            if (r.sha256 !== f.sha256) throw mismatch(f.path, 'SHA-256', { expected: f.sha256, actual: r.sha256 });
            if (r.crc32 !== e.crc32)
              throw new FormatError('E_ARCHIVE_CRC', `${JSON.stringify(f.path)}: CRC-32 does not match its header`, {
                path: f.path,
                expected: e.crc32,
                actual: r.crc32,
              });
            if (f.blocks.length <= 1) progress(f.size);
          }),
        );
        if (f.blocks.length <= 1) continue;
      }
      const perJob = 4; // blocks per job: fine-grained enough to balance two or more cores
      for (let k = 0; k < f.blocks.length; k += perJob) {
        const length = Math.min(perJob * bs, f.size - k * bs);
        jobs.push(
          pool!.blocks(e.dataOffset + k * bs, length, bs).then((digests) => {
            digests.forEach((d, j) => {
              if (d !== f.blocks[k + j])
                throw mismatch(f.path, `block ${k + j}`, { block: k + j, expected: f.blocks[k + j], actual: d });
            });
            progress(length);
          }),
        );
      }
    }
    const results = await Promise.allSettled(jobs);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed)
      throw failed.reason instanceof FormatError
        ? failed.reason
        : new FormatError(
            'E_ARCHIVE_TRUNCATED',
            `reading the package failed: ${String((failed.reason as Error)?.message ?? failed.reason)}`,
          );
    return {
      id: this.id,
      files: present.length,
      bytes: total,
      ms: performance.now() - t0,
      ...(this.absent.size ? { absent: [...this.absent] } : {}),
      ...(bigOnes.length && !whole ? { mode: 'blocks' as const } : {}),
    };
  }

  async close(): Promise<void> {
    await this.source.close().catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
