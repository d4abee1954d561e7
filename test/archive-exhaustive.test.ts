/**
 * Exhaustive damage: for every byte offset of a small package, two different single-byte changes
 * (xor 0xff, and +1) and truncation at that offset must each make open + verifyIntegrity fail
 * with an xpkg error (FormatError or SigningError), never succeed and never throw anything else.
 * Changes inside the manifest must be caught by its CRC (it is parsed before any digest check) and
 * changes inside payload data by the manifest digests.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PackageReader } from '../pack/reader.js';
import { FormatError, SigningError } from '../spec/errors.js';
import { demoSource, packToBuffer, tempDir, writeSource } from './archive-helpers.js';

let pkg: Buffer;
let dir: string;
/** [start, end) of each entry's data, by name. */
let regions: Map<string, [number, number]>;

beforeAll(async () => {
  const src = await writeSource(
    {
      'models/net.onnx': Buffer.alloc(0), // empty: no 64 KiB alignment padding, so the package stays small
      'assets/labels.txt': 'cat\ndog\nbird\nfish\nhorse\nsheep\n',
      'scripts/post.js': 'export const post = (x) => x;\n',
    },
    demoSource(),
  );
  pkg = await packToBuffer(src, { sourceDateEpoch: '1600000000' });
  dir = await tempDir('xpkg-arch-exh-');
  const path = join(dir, 'good.xpkg');
  await writeFile(path, pkg);
  await using r = await PackageReader.open(path);
  await r.verifyIntegrity();
  regions = new Map(r.entries.map((e) => [e.name, [e.dataOffset, e.dataOffset + e.compressedSize]]));
});

type Result = { offset: number; code?: string; problem?: string };

/** Runs `make(offset)` for every offset, two cases at a time (each in its own file). */
async function sweep(count: number, make: (offset: number) => Buffer): Promise<Result[]> {
  const results: Result[] = [];
  let next = 0;
  const lane = async (slot: number) => {
    const path = join(dir, `case-${slot}.xpkg`);
    while (next < count) {
      const offset = next++;
      await writeFile(path, make(offset));
      let reader: PackageReader | undefined;
      try {
        reader = await PackageReader.open(path);
        await reader.verifyIntegrity();
        results.push({ offset, problem: 'accepted' });
      } catch (e) {
        if (e instanceof FormatError || e instanceof SigningError) results.push({ offset, code: e.code });
        else results.push({ offset, problem: `threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}` });
      } finally {
        await reader?.close();
      }
    }
  };
  await Promise.all([lane(0), lane(1)]);
  return results.sort((a, b) => a.offset - b.offset);
}

function regionOf(offset: number): string | undefined {
  for (const [name, [a, b]] of regions) if (offset >= a && offset < b) return name;
  return undefined;
}

function check(results: Result[]): void {
  const problems = results.filter((r) => r.problem);
  expect(problems, `offsets where the damage was not reported as an xpkg error`).toEqual([]);
  // Damage inside stored data is caught by the check that owns those bytes.
  const wrongCode = results.filter((r) => {
    const where = regionOf(r.offset);
    if (where === undefined) return false;
    return r.code !== (where === 'xpkg/manifest.json' ? 'E_ARCHIVE_CRC' : 'E_DIGEST_MISMATCH');
  });
  expect(wrongCode, 'damage inside entry data reported with an unexpected code').toEqual([]);
}

describe('every single-byte change and every truncation is detected', () => {
  it('the package is small and its payload is non-trivial', () => {
    expect(pkg.length).toBeLessThan(4096);
    const payload = [...regions].filter(([n]) => n !== 'xpkg/manifest.json').reduce((s, [, [a, b]]) => s + b - a, 0);
    expect(payload).toBeGreaterThan(50);
  });

  it('xor 0xff at every offset', async () => {
    const results = await sweep(pkg.length, (i) => {
      const b = Buffer.from(pkg);
      b[i] ^= 0xff;
      return b;
    });
    expect(results).toHaveLength(pkg.length);
    check(results);
  });

  it('+1 at every offset', async () => {
    check(
      await sweep(pkg.length, (i) => {
        const b = Buffer.from(pkg);
        b[i] = (b[i] + 1) & 0xff;
        return b;
      }),
    );
  });

  it('truncation at every offset', async () => {
    const results = await sweep(pkg.length, (n) => pkg.subarray(0, n));
    expect(results.filter((r) => r.problem)).toEqual([]);
    expect(results.every((r) => r.code?.startsWith('E_ARCHIVE_'))).toBe(true);
  });
});
