/**
 * Small files the CLI reads by path besides packages, keys and trust dirs (which have their own
 * tests): the fabric token (`--peer-token-file`, `--fabric-token-file`) and `xpkg web --trust`. A
 * device (/dev/zero never ends), a huge file or a named pipe nobody writes is refused with the
 * area's code at once, never read without bound or waited on; what is read is checked as before.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readToken, TOKEN_FILE_MAX } from '../fabric/auth.js';
import { codeOf } from './helpers/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'xpkg-files-malformed-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const file = (name: string, data: string | Uint8Array) => {
  const p = join(dir, name);
  writeFileSync(p, data);
  return p;
};
const fifo = (name: string): string | null => {
  const p = join(dir, name);
  return spawnSync('mkfifo', [p]).status === 0 ? p : null;
};

/** The built CLI, bounded in time: a hang is a failure (no code), not a stuck test. */
function cli(args: string[]): string | null {
  const r = spawnSync(process.execPath, [resolve('bin/xpkg.js'), ...args, '--json'], {
    encoding: 'utf8',
    timeout: 20_000,
    maxBuffer: 1 << 20,
  });
  try {
    return (JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as { error?: { code: string } }).error?.code ?? 'OK';
  } catch {
    return null;
  }
}

describe('the fabric token file', () => {
  const token = 'a'.repeat(64);

  it('a token file reads as before (its first line)', async () => {
    expect(await readToken(file('token', `${token}\nanything else\n`))).toBe(token);
  });

  it('a device, a folder, a pipe nobody writes, a missing file: E_FABRIC_CONFIG, at once', async () => {
    const t0 = performance.now();
    const paths = ['/dev/zero', dir, join(dir, 'missing'), fifo('token.fifo')].filter((p) => p !== null);
    for (const p of paths) expect(await codeOf(readToken(p))).toBe('E_FABRIC_CONFIG');
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('a file over TOKEN_FILE_MAX is E_FABRIC_CONFIG, unread; one at the limit is read', async () => {
    expect(await readToken(file('fits', token + ' '.repeat(TOKEN_FILE_MAX - token.length)))).toBe(token);
    expect(await codeOf(readToken(file('over', token + ' '.repeat(TOKEN_FILE_MAX + 1 - token.length))))).toBe(
      'E_FABRIC_CONFIG',
    );
  });

  it('bytes that are no token (binary, empty, spaces inside): E_FABRIC_CONFIG', async () => {
    for (const data of [new Uint8Array([0, 1, 2, 0xff]), '', `${token.slice(0, 20)} ${token}`])
      expect(await codeOf(readToken(file('odd', data)))).toBe('E_FABRIC_CONFIG');
  });

  it('xpkg run --peer-token-file /dev/zero: E_FABRIC_CONFIG (was a read without end)', () => {
    const run = ['run', 'fixtures/dist/detector.xpkg', '--peer', 'http://127.0.0.1:1'];
    expect(cli([...run, '--peer-token-file', '/dev/zero'])).toBe('E_FABRIC_CONFIG');
  });
});

describe('xpkg web --trust', () => {
  const web = (trust: string) => cli(['web', '--port', '0', '--trust', trust]);

  it('a device: E_TRUST_STORE (was a read without end)', () => {
    expect(web('/dev/zero')).toBe('E_TRUST_STORE');
  });

  it('a file larger than any public key, a folder, a missing file, a pipe nobody writes: E_TRUST_STORE', () => {
    const paths = [file('big.pub', Buffer.alloc(8 << 20, 0x41)), dir, join(dir, 'missing.pub'), fifo('k.fifo')];
    for (const p of paths.filter((p) => p !== null)) expect(web(p)).toBe('E_TRUST_STORE');
  });

  it('a secret key or other text: E_KEY_FORMAT, as before', () => {
    expect(web('fixtures/keys/test.key')).toBe('E_KEY_FORMAT');
    expect(web(file('junk.pub', 'not a key\n'))).toBe('E_KEY_FORMAT');
  });
});
