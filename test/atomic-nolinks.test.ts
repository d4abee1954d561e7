/**
 * Publishing without replacing (`writeAtomic` with `overwrite: false`, as `xpkg pack` without
 * --force does) on a file system without hard links (vfat/exFAT sticks: link() is EPERM there): the
 * file still appears whole, an existing one is still never replaced, and no temp file is left.
 * link() is made to fail as such a file system makes it fail; everything else is the real disk.
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';

vi.mock('node:fs/promises', async (original) => {
  const real = await original<typeof import('node:fs/promises')>();
  const link = async () => {
    throw Object.assign(new Error('EPERM: operation not permitted, link'), { code: 'EPERM', syscall: 'link' });
  };
  return { ...real, default: { ...real, link }, link };
});

const { writeAtomic } = await import('../pack/atomic.js');

describe('publishing a new file where there are no hard links', () => {
  it('writes it whole, never over an existing file, and leaves no temp file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'xpkg-nolinks-'));
    const target = join(dir, 'out.xpkg');
    await writeAtomic(target, async (fh) => void (await fh.write(Buffer.from('package'))), { overwrite: false });
    expect(readFileSync(target, 'utf8')).toBe('package');
    writeFileSync(join(dir, 'other.xpkg'), 'theirs');
    const e = await writeAtomic(join(dir, 'other.xpkg'), async (fh) => void (await fh.write(Buffer.from('mine'))), {
      overwrite: false,
    }).catch((x: NodeJS.ErrnoException) => x);
    expect((e as NodeJS.ErrnoException).code).toBe('EEXIST');
    expect(readFileSync(join(dir, 'other.xpkg'), 'utf8')).toBe('theirs');
    expect(readdirSync(dir).sort()).toEqual(['other.xpkg', 'out.xpkg']);
  });
});
