/**
 * Hostile archives, third set (archive-attacks, archive-exhaustive and zip-interop hold the
 * earlier ones), through the one entry point every command uses (PackageReader.open).
 *
 * archive-exhaustive changes every byte of a small package; a package past 4 GiB has records a
 * small one lacks (ZIP64 sizes and offsets, the ZIP64 end record and its locator). Here every byte
 * of its metadata is changed: none may go unnoticed, or a signed package would have other
 * spellings that verify as the same package (and that other readers may read otherwise).
 */
import { type FileHandle, open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PackageReader } from '../pack/reader.js';
import * as Z from '../pack/zip.js';
import { tempDir } from './archive-helpers.js';
import { codeOf } from './helpers/errors.js';
import { writeSparseZip64 } from './helpers/zip64.js';

describe('every single-byte change to the metadata of a ZIP64 package is refused on open', () => {
  let path: string;
  let size: number;
  let fh: FileHandle;
  /** Byte ranges of metadata: every local header, and the central directory through the end. */
  const regions: [number, number][] = [];

  beforeAll(async () => {
    path = join(await tempDir('xpkg-z64-bytes-'), 'zip64.xpkg');
    // Placeholder digests: open checks structure only; nothing reads the 4 GiB hole.
    const made = await writeSparseZip64(path, { trueDigests: false });
    expect(Z.needsZip64Sizes(made.layouts[1]) && Z.needsZip64Offset(made.layouts[2])).toBe(true);
    size = (await stat(path)).size;
    {
      await using r = await PackageReader.open(path);
      regions.push([r.centralDirectoryOffset, size]);
      for (const e of r.entries) regions.push([e.localHeaderOffset, e.dataOffset]);
    }
    fh = await open(path, 'r+');
  });
  afterAll(async () => {
    await fh?.close();
  });

  /** Writes `value` at `offset`, opens the package, puts the byte back; the open's code. */
  async function openWith(offset: number, value: number): Promise<string> {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, offset);
    const orig = b[0];
    await fh.write(Buffer.from([value]), 0, 1, offset);
    try {
      return await codeOf(PackageReader.open(path).then((r) => r.close()));
    } finally {
      await fh.write(Buffer.from([orig]), 0, 1, offset);
    }
  }

  it('the ZIP64 end record says exactly "made by Unix 4.5, needs 4.5" (E_ARCHIVE_UNSUPPORTED)', async () => {
    // Bytes 12–15 of the 56-byte record were read by nobody: any value opened and verified.
    const end64 = size - Z.END_SIZE - Z.LOCATOR64_SIZE - Z.END64_SIZE;
    for (const [at, value] of [
      [12, 0x2e],
      [13, 0x00],
      [14, 0x3f],
      [15, 0x01],
    ])
      expect([at, await openWith(end64 + at, value)]).toEqual([at, 'E_ARCHIVE_UNSUPPORTED']);
  });

  it('xor 0xff and +1 at every byte of every header and record', async () => {
    const missed: string[] = [];
    for (const [from, to] of regions)
      for (let o = from; o < to; o++) {
        const b = Buffer.alloc(1);
        await fh.read(b, 0, 1, o);
        for (const v of [b[0] ^ 0xff, (b[0] + 1) & 0xff])
          if ((await openWith(o, v)) === 'OK') missed.push(`${o - size} from the end: ${b[0]} → ${v}`);
      }
    expect(missed).toEqual([]);
    // and the package itself is intact
    expect(await codeOf(PackageReader.open(path).then((r) => r.close()))).toBe('OK');
  });
});
