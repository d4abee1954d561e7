/**
 * `xpkg pack` / `unpack` / `explain` meeting hostile or odd input, through the real CLI: every bad
 * input is a stable code with its area's exit status, never a crash, and nothing of the user's is
 * replaced or lost.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, rmSync, symlinkSync, truncateSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EXIT } from '../spec/errors.js';
import { xpkg } from './helpers/cli.js';
import { baseManifest, tempDir, writeSource } from './helpers/source.js';

const dirs: string[] = [];
const temp = () => {
  const d = tempDir('xpkg-hostile-');
  dirs.push(d);
  return d;
};
const source = (manifest = baseManifest()) => writeSource({}, manifest, temp());
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('pack: the output path', () => {
  it('--force never replaces a FIFO (or a device) with the package', () => {
    const out = join(temp(), 'fifo');
    expect(spawnSync('mkfifo', [out]).status).toBe(0);
    const r = xpkg(['pack', source(), '-o', out, '--force', '--json']);
    expect(r.json?.error?.code).toBe('E_PACK_OUTPUT_EXISTS');
    expect(r.status).toBe(EXIT.pack);
    expect(lstatSync(out).isFIFO()).toBe(true);
    expect(readdirSync(join(out, '..'))).toEqual(['fifo']);
  });

  it('--force onto a folder is refused before anything is written, the folder kept', () => {
    const parent = temp();
    const out = join(parent, 'folder');
    mkdirSync(out);
    const r = xpkg(['pack', source(), '-o', out, '--force', '--json']);
    expect(r.json?.error?.code).toBe('E_PACK_OUTPUT_EXISTS');
    expect(r.status).toBe(EXIT.pack);
    expect(lstatSync(out).isDirectory()).toBe(true);
    expect(readdirSync(parent)).toEqual(['folder']);
  });

  it('an output ending in / (a folder, existing or not) is a usage error, nothing written', () => {
    const parent = temp();
    const pkg = join(parent, 'p.xpkg');
    expect(xpkg(['pack', source(), '-o', pkg, '--json']).status).toBe(0);
    for (const out of [join(parent, 'new/'), `${parent}/`]) {
      const r = xpkg(['pack', source(), '-o', out, '--force', '--json']);
      expect(r.json?.error?.code, out).toBe('E_USAGE');
      expect(r.status).toBe(EXIT.usage);
      const s = xpkg(['sign', pkg, '--key', 'fixtures/keys/test.key', '-o', out, '--force', '--json']);
      expect(s.json?.error?.code, out).toBe('E_USAGE');
      expect(s.status).toBe(EXIT.usage);
    }
    expect(readdirSync(parent)).toEqual(['p.xpkg']);
  });

  it('the source folder itself as the output is refused, even with --force', () => {
    const src = source();
    const r = xpkg(['pack', src, '-o', src, '--force', '--json']);
    expect(r.json?.error?.code).toBe('E_PACK_OUTPUT_EXISTS');
    expect(r.status).toBe(EXIT.pack);
    expect(existsSync(join(src, 'xpkg.json'))).toBe(true);
  });
});

describe('sign and keygen: --force never replaces what is not a regular file', () => {
  it('sign -o <FIFO> --force is refused, the FIFO kept', () => {
    const parent = temp();
    const out = join(parent, 'fifo');
    expect(spawnSync('mkfifo', [out]).status).toBe(0);
    const pkg = join(parent, 'p.xpkg');
    expect(xpkg(['pack', source(), '-o', pkg, '--json']).status).toBe(0);
    const r = xpkg(['sign', pkg, '--key', 'fixtures/keys/test.key', '-o', out, '--force', '--json']);
    expect(r.json?.error?.code).toBe('E_PACK_OUTPUT_EXISTS');
    expect(r.status).toBe(EXIT.pack);
    expect(lstatSync(out).isFIFO()).toBe(true);
    expect(readdirSync(parent).sort()).toEqual(['fifo', 'p.xpkg']);
  });

  it('keygen --force with a FIFO for the .pub writes no key at all', () => {
    const parent = temp();
    expect(spawnSync('mkfifo', [join(parent, 'k.pub')]).status).toBe(0);
    const r = xpkg(['keygen', '-o', join(parent, 'k'), '--no-passphrase', '--force', '--json']);
    expect(r.json?.error?.code).toBe('E_KEY_EXISTS');
    expect(r.status).toBe(EXIT.key);
    expect(lstatSync(join(parent, 'k.pub')).isFIFO()).toBe(true);
    expect(readdirSync(parent)).toEqual(['k.pub']);
  });
});

describe('pack: the manifest source', () => {
  it('a missing folder (or a link loop) is E_NOT_FOUND with -o or without (the default name is read from it)', () => {
    const loop = join(temp(), 'loop');
    symlinkSync(loop, loop);
    for (const missing of [join(temp(), 'nope'), loop]) {
      for (const args of [
        ['pack', missing, '--json'],
        ['pack', missing, '-o', join(temp(), 'o.xpkg'), '--json'],
      ]) {
        const r = xpkg(args, {}, undefined, temp());
        expect(r.json?.error?.code, args.join(' ')).toBe('E_NOT_FOUND');
        expect(r.status).toBe(EXIT.io);
      }
    }
  });

  it('a multi-gigabyte xpkg.json is E_MANIFEST_TOO_LARGE, not read into memory', () => {
    const src = source();
    truncateSync(join(src, 'xpkg.json'), 3 * 1024 ** 3); // sparse: no disk used
    const r = xpkg(['pack', src, '-o', join(temp(), 'o.xpkg'), '--json']);
    expect(r.json?.error?.code).toBe('E_MANIFEST_TOO_LARGE');
    expect(r.status).toBe(EXIT.manifest);
  });
});

describe('long names', () => {
  it('an output and a packaged file named with 250 bytes are written (temp names stay under 255)', () => {
    const long = `${'é'.repeat(60)}${'a'.repeat(126)}.txt`; // 250 UTF-8 bytes, one segment
    const src = writeSource({ [`d/${long}`]: 'x' }, baseManifest({ include: [`d/${long}`] }), temp());
    const parent = temp();
    const out = join(parent, `${'p'.repeat(245)}.xpkg`);
    const r = xpkg(['pack', src, '-o', out, '--json']);
    expect(r.json?.error).toBeUndefined();
    expect(r.status).toBe(0);
    const dest = join(parent, 'out');
    const u = xpkg(['unpack', out, '-o', dest, '--json']);
    expect(u.json?.error).toBeUndefined();
    expect(u.status).toBe(0);
    expect(readdirSync(join(dest, 'd'))).toEqual([long]);
  });
});

describe('pack: many files', () => {
  it('a folder of more files than descriptors the process may hold open is packed', () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 300; i++) files[`f/${i}.txt`] = `${i}`;
    const src = writeSource(files, baseManifest({ include: Object.keys(files) }), temp());
    const out = join(temp(), 'many.xpkg');
    // ulimit -n 96: node needs some 30 descriptors of its own; before the fix every file stayed open
    const r = spawnSync(
      'sh',
      [
        '-c',
        'ulimit -n 96 && exec "$0" "$@"',
        process.execPath,
        resolve('bin/xpkg.js'),
        'pack',
        src,
        '-o',
        out,
        '--json',
      ],
      { encoding: 'utf8' },
    );
    expect(r.stdout).toContain('"result"');
    expect(r.status).toBe(0);
    const v = xpkg(['verify', out, '--allow-unsigned', '--json']);
    expect(v.status).toBe(0);
    expect(v.json?.result.integrity.files).toBe(302);
  });

  it('more files than a package can hold is E_ARCHIVE_LIMIT before any is opened, not a package no reader opens', () => {
    const include = Array.from({ length: 19_997 }, (_, i) => `f/${i}`); // + 2 files of baseManifest = 19,999
    const r = xpkg(['pack', source(baseManifest({ include })), '-o', join(temp(), 'o.xpkg'), '--json']);
    expect(r.json?.error?.code).toBe('E_ARCHIVE_LIMIT');
    expect(r.status).toBe(EXIT.archive);
  });
});

describe('explain: a package the schema accepts', () => {
  it('an infer step without params is explained, not an internal error', () => {
    const out = join(temp(), 'p.xpkg');
    expect(xpkg(['pack', source(), '-o', out, '--json']).status).toBe(0);
    const r = xpkg(['explain', out, '--json']);
    expect(r.json?.error?.code).toBeUndefined();
    expect(r.status).toBe(0);
    expect(Object.keys(r.json?.result.shapes)).toEqual([]);
  });

  it('script and split steps without params are explained, not an internal error', () => {
    for (const op of ['script', 'split']) {
      const steps = [{ op }, { op: 'infer', model: 'net' }];
      const out = join(temp(), `${op}.xpkg`);
      expect(xpkg(['pack', source(baseManifest({ pipeline: { steps } })), '-o', out, '--json']).status).toBe(0);
      const r = xpkg(['explain', out, '--json']);
      expect(r.json?.error?.code, op).toBeUndefined();
      expect(r.status).toBe(0);
    }
  });
});
