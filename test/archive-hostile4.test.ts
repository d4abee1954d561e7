/**
 * Hostile archives, fourth set (archive-attacks, archive-exhaustive, archive-hostile3 and
 * zip-interop hold the earlier ones): an archive comment that itself holds the end-record
 * signature, and the memory a full verification holds for a package of many small files.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { packFolder } from '../pack/pack.js';
import * as Z from '../pack/zip.js';
import { craftArchive, parseArchive } from '../tools/vectors/craft.js';
import { demoSource, packToBuffer, rejection, tempDir, writeSource } from './archive-helpers.js';

let pkg: Buffer;
beforeAll(async () => {
  pkg = await packToBuffer(
    await writeSource(
      {
        'models/net.onnx': Buffer.alloc(200, 7),
        'assets/labels.txt': 'zero\none\n',
        'scripts/post.js': 'export function post(x) { return x; }\n',
      },
      demoSource(),
    ),
    { sourceDateEpoch: '1234567890' },
  );
});

describe('the end of the archive', () => {
  const withComment = (comment: Buffer) => {
    const { entries, ts } = parseArchive(pkg);
    return craftArchive(entries, { ts, patchEnd: (h) => void h.writeUInt16LE(comment.length, 20), suffix: comment });
  };

  it('a comment holding the end-record signature, or a whole fake end record, is E_ARCHIVE_COMMENT (was E_ARCHIVE_TRAILING)', async () => {
    // self-extractor stubs and zip tools write comments like these
    expect(await rejection(withComment(Buffer.from('sfx PK\x05\x06 stub', 'latin1')))).toBe('E_ARCHIVE_COMMENT');
    const fakeEnd = pkg.subarray(pkg.length - Z.END_SIZE);
    expect(await rejection(withComment(Buffer.concat([fakeEnd, Buffer.from('tail')])))).toBe('E_ARCHIVE_COMMENT');
  });

  it('a lone signature after the end record is trailing bytes; a fake end record last is a second end record', async () => {
    expect(await rejection(Buffer.concat([pkg, Buffer.from('PK\x05\x06', 'latin1')]))).toBe('E_ARCHIVE_TRAILING');
    expect(await rejection(withComment(pkg.subarray(pkg.length - Z.END_SIZE)))).toBe('E_ARCHIVE_MULTIPLE_END');
  });
});

describe('memory of a full verification', () => {
  it('a package of 384 files of 1 MiB is verified without holding them all at once', async () => {
    const FILES = 384;
    const src = await writeSource(
      {
        'models/net.onnx': Buffer.alloc(200, 7),
        'assets/labels.txt': 'zero\none\n',
        'scripts/post.js': 'export function post(x) { return x; }\n',
      },
      demoSource({ include: Array.from({ length: FILES }, (_, i) => `data/f${i}.bin`) }),
    );
    await mkdir(join(src, 'data'));
    // incompressible, so each is stored and read whole by the check of small files
    for (let i = 0; i < FILES; i++) await writeFile(join(src, 'data', `f${i}.bin`), randomBytes(1 << 20));
    const path = join(await tempDir('xpkg-many-'), 'many.xpkg');
    await packFolder(src, path);
    await rm(join(src, 'data'), { recursive: true });
    // A fresh process, so the peak is the verification's alone (dist/ is built by the global setup);
    // sampled, as a child's maxRSS starts at its parent's on Linux.
    const script = `
      import { PackageReader } from ${JSON.stringify(join(process.cwd(), 'dist/pack/reader.js'))};
      const r = await PackageReader.open(process.argv[1]);
      const before = process.memoryUsage.rss();
      let peak = before;
      const t = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 2);
      const rep = await r.verifyIntegrity();
      clearInterval(t);
      await r.close();
      console.log(JSON.stringify({ files: rep.files, growthMiB: (peak - before) / 2 ** 20 }));`;
    const out = JSON.parse(
      execFileSync(process.execPath, ['--input-type=module', '-e', script, path], { encoding: 'utf8' }),
    );
    expect(out.files).toBe(FILES + 3);
    // every file read at once was 384 MiB and more; 64 MiB in flight and the collector's lag stay far below
    expect(out.growthMiB).toBeLessThan(220);
  }, 120_000);
});
