/**
 * Archive writing shared by `pack` and `sign`: the central directory and end records from a list of
 * laid-out entries, and the signatures-entry rewrite that never touches payload bytes or the manifest.
 */
import { crc32 } from 'node:zlib';
import { UsageError } from '../spec/errors.js';
import { SIGNATURES_PATH } from '../spec/limits.js';
import { writeAllAt, writeAtomic } from './atomic.js';
import type { PackageReader } from './reader.js';
import * as Z from './zip.js';

/** Central directory + end records for entries laid out from offset 0 up to `cdOffset`. */
export function encodeDirectory(
  entries: Z.EntryLayout[],
  cdOffset: number,
  ts: { time: number; date: number },
): Buffer {
  const cd = Buffer.concat(entries.map((e) => Z.encodeCentralHeader(e, ts)));
  return Buffer.concat([cd, Z.encodeEnd(entries.length, cdOffset, cd.length)]);
}

/**
 * Writes a copy of the package at `outPath` (atomically; may be the same path) whose signatures
 * entry is `signatures` (or absent when null). Manifest and payload bytes are copied verbatim from
 * the reader's open file, so the package id cannot change.
 */
export async function writeSignatures(
  reader: PackageReader,
  signatures: Buffer | null,
  outPath: string,
): Promise<void> {
  const old = reader.entry(SIGNATURES_PATH);
  const payloadEnd = old ? old.localHeaderOffset : reader.centralDirectoryOffset;
  const kept: Z.EntryLayout[] = reader.entries
    .filter((e) => e.name !== SIGNATURES_PATH)
    .map((e) => ({
      name: Buffer.from(e.name, 'utf8'),
      method: e.method,
      crc32: e.crc32,
      compressedSize: e.compressedSize,
      size: e.size,
      localHeaderOffset: e.localHeaderOffset,
      padding: 0,
    }));
  if (signatures && signatures.length === 0) throw new UsageError('E_USAGE', 'empty signatures entry');
  await writeAtomic(outPath, async (fh) => {
    const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
    for (let p = 0; p < payloadEnd; ) {
      const n = Math.min(buf.length, payloadEnd - p);
      const { bytesRead } = await reader.readFrom(buf, n, p);
      await writeAllAt(fh, buf.subarray(0, bytesRead), p);
      p += bytesRead;
    }
    let cursor = payloadEnd;
    const all = [...kept];
    if (signatures) {
      const sig: Z.EntryLayout = {
        name: Buffer.from(SIGNATURES_PATH),
        method: 0,
        crc32: crc32(signatures) >>> 0,
        compressedSize: signatures.length,
        size: signatures.length,
        localHeaderOffset: cursor,
        padding: 0,
      };
      const header = Z.encodeLocalHeader(sig, reader.dosTime);
      await writeAllAt(fh, Buffer.concat([header, signatures]), cursor);
      cursor += header.length + signatures.length;
      all.push(sig);
    }
    await writeAllAt(fh, encodeDirectory(all, cursor, reader.dosTime), cursor);
  });
}
