/**
 * The CLI as a user drives it, where it used to lose data or mislead: `pack` over its own sources or
 * an existing file, `sign` over another file, in place on a 0600 package or through a link, Ctrl-C in
 * the middle of a large pack; `inspect` on a signed package, `--version`, `-i unknown=…`, `--threads 0`.
 */
import { spawn } from 'node:child_process';
import { chmod, link, lstat, mkdir, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { packFolder } from '../pack/pack.js';
import { keygen } from '../signing/sign.js';
import { EXIT } from '../spec/errors.js';
import { writeImageSource, writePng, xpkgAsync } from './hardening-cli-helpers.js';
import { codeOf } from './helpers/errors.js';
import { tempDir, writeSource } from './helpers/source.js';

// Every test here starts CLI processes (about 1–5 s each on a loaded two-core machine).
vi.setConfig({ testTimeout: 240_000 });

const MODEL = 'models/net.onnx';

async function packed(): Promise<{ dir: string; src: string; pkg: string }> {
  const dir = tempDir('xpkg-hard-');
  const src = writeSource({}, undefined, join(dir, 'src'));
  const pkg = join(dir, 'demo.xpkg');
  await packFolder(src, pkg);
  return { dir, src, pkg };
}

async function key(dir: string): Promise<string> {
  return (await keygen(join(dir, 'k'), { passphrase: null })).secretKeyPath;
}

describe('pack never destroys its sources or an existing file', () => {
  it('refuses an output that is a source file, the manifest, or a link to one, even with --force', async () => {
    const { dir, src } = await packed();
    const model = await readFile(join(src, MODEL));
    const manifest = await readFile(join(src, 'xpkg.json'));
    await symlink(join(src, MODEL), join(dir, 'sym.xpkg'));
    await link(join(src, MODEL), join(dir, 'hard.xpkg'));
    for (const out of [join(src, MODEL), join(src, 'xpkg.json'), join(dir, 'sym.xpkg'), join(dir, 'hard.xpkg')]) {
      for (const force of [false, true])
        expect(await codeOf(packFolder(src, out, { force })), out).toBe('E_PACK_OUTPUT_SOURCE');
    }
    const r = await xpkgAsync(['pack', src, '-o', join(src, MODEL), '--force', '--json']);
    expect(r.json!.error!.code).toBe('E_PACK_OUTPUT_SOURCE');
    expect(r.status).toBe(EXIT.pack);
    expect((await readFile(join(src, MODEL))).equals(model)).toBe(true);
    expect((await readFile(join(src, 'xpkg.json'))).equals(manifest)).toBe(true);
    expect((await lstat(join(dir, 'sym.xpkg'))).isSymbolicLink()).toBe(true);
  });

  it('refuses to replace an existing output without --force, replaces it with --force', async () => {
    const { dir, src } = await packed();
    const out = join(dir, 'existing.xpkg');
    await writeFile(out, 'precious');
    const r = await xpkgAsync(['pack', src, '-o', out, '--json']);
    expect(r.json!.error!.code).toBe('E_PACK_OUTPUT_EXISTS');
    expect(r.status).toBe(EXIT.pack);
    expect(await readFile(out, 'utf8')).toBe('precious');
    const f = await xpkgAsync(['pack', src, '-o', out, '--force', '--json']);
    expect(f.status).toBe(0);
    expect((await xpkgAsync(['verify', out, '--allow-unsigned'])).status).toBe(0);
  });

  it('leaves no temp file and the old output intact when interrupted (SIGINT, SIGTERM) mid-pack', async () => {
    const dir = tempDir('xpkg-hard-sig-');
    const src = writeSource({ [MODEL]: Buffer.alloc(256 * 1024 * 1024, 9) }, undefined, join(dir, 'src'));
    const outDir = join(dir, 'out');
    await mkdir(outDir);
    const out = join(outDir, 'big.xpkg');
    await writeFile(out, 'old package');
    try {
      for (const signal of ['SIGINT', 'SIGTERM'] as const) {
        const child = spawn(process.execPath, [resolve('bin/xpkg.js'), 'pack', src, '-o', out, '--force'], {
          stdio: 'ignore',
        });
        const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
          child.on('exit', (code, sig) => done({ code, signal: sig })),
        );
        // Interrupt once the temp file exists and holds some data: the pack is under way.
        let sent = false;
        for (let i = 0; i < 4000 && !sent; i++) {
          const tmp = (await readdir(outDir)).find((n) => n.endsWith('.tmp'));
          if (tmp && (await stat(join(outDir, tmp)).catch(() => null))?.size) {
            child.kill(signal);
            sent = true;
          } else await new Promise((r) => setTimeout(r, 5));
        }
        expect(sent, 'the pack finished before it could be interrupted').toBe(true);
        const how = await exited;
        expect(how.signal ?? how.code, signal).toBe(signal);
        expect(await readdir(outDir)).toEqual(['big.xpkg']);
        expect(await readFile(out, 'utf8')).toBe('old package');
      }
    } finally {
      await rm(dir, { recursive: true, force: true }); // 256 MiB of source
    }
  });
});

describe('sign keeps what it does not own', () => {
  it('sign -o refuses an existing file without --force', async () => {
    const { dir, pkg } = await packed();
    const k = await key(dir);
    const out = join(dir, 'other.xpkg');
    await writeFile(out, 'precious');
    const r = await xpkgAsync(['sign', pkg, '--key', k, '-o', out, '--json']);
    expect(r.json!.error!.code).toBe('E_PACK_OUTPUT_EXISTS');
    expect(r.status).toBe(EXIT.pack);
    expect(await readFile(out, 'utf8')).toBe('precious');
    expect((await xpkgAsync(['sign', pkg, '--key', k, '-o', out, '--force', '--json'])).status).toBe(0);
    expect((await xpkgAsync(['sign', pkg, '--key', k, '-o', pkg, '--json'])).status).toBe(0); // -o the package itself is in place
  });

  it('sign in place keeps a 0600 package 0600', async () => {
    const { dir, pkg } = await packed();
    const k = await key(dir);
    await chmod(pkg, 0o600);
    expect((await xpkgAsync(['sign', pkg, '--key', k, '--json'])).status).toBe(0);
    expect((await stat(pkg)).mode & 0o777).toBe(0o600);
  });

  it('sign through a symbolic link signs its target and keeps the link', async () => {
    const { dir, pkg } = await packed();
    await chmod(pkg, 0o600);
    const lnk = join(dir, 'link.xpkg');
    await symlink(pkg, lnk);
    expect((await xpkgAsync(['sign', pkg, '--key', await key(dir)])).status).toBe(0);
    const k2 = (await keygen(join(dir, 'k2'), { passphrase: null })).secretKeyPath;
    const r = await xpkgAsync(['sign', lnk, '--key', k2, '--json']);
    expect(r.status).toBe(0);
    expect((await lstat(lnk)).isSymbolicLink()).toBe(true);
    expect(await readlink(lnk)).toBe(pkg);
    expect((await stat(pkg)).mode & 0o777).toBe(0o600);
    expect(r.json!.result.signatures).toHaveLength(2);
    expect((await readdir(dir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });
});

describe('smaller CLI defects', () => {
  it('inspect reports a signature as present and not verified', async () => {
    const { dir, pkg } = await packed();
    const k = await keygen(join(dir, 'k'), { passphrase: null });
    expect((await xpkgAsync(['sign', pkg, '--key', k.secretKeyPath])).status).toBe(0);
    const j = await xpkgAsync(['inspect', pkg, '--json']);
    expect(j.json!.result.signatures).toEqual({ status: 'present', verified: false, keyids: [k.keyid] });
    const h = await xpkgAsync(['inspect', pkg]);
    expect(h.stdout).toContain('not verified');
    expect(h.stdout).not.toMatch(/signed by/);
  });

  it('--version is xpkg’s own version, whatever npm project calls it', async () => {
    const own = JSON.parse(await readFile('package.json', 'utf8')).version;
    const r = await xpkgAsync(['--version'], { env: { npm_package_version: '9.9.9-caller' } });
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(own);
  });

  it('-i unknown=… names the declared inputs (E_USAGE); --threads 0 lets the backend choose', async () => {
    const dir = tempDir('xpkg-hard-run-');
    const pkg = join(dir, 'img.xpkg');
    await packFolder(await writeImageSource(join(dir, 'src')), pkg);
    const png = await writePng(join(dir, 'in.png'));
    const u = await xpkgAsync(['run', pkg, '--allow-unsigned', '-i', `colour=${png}`, '--json']);
    expect(u.json!.error!.code).toBe('E_USAGE');
    expect(u.status).toBe(EXIT.usage);
    expect(u.json!.error!.detail).toEqual({ input: 'colour', expected: ['image'] });
    const t = await xpkgAsync(['run', pkg, '--allow-unsigned', '-i', `image=${png}`, '--threads', '0', '--json']);
    expect(t.status).toBe(0);
    expect(t.json!.result.outputs.y.dims).toEqual([1, 3, 4, 4]);
  });
});
