/**
 * spec/FORMAT.md §10.1: verifying by the signed block digests and sizes alone. On packages with a
 * 9 MiB (three-block) asset, read once through a file (full: blocks, whole-file SHA-256 and CRC-32)
 * and once through a source without a whole-file pass (blocks only, as the browser does): a byte
 * changed anywhere gets the same code from both; a whole-file digest or stored CRC that lies about
 * bytes matching every block is refused by the full verifier and accepted by the block verifier.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PackageReader } from '../pack/reader.js';
import type { ByteSource } from '../pack/source.js';
import { XpkgError } from '../spec/errors.js';
import { craftArchive, manifestOf, parseArchive, withManifest } from '../tools/vectors/craft.js';
import { demoSource, packToBuffer, tempDir, writeSource } from './archive-helpers.js';

const BIG = 'assets/big.bin';

/** Bytes in memory as a source with no hasher of its own: the reader verifies by blocks. */
function memory(bytes: Buffer): ByteSource {
  return {
    name: 'memory',
    size: bytes.length,
    async read(buffer, offset, length, position) {
      const n = Math.max(0, Math.min(length, bytes.length - position));
      buffer.set(bytes.subarray(position, position + n), offset);
      return { bytesRead: n };
    },
    async close() {},
  };
}

async function both(bytes: Buffer): Promise<{ full: string; blocks: string }> {
  const path = join(await tempDir('xpkg-blocks-'), 'p.xpkg');
  await writeFile(path, bytes);
  const run = async (open: () => Promise<PackageReader>) => {
    const r = await open();
    try {
      const report = await r.verifyIntegrity();
      return report.mode ?? 'full';
    } catch (e) {
      if (e instanceof XpkgError) return e.code;
      throw e;
    } finally {
      await r.close();
    }
  };
  return {
    full: await run(() => PackageReader.open(path)),
    blocks: await run(() => PackageReader.fromSource(memory(bytes))),
  };
}

describe('verifying by blocks (FORMAT.md §10.1)', () => {
  let good: Buffer;
  let dataAt: number;
  beforeAll(async () => {
    const src = demoSource({ include: [BIG] });
    const dir = await writeSource(
      {
        'models/net.onnx': Buffer.alloc(0),
        'scripts/post.js': 'export function post(x) { return x; }',
        'assets/labels.txt': 'a\nb\n',
        [BIG]: randomBytes(9 * 2 ** 20),
      },
      src,
    );
    good = await packToBuffer(dir);
    await using r = await PackageReader.fromSource(memory(good));
    dataAt = r.entry(BIG)!.dataOffset;
  });

  it('an intact package: both verify, the block verifier saying so', async () => {
    expect(await both(good)).toEqual({ full: 'full', blocks: 'blocks' });
  });

  it('a byte changed in any block: E_DIGEST_MISMATCH from both', async () => {
    for (const at of [0, 5 * 2 ** 20, 9 * 2 ** 20 - 1]) {
      const bad = Buffer.from(good);
      bad[dataAt + at] ^= 0x40;
      expect(await both(bad), `byte ${at}`).toEqual({ full: 'E_DIGEST_MISMATCH', blocks: 'E_DIGEST_MISMATCH' });
    }
  });

  it('a whole-file SHA-256 that lies about bytes matching every block: the full verifier refuses, the block verifier accepts', async () => {
    const { entries, ts } = parseArchive(good);
    const m = manifestOf(entries);
    const f = m.files.find((x) => x.path === BIG)!;
    f.sha256 = f.blocks[0];
    expect(await both(craftArchive(withManifest(entries, m), { ts }))).toEqual({
      full: 'E_DIGEST_MISMATCH',
      blocks: 'blocks',
    });
  });

  it('a stored CRC-32 that lies about bytes matching every block: E_ARCHIVE_CRC in full, accepted by blocks', async () => {
    const { entries, ts } = parseArchive(good);
    const lied = entries.map((e) => (e.name === BIG ? { ...e, crc32: 0x12345678 } : e));
    expect(await both(craftArchive(lied, { ts }))).toEqual({ full: 'E_ARCHIVE_CRC', blocks: 'blocks' });
  });
});
