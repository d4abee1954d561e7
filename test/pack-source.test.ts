import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packFolder } from '../pack/pack.js';
import { codeOf } from './helpers/errors.js';
import { baseManifest, tempDir, writeSource } from './helpers/source.js';

describe('pack refuses bad source folders', () => {
  it('missing referenced file', async () => {
    const dir = writeSource({}, baseManifest({ include: ['nope.txt'] }));
    expect(await codeOf(packFolder(dir, join(tempDir(), 'o.xpkg')))).toBe('E_PACK_SOURCE_MISSING');
  });
  it('symbolic link as the file and as a directory on the path', async () => {
    const dir = writeSource({ 'real/a.txt': 'x' }, baseManifest({ include: ['link.txt'] }));
    symlinkSync(join(dir, 'real/a.txt'), join(dir, 'link.txt'));
    expect(await codeOf(packFolder(dir, join(tempDir(), 'o.xpkg')))).toBe('E_PACK_SOURCE_LINK');
    const dir2 = writeSource({ 'real/a.txt': 'x' }, baseManifest({ include: ['d/a.txt'] }));
    symlinkSync(join(dir2, 'real'), join(dir2, 'd'));
    expect(await codeOf(packFolder(dir2, join(tempDir(), 'o.xpkg')))).toBe('E_PACK_SOURCE_LINK');
  });
  it('link pointing outside the folder', async () => {
    const outside = tempDir();
    writeFileSync(join(outside, 'secret'), 'secret');
    const dir = writeSource({}, baseManifest({ include: ['s'] }));
    symlinkSync(join(outside, 'secret'), join(dir, 's'));
    expect(await codeOf(packFolder(dir, join(tempDir(), 'o.xpkg')))).toBe('E_PACK_SOURCE_LINK');
  });
  it('special file and directory in place of a file', async () => {
    const dir = writeSource({}, baseManifest({ include: ['fifo'] }));
    expect(spawnSync('mkfifo', [join(dir, 'fifo')]).status).toBe(0);
    expect(await codeOf(packFolder(dir, join(tempDir(), 'o.xpkg')))).toBe('E_PACK_SOURCE_TYPE');
    const dir2 = writeSource({}, baseManifest({ include: ['sub'] }));
    mkdirSync(join(dir2, 'sub'));
    expect(await codeOf(packFolder(dir2, join(tempDir(), 'o.xpkg')))).toBe('E_PACK_SOURCE_TYPE');
  });
  it('traversal and absolute paths are rejected by the manifest check', async () => {
    for (const p of ['../x', '/etc/passwd', 'a/../../x', 'C:/x', 'a\\b']) {
      const dir = writeSource({}, baseManifest({ include: [p] }));
      expect(await codeOf(packFolder(dir, join(tempDir(), 'o.xpkg'))), p).toBe('E_MANIFEST_REFERENCE');
    }
  });
  it('invalid manifest source: JSON error, duplicate key, schema problems all listed', async () => {
    const dir = writeSource();
    writeFileSync(join(dir, 'xpkg.json'), '{"name": "a", "name": "b"}');
    expect(await codeOf(packFolder(dir, join(tempDir(), 'o.xpkg')))).toBe('E_MANIFEST_DUPLICATE_KEY');
    writeFileSync(join(dir, 'xpkg.json'), '{"name": ');
    expect(await codeOf(packFolder(dir, join(tempDir(), 'o.xpkg')))).toBe('E_MANIFEST_JSON');
    writeFileSync(join(dir, 'xpkg.json'), JSON.stringify(baseManifest({ version: 'one', sequence: -1, extra: true })));
    try {
      await packFolder(dir, join(tempDir(), 'o.xpkg'));
      expect.unreachable();
    } catch (e) {
      const err = e as { code: string; detail: { problems: { path: string }[] } };
      expect(err.code).toBe('E_MANIFEST_SCHEMA');
      const paths = err.detail.problems.map((p) => p.path);
      expect(paths).toContain('/version');
      expect(paths).toContain('/sequence');
      expect(paths).toContain('/');
    }
  });
  it('a failed pack leaves no output and no temp file behind', async () => {
    const dir = writeSource({}, baseManifest({ include: ['nope.txt'] }));
    const outDir = tempDir();
    expect(await codeOf(packFolder(dir, join(outDir, 'o.xpkg')))).toBe('E_PACK_SOURCE_MISSING');
    expect(readdirSync(outDir)).toEqual([]);
    expect(existsSync(join(outDir, 'o.xpkg'))).toBe(false);
  });
});
