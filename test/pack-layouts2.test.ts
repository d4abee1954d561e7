/**
 * `xpkg pack` from source folders as other machines and tools leave them: names macOS wrote (NFD),
 * case-only twins, names that differ from the manifest's only in case, metadata that must not
 * reach the bytes, files nobody referenced, and files that change while they are packed. The same
 * folder must give the same bytes everywhere, or be refused everywhere with a code.
 */
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  chmodSync,
  chownSync,
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packFolder } from '../pack/pack.js';
import { PackageReader } from '../pack/reader.js';
import { EXIT, exitStatusOf, type XpkgError } from '../spec/errors.js';
import { xpkg } from './helpers/cli.js';
import { codeOf } from './helpers/errors.js';
import { baseManifest, tempDir, writeSource } from './helpers/source.js';

const dirs: string[] = [];
const temp = () => {
  const d = tempDir('xpkg-layouts2-');
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const CAFE = 'caf\u00e9'; // NFC, as a manifest must name it
const CAFE_NFD = CAFE.normalize('NFD'); // as macOS writes it
const withInclude = (include: string[]) => baseManifest({ include });

async function errorOf(p: Promise<unknown>): Promise<XpkgError> {
  try {
    await p;
  } catch (e) {
    return e as XpkgError;
  }
  throw new Error('expected a rejection');
}

describe('names as other file systems write them', () => {
  it('a folder written on macOS (NFD names, a folder and a file) packs to the bytes of the NFC folder', async () => {
    expect(CAFE_NFD).not.toBe(CAFE);
    const files = (name: string) => ({ [`${name}/${name}.txt`]: 'bonjour\n', [`${name}.cfg`]: 'x=1\n' });
    const manifest = withInclude([`${CAFE}/${CAFE}.txt`, `${CAFE}.cfg`]);
    const nfc = writeSource(files(CAFE), manifest, temp());
    const nfd = writeSource(files(CAFE_NFD), manifest, temp());
    expect(readdirSync(nfd)).toContain(`${CAFE_NFD}.cfg`);
    const out = temp();
    const a = await packFolder(nfc, join(out, 'a.xpkg'));
    const b = await packFolder(nfd, join(out, 'b.xpkg'));
    expect(b.id).toBe(a.id);
    expect(sha(join(out, 'b.xpkg'))).toBe(sha(join(out, 'a.xpkg')));
    await using r = await PackageReader.open(join(out, 'b.xpkg'));
    expect(r.entries.map((e) => e.name)).toContain(`${CAFE}/${CAFE}.txt`);
    await r.verifyIntegrity();
  });

  it('a referenced file with a case-only twin (Net.onnx beside net.onnx) is E_PATH_COLLISION', async () => {
    const dir = writeSource({ 'models/Net.onnx': 'other bytes' }, baseManifest(), temp());
    const e = await errorOf(packFolder(dir, join(temp(), 'o.xpkg')));
    expect(e.code).toBe('E_PATH_COLLISION');
    expect(e.exitStatus).toBe(EXIT.path);
    expect((e.detail as { names: string[] }).names.sort()).toEqual(['models/Net.onnx', 'models/net.onnx']);
  });

  it('twins in a folder on the path, and NFC/NFD twins, are E_PATH_COLLISION too', async () => {
    const folder = writeSource({ 'Models/net.onnx': 'x' }, baseManifest(), temp());
    expect(await codeOf(packFolder(folder, join(temp(), 'o.xpkg')))).toBe('E_PATH_COLLISION');
    const twins = writeSource({ [`${CAFE}.txt`]: 'a', [`${CAFE_NFD}.txt`]: 'b' }, withInclude([`${CAFE}.txt`]), temp());
    expect(await codeOf(packFolder(twins, join(temp(), 'o.xpkg')))).toBe('E_PATH_COLLISION');
  });

  it('a name that differs from the manifest only in case is E_PACK_SOURCE_MISSING naming what is there (macOS would find it)', async () => {
    const dir = writeSource({}, baseManifest(), temp());
    renameSync(join(dir, 'models/net.onnx'), join(dir, 'models/NET.onnx'));
    const e = await errorOf(packFolder(dir, join(temp(), 'o.xpkg')));
    expect(e.code).toBe('E_PACK_SOURCE_MISSING');
    expect(e.detail).toEqual({ path: 'models/net.onnx', found: 'models/NET.onnx' });
    renameSync(join(dir, 'models'), join(dir, 'Models'));
    renameSync(join(dir, 'Models/NET.onnx'), join(dir, 'Models/net.onnx'));
    expect(await codeOf(packFolder(dir, join(temp(), 'o.xpkg')))).toBe('E_PACK_SOURCE_MISSING');
  });

  it('twins nobody references do not matter; an unreferenced case twin of xpkg.json does', async () => {
    const dir = writeSource({ 'README.md': 'a', 'readme.md': 'b' }, baseManifest(), temp());
    expect(await codeOf(packFolder(dir, join(temp(), 'o.xpkg')))).toBe('OK');
    writeFileSync(join(dir, 'XPKG.json'), '{}');
    expect(await codeOf(packFolder(dir, join(temp(), 'o.xpkg')))).toBe('E_PATH_COLLISION');
  });

  it('the CLI reports them with the names exit status (11) and the pack status (14)', () => {
    const twin = writeSource({ 'models/Net.onnx': 'x' }, baseManifest(), temp());
    const r = xpkg(['pack', twin, '-o', join(temp(), 'o.xpkg'), '--json']);
    expect(r.json?.error?.code).toBe('E_PATH_COLLISION');
    expect(r.status).toBe(EXIT.path);
    const upper = writeSource({}, baseManifest(), temp());
    renameSync(join(upper, 'assets/labels.txt'), join(upper, 'assets/Labels.txt'));
    const s = xpkg(['pack', upper, '-o', join(temp(), 'o.xpkg'), '--json']);
    expect(s.json?.error?.code).toBe('E_PACK_SOURCE_MISSING');
    expect(s.status).toBe(EXIT.pack);
  });
});

describe('what never reaches the bytes', () => {
  it('mtimes, modes, owners, umask, creation order and unreferenced files (.git/, node_modules/, hidden, empty folders)', async () => {
    const a = writeSource(
      { 'extra/one.txt': '1', 'extra/two.txt': '2' },
      withInclude(['extra/one.txt', 'extra/two.txt']),
      temp(),
    );
    // b: the same content, files created in the other order, with other metadata and junk around
    const b = temp();
    mkdirSync(join(b, 'extra'));
    writeFileSync(join(b, 'extra/two.txt'), '2');
    writeFileSync(join(b, 'extra/one.txt'), '1');
    writeSource({}, withInclude(['extra/one.txt', 'extra/two.txt']), b);
    for (const p of ['.git/objects/ab', 'node_modules/x', 'empty', 'extra/empty'])
      mkdirSync(join(b, p), { recursive: true });
    writeFileSync(join(b, '.git/HEAD'), 'ref: refs/heads/main\n');
    writeFileSync(join(b, '.DS_Store'), 'junk');
    writeFileSync(join(b, 'node_modules/x/index.js'), '');
    writeFileSync(join(b, 'notes.txt'), 'not referenced');
    utimesSync(join(b, 'models/net.onnx'), new Date('2001-02-03T04:05:06Z'), new Date('2001-02-03T04:05:06Z'));
    chmodSync(join(b, 'assets/labels.txt'), 0o600);
    chmodSync(join(b, 'extra'), 0o700);
    if (process.getuid?.() === 0) chownSync(join(b, 'extra/one.txt'), 4321, 4321);
    const out = temp();
    const old = process.umask(0o077);
    try {
      await packFolder(a, join(out, 'a.xpkg'), { sourceDateEpoch: '' });
    } finally {
      process.umask(old);
    }
    await packFolder(b, join(out, 'b.xpkg'), { sourceDateEpoch: '' });
    expect(sha(join(out, 'b.xpkg'))).toBe(sha(join(out, 'a.xpkg')));
    await using r = await PackageReader.open(join(out, 'b.xpkg'));
    expect(r.entries.map((e) => e.name)).toEqual([
      'xpkg/manifest.json',
      'assets/labels.txt',
      'extra/one.txt',
      'extra/two.txt',
      'models/net.onnx',
    ]);
  });

  it('a hard link is a regular file: its bytes are packed, as a copy of them would be', async () => {
    const outside = join(temp(), 'shared.bin');
    writeFileSync(outside, 'shared bytes');
    const dir = writeSource({}, withInclude(['linked.bin']), temp());
    linkSync(outside, join(dir, 'linked.bin'));
    const copy = writeSource({ 'linked.bin': 'shared bytes' }, withInclude(['linked.bin']), temp());
    const out = temp();
    await packFolder(dir, join(out, 'a.xpkg'));
    await packFolder(copy, join(out, 'b.xpkg'));
    expect(sha(join(out, 'a.xpkg'))).toBe(sha(join(out, 'b.xpkg')));
  });

  it('an output inside the source folder: packing again over it (--force) gives the same bytes', async () => {
    const dir = writeSource({}, baseManifest(), temp());
    const out = join(dir, 'demo.xpkg');
    await packFolder(dir, out);
    const first = sha(out);
    await packFolder(dir, out, { force: true });
    expect(sha(out)).toBe(first);
    expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });
});

describe('a file that changes while it is packed', () => {
  const BIG = 9 * 1024 * 1024; // three 4 MiB chunks, so there is a "meanwhile" to change it in
  const bigSource = () =>
    writeSource({ 'assets/big.bin': Buffer.alloc(BIG, 1) }, withInclude(['assets/big.bin']), temp());

  async function packWhile(dir: string, change: (done: number) => void): Promise<{ code: string; out: string }> {
    const outDir = temp();
    const out = join(outDir, 'o.xpkg');
    let fired = false;
    const code = await codeOf(
      packFolder(dir, out, {
        onProgress: (done) => {
          if (!fired && done >= 4 * 1024 * 1024) {
            fired = true;
            change(done);
          }
        },
      }),
    );
    expect(fired).toBe(true);
    if (code !== 'OK') expect(readdirSync(outDir)).toEqual([]); // no output and no temp file
    return { code, out };
  }

  it('truncated, grown, or replaced meanwhile: E_PACK_SOURCE_CHANGED (exit 14), nothing written', async () => {
    expect(exitStatusOf('E_PACK_SOURCE_CHANGED')).toBe(EXIT.pack);
    let dir = bigSource();
    expect((await packWhile(dir, () => truncateSync(join(dir, 'assets/big.bin'), 5 * 1024 * 1024))).code).toBe(
      'E_PACK_SOURCE_CHANGED',
    );
    dir = bigSource();
    expect((await packWhile(dir, () => appendFileSync(join(dir, 'assets/big.bin'), 'more'))).code).toBe(
      'E_PACK_SOURCE_CHANGED',
    );
    // assets/labels.txt is packed after assets/big.bin: replace it before its turn
    dir = bigSource();
    const swap = () => {
      writeFileSync(join(dir, 'assets/new.txt'), 'cat\ndog\n');
      renameSync(join(dir, 'assets/new.txt'), join(dir, 'assets/labels.txt'));
    };
    expect((await packWhile(dir, swap)).code).toBe('E_PACK_SOURCE_CHANGED');
  });

  it('rewritten in place at the same size: the package holds the bytes it hashed, and verifies', async () => {
    const dir = bigSource();
    const { code, out } = await packWhile(dir, () => writeFileSync(join(dir, 'assets/big.bin'), Buffer.alloc(BIG, 2)));
    expect(code).toBe('OK');
    await using r = await PackageReader.open(out);
    await r.verifyIntegrity();
  });

  it('an existing output is left as it was when the pack fails', async () => {
    const dir = bigSource();
    const outDir = temp();
    const out = join(outDir, 'o.xpkg');
    writeFileSync(out, 'previous package');
    const code = await codeOf(
      packFolder(dir, out, { force: true, onProgress: () => truncateSync(join(dir, 'assets/big.bin'), 10) }),
    );
    expect(code).toBe('E_PACK_SOURCE_CHANGED');
    expect(readFileSync(out, 'utf8')).toBe('previous package');
    expect(readdirSync(outDir)).toEqual(['o.xpkg']);
    expect(existsSync(`${out}.tmp`)).toBe(false);
  });
});
