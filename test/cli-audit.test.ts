/**
 * What an audit of the CLI's bad-input paths found, each through the built CLI: an interrupted
 * unpack leaves no half-written file under a package name, an empty path is a usage error (not the
 * current folder or a default name), and a 1-D Fortran-order .npy is an input like any other.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { EXIT } from '../spec/errors.js';
import { xpkg, xpkgAsync } from './helpers/cli.js';
import { npyFile } from './helpers/npy.js';
import { oneModelManifest, tempDir, writeSource } from './helpers/source.js';

vi.setConfig({ testTimeout: 120_000 });

const BIN = resolve('bin/xpkg.js');
const DETECTOR = 'fixtures/dist/detector.xpkg';

describe('unpack killed while writing', () => {
  it('leaves no half-written file under the name the package gives it (SIGKILL: no handler runs)', async () => {
    const size = 96 * 2 ** 20;
    const src = writeSource({ 'models/big.onnx': randomBytes(size) }, oneModelManifest(), tempDir(), false);
    const pkg = join(tempDir(), 'big.xpkg');
    expect(xpkg(['pack', src, '-o', pkg]).status).toBe(0);
    const dest = join(tempDir(), 'out');
    const child = spawn(process.execPath, [BIN, 'unpack', pkg, '-o', dest], { stdio: 'ignore' });
    const exited = new Promise((done) => child.on('exit', done));
    // kill as soon as the model's bytes start landing in the destination
    const models = join(dest, 'models');
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (existsSync(models) && readdirSync(models).length) break;
      if (Date.now() > deadline) throw new Error('unpack never started writing');
      await new Promise((r) => setTimeout(r, 2));
    }
    child.kill('SIGKILL');
    await exited;
    const final = join(models, 'big.onnx');
    // either not there at all, or whole (it finished before the kill): never a part of it
    if (existsSync(final)) expect(statSync(final).size).toBe(size);
    else expect(readdirSync(models).every((f) => f.startsWith('.'))).toBe(true);
  });
});

describe('an empty path is E_USAGE, never a default or the current folder', () => {
  it.each([
    ['pack -o ""', (d: string) => ['pack', d, '-o', '']],
    ['sign -o ""', () => ['sign', resolve(DETECTOR), '--key', resolve('fixtures/keys/test.key'), '-o', '']],
    ['inspect ""', () => ['inspect', '']],
    ['unpack -o ""', () => ['unpack', resolve(DETECTOR), '-o', '']],
    ['run --annotate ""', () => ['run', resolve(DETECTOR), '--allow-unsigned', '--annotate', '']],
    ['run -i ""', () => ['run', resolve(DETECTOR), '--allow-unsigned', '-i', '']],
  ])('%s', (_name, args) => {
    const dir = writeSource();
    // in a folder of its own: a default output name would land there, not in the repository
    const cwd = tempDir();
    const r = xpkg([...args(dir), '--json'], {}, undefined, cwd);
    expect([r.json?.error?.code, r.status]).toEqual(['E_USAGE', EXIT.usage]);
    expect(readdirSync(cwd)).toEqual([]);
  });
});

describe('Fortran-order .npy inputs to xpkg run', () => {
  it('1-D (the same bytes as C order) runs; 2-D is read in C order, then checked against the declared shape', async () => {
    const dir = tempDir();
    const run = (f: string) =>
      xpkgAsync([
        'run',
        'fixtures/dist/multi-variant.xpkg',
        '--trust',
        'fixtures/keys/test.pub',
        '--variant',
        'cpu-fp32',
        '--state-dir',
        dir,
        '-i',
        f,
        '--json',
      ]);
    const one = join(dir, 'f1.npy');
    writeFileSync(one, npyFile([1, 2, 3], [3], { fortran: true }));
    const r1 = await run(one);
    expect(r1.status).toBe(0);
    expect(r1.json?.result.outputs.y.data).toEqual([2, 3, 4]);
    const two = join(dir, 'f2.npy');
    writeFileSync(two, npyFile([1, 2, 3, 4], [2, 2], { fortran: true }));
    const r2 = await run(two);
    // the model takes [N]: a 2-D array is refused for its shape, not its order
    expect([r2.json?.error?.code, (r2.json?.error?.detail as { reason?: string })?.reason, r2.status]).toEqual([
      'E_RUN_INPUT',
      'shape',
      EXIT.runner,
    ]);
  });
});

describe('xpkg split: outputs that would overwrite each other or the model, and samples that do not fit', () => {
  const MODEL = 'fixtures/detector/model.onnx';
  const AT = '/s3/s3.2/Add_output_0';
  /** A copy of the model to cut, in a folder of its own, and its bytes' size. */
  function copy(): { dir: string; model: string; size: number } {
    const dir = tempDir('xpkg-split-');
    const model = join(dir, 'model.onnx');
    copyFileSync(MODEL, model);
    return { dir, model, size: statSync(model).size };
  }
  it('--head and --tail the same file, or the model itself (also through a link): E_USAGE, the model untouched', () => {
    const { dir, model, size } = copy();
    symlinkSync(model, join(dir, 'link.onnx'));
    for (const [head, tail] of [
      ['same.onnx', 'same.onnx'],
      ['model.onnx', 't.onnx'],
      ['h.onnx', 'link.onnx'],
      ['h.onnx', './sub/../model.onnx'],
    ]) {
      const r = xpkg([
        'split',
        model,
        '--at',
        AT,
        '--head',
        join(dir, head),
        '--tail',
        join(dir, tail),
        '--check',
        '0',
        '--json',
      ]);
      expect([r.json?.error?.code, r.status]).toEqual(['E_USAGE', EXIT.usage]);
      expect(statSync(model).size).toBe(size);
    }
  });
  it('--check with --sample is E_USAGE; a sample of the wrong shape or input name is E_FABRIC_SPLIT, not an internal error', () => {
    const { dir, model } = copy();
    const small = join(dir, 'small.npy');
    writeFileSync(small, npyFile([1, 2, 3], [3]));
    const out = ['--head', join(dir, 'h.onnx'), '--tail', join(dir, 't.onnx'), '--json'];
    const both = xpkg(['split', model, '--at', AT, '--check', '1', '--sample', small, ...out]);
    expect([both.json?.error?.code, both.status]).toEqual(['E_USAGE', EXIT.usage]);
    for (const sample of [small, `nope=${small}`]) {
      const r = xpkg(['split', model, '--at', AT, '--sample', sample, ...out]);
      expect([r.json?.error?.code, (r.json?.error?.detail as { reason?: string })?.reason, r.status]).toEqual([
        'E_FABRIC_SPLIT',
        'sample',
        EXIT.fabric,
      ]);
    }
  });
});

describe('files a command reads are never its output', () => {
  it('sign -o <the key file> is E_PACK_OUTPUT_SOURCE, --force or not; the key is untouched', () => {
    const dir = tempDir();
    const key = join(dir, 'k.key');
    copyFileSync('fixtures/keys/test.key', key);
    const before = readFileSync(key);
    for (const force of [[], ['--force']]) {
      const r = xpkg(['sign', DETECTOR, '--key', key, '-o', key, ...force, '--json']);
      expect([r.json?.error?.code, r.status]).toEqual(['E_PACK_OUTPUT_SOURCE', EXIT.pack]);
      expect(readFileSync(key).equals(before)).toBe(true);
    }
  });
  it('run --annotate <the package> or <a trust key> is E_USAGE; both untouched', async () => {
    const dir = tempDir();
    const pkg = join(dir, 'd.xpkg');
    const pub = join(dir, 'k.pub');
    copyFileSync(DETECTOR, pkg);
    copyFileSync('fixtures/keys/test.pub', pub);
    const size = statSync(pkg).size;
    for (const target of [pkg, pub]) {
      const r = await xpkgAsync([
        'run',
        pkg,
        '--trust',
        pub,
        '--state-dir',
        dir,
        '-i',
        'fixtures/images/example.png',
        '--annotate',
        target,
        '--json',
      ]);
      expect([r.json?.error?.code, r.status]).toEqual(['E_USAGE', EXIT.usage]);
    }
    expect(statSync(pkg).size).toBe(size);
    expect(readFileSync(pub, 'utf8')).toBe(readFileSync('fixtures/keys/test.pub', 'utf8'));
  });
  it('an output in a missing folder is E_NOT_FOUND naming that output, not the temp file beside it', () => {
    const out = join(tempDir(), 'missing', 'x.xpkg');
    const r = xpkg(['pack', writeSource(), '-o', out, '--json']);
    expect([r.json?.error?.code, r.status]).toEqual(['E_NOT_FOUND', EXIT.io]);
    expect((r.json?.error?.detail as { path?: string } | undefined)?.path).toBe(out);
  });
});

describe('a folder of inputs holding a file whose name is not UTF-8', () => {
  it('that file fails as its own input (E_NOT_FOUND), the others still run: never skipped silently', async () => {
    const dir = tempDir();
    const image = readFileSync('fixtures/images/example.png');
    writeFileSync(Buffer.concat([Buffer.from(`${dir}/a`), Buffer.from([0xfe]), Buffer.from('.png')]), image);
    writeFileSync(join(dir, 'b.png'), image);
    const r = await xpkgAsync(['run', DETECTOR, '--allow-unsigned', '--state-dir', tempDir(), '-i', dir, '--json']);
    expect(r.lines.map((l) => l.error?.code ?? 'ok')).toEqual(['E_NOT_FOUND', 'ok']);
    expect(r.status).toBe(EXIT.io);
  });
});

describe('help, version and no command', () => {
  it('--version and --help with --json print one {"result"} document; no command at all is E_USAGE', () => {
    const v = xpkg(['--version', '--json']);
    expect([v.status, typeof v.json?.result.version]).toEqual([0, 'string']);
    for (const args of [
      ['run', '--help', '--json'],
      ['help', 'run', '--json'],
    ]) {
      const h = xpkg(args);
      expect([h.status, typeof h.json?.result.help]).toEqual([0, 'string']);
    }
    expect(xpkg(['help', 'run']).status).toBe(0);
    for (const args of [[], ['gpu']]) {
      const r = xpkg(args);
      expect([r.status, r.stdout]).toEqual([EXIT.usage, '']);
    }
    expect(xpkg(['gpu', '--json']).json?.error?.code).toBe('E_USAGE');
  });
});

describe('import -o', () => {
  it('never replaces the layout it reads, an existing file only with --force; --variant and --host exclude each other', () => {
    const dir = tempDir();
    const env = { XPKG_CACHE: join(dir, 'cache') };
    const tar = join(dir, 'l.tar');
    expect(xpkg(['export', DETECTOR, '--oci-layout', tar], env).status).toBe(0);
    const size = statSync(tar).size;
    const out = join(dir, 'p.xpkg');
    writeFileSync(out, 'mine');
    for (const args of [
      ['-o', tar],
      ['-o', tar, '--force'],
      ['-o', out],
      ['--variant', 'cpu-fp32', '--host', 'auto'],
    ]) {
      const r = xpkg(['import', tar, ...args, '--json'], env);
      expect([r.json?.error?.code, r.status]).toEqual(['E_USAGE', EXIT.usage]);
    }
    expect(statSync(tar).size).toBe(size);
    expect(readFileSync(out, 'utf8')).toBe('mine');
    expect(xpkg(['import', tar, '-o', out, '--force'], env).status).toBe(0);
  });
});

describe('export --oci-layout', () => {
  it('replaces an existing .tar only with --force, and never the package it reads', () => {
    const dir = tempDir();
    const env = { XPKG_CACHE: join(dir, 'cache') };
    const tar = join(dir, 'l.tar');
    writeFileSync(tar, 'mine');
    const r = xpkg(['export', DETECTOR, '--oci-layout', tar, '--json'], env);
    expect([r.json?.error?.code, r.status]).toEqual(['E_USAGE', EXIT.usage]);
    expect(readFileSync(tar, 'utf8')).toBe('mine');
    expect(xpkg(['export', DETECTOR, '--oci-layout', tar, '--force'], env).status).toBe(0);
    expect(statSync(tar).size).toBeGreaterThan(1000);
    // a package named .tar, exported onto itself
    const pkg = join(dir, 'pkg.tar');
    copyFileSync(DETECTOR, pkg);
    const self = xpkg(['export', pkg, '--oci-layout', pkg, '--force', '--json'], env);
    expect([self.json?.error?.code, self.status]).toEqual(['E_USAGE', EXIT.usage]);
    expect(statSync(pkg).size).toBe(statSync(DETECTOR).size);
  });
});

describe('ports', () => {
  it('a port above 65535 is E_USAGE in web, serve and peers (web had E_INTERNAL from the socket)', () => {
    for (const args of [
      ['web', '--port', '99999'],
      ['serve', '--repo', tempDir(), '--allow-unsigned', '--port', '70000'],
      ['peers', '--discover', '--mdns-port', '70000'],
    ]) {
      const r = xpkg([...args, '--json'], { XPKG_RELAUNCH: '0' });
      expect([r.json?.error?.code, r.status]).toEqual(['E_USAGE', EXIT.usage]);
    }
  });
});

describe('web --trust', () => {
  it('a secret key file is E_KEY_FORMAT: the page would have served its seed to every visitor', () => {
    const r = xpkg(['web', '--port', '0', '--trust', 'fixtures/keys/test.key', '--json']);
    expect([r.json?.error?.code, r.status]).toEqual(['E_KEY_FORMAT', EXIT.key]);
  });
});

describe('keygen -o', () => {
  it('a folder as the prefix (`dir/`, `.`) is E_USAGE, not the hidden files dir/.key and dir/.pub', () => {
    const dir = tempDir();
    for (const o of [`${dir}/`, '.', `${dir}/..`]) {
      const r = xpkg(['keygen', '-o', o, '--no-passphrase', '--json'], {}, undefined, dir);
      expect([r.json?.error?.code, r.status]).toEqual(['E_USAGE', EXIT.usage]);
    }
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('an error no command caught', () => {
  it('ends in the one exit handler: one E_INTERNAL document with --json, status 1, not a bare stack', async () => {
    const dir = tempDir();
    // preloaded: throws from a timer (nobody's to catch) once the CLI is running
    const hook = join(dir, 'boom.mjs');
    writeFileSync(
      hook,
      "const t = setInterval(() => { if (process.listenerCount('uncaughtException')) { clearInterval(t); throw new Error('boom'); } }, 5); t.unref();\n",
    );
    const r = await xpkgAsync(
      [
        'run',
        'fixtures/dist/paddleocr-v4.xpkg',
        '--allow-unsigned',
        '--state-dir',
        dir,
        '-i',
        'fixtures/images/example.png',
        '--json',
      ],
      { NODE_OPTIONS: `--import ${pathToFileURL(hook).href}`, XPKG_RELAUNCH: '0' },
    );
    expect(r.lines.length).toBe(1);
    expect([r.json?.error?.code, r.status]).toEqual(['E_INTERNAL', EXIT.internal]);
  });
});

describe('integer options', () => {
  it('a value beyond a safe integer, or --threads beyond 4 per core, is E_USAGE before any work', () => {
    const run = ['run', DETECTOR, '--allow-unsigned', '-i', 'fixtures/images/example.png', '--state-dir', tempDir()];
    for (const args of [
      [...run, '--max-tensor-bytes', '99999999999999999999999'],
      [...run, '--max-pixels', '99999999999999999999999'],
      [...run, '--threads', '100000'],
    ]) {
      const r = xpkg([...args, '--json']);
      expect([r.json?.error?.code, r.status]).toEqual(['E_USAGE', EXIT.usage]);
    }
  });
});

describe('durations and process counts', () => {
  it('a duration a timer cannot hold (> 2^31-1 ms: Node waits 1 ms instead) or 100000 workers is E_USAGE', () => {
    const serve = ['serve', '--repo', tempDir(), '--allow-unsigned', '--port', '0'];
    for (const args of [
      ['peers', '--discover', '--wait', '9999999999'],
      [...serve, '--ref-poll', '9999999999'],
      [...serve, '--workers', '100000'],
    ]) {
      const r = xpkg([...args, '--json'], { XPKG_RELAUNCH: '0' });
      expect([r.json?.error?.code, r.status]).toEqual(['E_USAGE', EXIT.usage]);
    }
  });
});

describe('cache', () => {
  it('an unknown action, or --all without gc, is E_USAGE and creates no cache folder', () => {
    const dir = tempDir();
    for (const args of [['bogus'], ['ls', '--all']]) {
      const r = xpkg(['cache', ...args, '--json'], { XPKG_CACHE: join(dir, 'cache') });
      expect([r.json?.error?.code, r.status]).toEqual(['E_USAGE', EXIT.usage]);
    }
    expect(readdirSync(dir)).toEqual([]);
  });
});
