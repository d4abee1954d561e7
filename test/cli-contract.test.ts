/**
 * The CLI's contract (README, CLI): with `--json` exactly one document on stdout, logs on stderr,
 * a stable code and exit status per area, no partial output after a failure or an interrupt — each
 * through the built CLI, where a sweep of every command found it broken.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { packFolder } from '../pack/pack.js';
import { EXIT } from '../spec/errors.js';
import { BIN, oneDocument, STACK, xpkgRaw, xpkgRawAsync } from './helpers/cli-raw.js';
import { oneModelManifest, tempDir, writeSource } from './helpers/source.js';

vi.setConfig({ testTimeout: 120_000 });

const DETECTOR = 'fixtures/dist/detector.xpkg';
const PUB = 'fixtures/keys/test.pub';
const KEY = 'fixtures/keys/test.key';

/** One `{"error"}` document with this code and status, and no stack trace on stderr. */
function expectError(r: ReturnType<typeof xpkgRaw>, code: string, status: number): any {
  const doc = oneDocument(r.stdout);
  expect([doc.error?.code, r.status], r.stderr).toEqual([code, status]);
  expect(r.stderr).not.toMatch(STACK);
  return doc.error;
}

describe('every command: an unknown flag and a missing argument are one E_USAGE document, status 2', () => {
  const commands = [
    ['run'],
    ['bench'],
    ['pack'],
    ['inspect'],
    ['keygen'],
    ['sign', DETECTOR],
    ['verify'],
    ['unpack', DETECTOR],
    ['explain'],
    ['serve'],
    ['push', DETECTOR],
    ['pull'],
    ['export', DETECTOR],
    ['import'],
    ['cache'],
    ['split', 'm.onnx'],
  ];
  it('unknown flag', () => {
    for (const c of [...commands, ['host'], ['peers'], ['web'], ['gpu', 'install']])
      expectError(xpkgRaw([...c, '--no-such-flag', '--json']), 'E_USAGE', EXIT.usage);
  });
  it('missing argument or required option', () => {
    for (const c of commands) expectError(xpkgRaw([...c, '--json']), 'E_USAGE', EXIT.usage);
  });
});

describe('bad option values', () => {
  it('explain --precision that is no precision is E_USAGE, as in run (it was accepted and matched nothing)', () => {
    expectError(xpkgRaw(['explain', DETECTOR, '--precision', 'fp33', '--json']), 'E_USAGE', EXIT.usage);
    expect(oneDocument(xpkgRaw(['explain', DETECTOR, '--precision', 'fp32', '--json']).stdout).result).toBeTruthy();
  });

  it('serve --log-level that pino does not know is E_USAGE (was E_INTERNAL from inside the logger)', () => {
    const repo = tempDir('xpkg-contract-repo-');
    const r = xpkgRaw(['serve', '--repo', repo, '--port', '0', '--log-level', 'loud', '--json'], {}, 60_000);
    expectError(r, 'E_USAGE', EXIT.usage);
  });

  it('serve with a missing --trust, --trust-dir or host profile fails at start with its code (it started serving)', () => {
    const repo = tempDir('xpkg-contract-repo-');
    const serve = (args: string[], env: Record<string, string> = {}) =>
      xpkgRaw(['serve', '--repo', repo, '--port', '0', ...args, '--json'], env, 60_000);
    expectError(serve(['--trust', join(repo, 'none.pub')]), 'E_TRUST_STORE', EXIT.trust);
    expectError(serve(['--trust-dir', join(repo, 'none')]), 'E_TRUST_STORE', EXIT.trust);
    expectError(serve(['--allow-unsigned', '--host-profile', join(repo, 'none.json')]), 'E_HOST_PROFILE', EXIT.host);
    expectError(serve(['--allow-unsigned'], { XPKG_HOST: join(repo, 'none.json') }), 'E_HOST_PROFILE', EXIT.host);
  });

  it('a trust policy option given twice with different values is E_USAGE; the same value, a repeatable one, or another option (the last wins) is not', () => {
    const e = expectError(
      xpkgRaw(['verify', DETECTOR, '--trust-dir', 'a', '--trust-dir', 'b', '--json']),
      'E_USAGE',
      EXIT.usage,
    );
    expect(e.detail).toEqual({ option: '--trust-dir' });
    expectError(
      xpkgRaw(['verify', DETECTOR, '--trust', PUB, '--threshold', '2', '--threshold=1', '--json']),
      'E_USAGE',
      EXIT.usage,
    );
    // other options keep the last value, as wrapper scripts that append "$@" expect
    const out = tempDir('xpkg-contract-last-');
    const last = xpkgRaw(['unpack', DETECTOR, '-o', join(out, 'x'), '--output', join(out, 'y'), '--json']);
    expect(last.status).toBe(0);
    expect(readdirSync(out)).toEqual(['y']);
    const same = xpkgRaw([
      'verify',
      DETECTOR,
      '--trust',
      PUB,
      '--trust',
      PUB,
      '--threshold',
      '1',
      '--threshold',
      '1',
      '--json',
    ]);
    expect([oneDocument(same.stdout).result, same.status]).toEqual([expect.anything(), 0]);
  });
});

describe('XPKG_* settings the README documents', () => {
  it('a value the libraries would ignore is E_USAGE naming the variable; empty is unset; valid values run', () => {
    for (const [name, value] of [
      ['XPKG_OCI_RETRIES', 'three'],
      ['XPKG_ORT_CUDA_GRAPH', 'off'],
      ['XPKG_ORT_CUDA_SYNC', 'sleepy'],
      ['XPKG_NATIVE_THREADS', '0'],
      ['XPKG_ORT_SESSION_CONFIG', 'no-equals-sign'],
    ]) {
      const e = expectError(xpkgRaw(['inspect', DETECTOR, '--json'], { [name]: value }), 'E_USAGE', EXIT.usage);
      expect(e.detail.variable).toBe(name);
    }
    const ok = xpkgRaw(['inspect', DETECTOR, '--json'], {
      XPKG_OCI_RETRIES: '',
      XPKG_ORT_CUDA_GRAPH: '0',
      XPKG_ORT_LOG_LEVEL: ' Verbose ',
      XPKG_ORT_CUDA_OPTIONS: 'a=1; b=2;',
    });
    expect([Boolean(oneDocument(ok.stdout).result), ok.status]).toEqual([true, 0]);
  });
});

describe('--json and `--`', () => {
  it('after `--`, --json is an operand: no JSON document; the error is a line on stderr', () => {
    const r = xpkgRaw(['inspect', '--', '--json']);
    expect([r.stdout, r.status]).toEqual(['', EXIT.io]);
    expect(r.stderr).toMatch(/^xpkg: error E_NOT_FOUND: /m);
    const h = xpkgRaw(['host', '--', '--json']);
    expect([h.stdout, h.status]).toEqual(['', EXIT.usage]);
  });

  it('--json=… is refused by commander, still as one JSON document', () => {
    expectError(xpkgRaw(['inspect', DETECTOR, '--json=1']), 'E_USAGE', EXIT.usage);
  });
});

describe('no partial output', () => {
  it('split: a tail that cannot be written leaves no head either', () => {
    const dir = tempDir('xpkg-contract-split-');
    const head = join(dir, 'head.onnx');
    const r = xpkgRaw([
      'split',
      'fixtures/detector/model.onnx',
      '--at',
      '/s3/s3.2/Add_output_0',
      '--head',
      head,
      '--tail',
      join(dir, 'missing', 'tail.onnx'),
      '--check',
      '0',
      '--json',
    ]);
    expectError(r, 'E_NOT_FOUND', EXIT.io);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('unpack interrupted (SIGINT, SIGTERM) after its first file removes what it wrote, and ends by the signal', async () => {
    const src = writeSource(
      { 'models/a.onnx': Buffer.alloc(1 << 20, 1), 'models/b.onnx': Buffer.alloc(192 << 20, 2) },
      {
        ...oneModelManifest({ file: 'a.onnx' }),
        models: [
          { id: 'net', variants: [{ id: 'a', runtime: 'onnxruntime', precision: 'fp32', files: ['models/a.onnx'] }] },
          { id: 'net2', variants: [{ id: 'b', runtime: 'onnxruntime', precision: 'fp32', files: ['models/b.onnx'] }] },
        ],
      },
      tempDir('xpkg-contract-unpack-'),
      false,
    );
    const pkg = join(tempDir('xpkg-contract-unpack-'), 'two.xpkg');
    // ~390 MB of source, package and output: removed as soon as the test is done with them
    const big = [src, dirname(pkg)];
    onTestFinished(() => {
      for (const d of big) rmSync(d, { recursive: true, force: true });
    });
    await packFolder(src, pkg);
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const parent = tempDir('xpkg-contract-dest-');
      big.push(parent);
      mkdirSync(join(parent, 'out'));
      writeFileSync(join(parent, 'out', 'mine.txt'), 'kept');
      const dest = join(parent, 'out');
      const child = spawn(process.execPath, [BIN, 'unpack', pkg, '-o', dest], { stdio: 'ignore' });
      const exited = new Promise<[number | null, NodeJS.Signals | null]>((done) =>
        child.on('exit', (code, sig) => done([code, sig])),
      );
      // the first file is published: the second is being written
      const deadline = Date.now() + 60_000;
      while (!existsSync(join(dest, 'models', 'a.onnx'))) {
        if (Date.now() > deadline) throw new Error('unpack never published its first file');
        await new Promise((r) => setTimeout(r, 2));
      }
      child.kill(signal);
      const [code, sig] = await exited;
      expect(sig ?? code, 'the unpack finished before it could be interrupted').toBe(signal);
      expect(readdirSync(dest)).toEqual(['mine.txt']);
    }
  });
});

describe('paths in human output', () => {
  it('a newline or escape in a path is shown escaped on one line (sign, unpack, keygen, verify); --json has it as it is', async () => {
    const dir = join(tempDir('xpkg-contract-names-'), 'a\nforged \u001b[31mline');
    mkdirSync(dir);
    const signed = join(dir, 'p.xpkg');
    const sign = await xpkgRawAsync(['sign', DETECTOR, '--key', KEY, '-o', signed]);
    expect(sign.status).toBe(0);
    expect(sign.stdout.split('\n')[0]).toContain('a\\nforged \\u001b[31mline');
    const unpack = await xpkgRawAsync(['unpack', signed, '-o', join(dir, 'u'), '--json']);
    expect((oneDocument(unpack.stdout).result as { dir: string }).dir).toBe(join(dir, 'u'));
    const unpackHuman = await xpkgRawAsync(['unpack', signed, '-o', join(dir, 'u2')]);
    const keygen = await xpkgRawAsync(['keygen', '-o', join(dir, 'k'), '--no-passphrase']);
    const trustDir = join(dir, 'trust');
    mkdirSync(trustDir);
    writeFileSync(join(trustDir, 'x\nsigned by nobody.pub'), (await import('node:fs')).readFileSync(PUB));
    const verify = await xpkgRawAsync(['verify', signed, '--trust-dir', trustDir]);
    for (const [r, lines] of [
      [unpackHuman, 1],
      [keygen, 4],
      [verify, 4],
    ] as const) {
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout.trimEnd().split('\n')).toHaveLength(lines);
      expect(r.stdout).not.toContain('\u001b');
    }
  });
});
