/** `xpkg keygen` and `xpkg sign` as commands: JSON documents, exit statuses, passphrase handling. */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keygen } from '../signing/sign.js';
import { MemoryRollbackStore } from '../signing/state.js';
import { verify } from '../signing/verify.js';
import { EXIT } from '../spec/errors.js';
import { packSource } from './signing-helpers.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const entry = fileURLToPath(new URL('../bin/xpkg.js', import.meta.url));

interface Run {
  status: number;
  stdout: string;
  stderr: string;
  json: { result?: Record<string, unknown>; error?: { code: string; summary: string } } | null;
}
function xpkg(args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  const childEnv = { ...process.env, ...env };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete childEnv[k];
  return new Promise((resolve) => {
    execFile(process.execPath, [entry, ...args], { cwd: root, env: childEnv }, (err, stdout, stderr) => {
      const status = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      let json = null;
      try {
        json = JSON.parse(stdout);
      } catch {
        // human output
      }
      resolve({ status, stdout, stderr, json });
    });
  });
}

let dir: string;
let pkg: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xpkg-sign-cli-'));
  pkg = await packSource(join(dir, 'src'), join(dir, 'tiny.xpkg'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('xpkg keygen / sign', () => {
  it('keygen --no-passphrase --json, then sign --json, then the library verify accepts it', async () => {
    const k = await xpkg(['keygen', '-o', join(dir, 'ci'), '--no-passphrase', '--json'], {
      XPKG_PASSPHRASE: undefined,
    });
    expect(k.status).toBe(0);
    expect(k.json?.result).toMatchObject({
      encrypted: false,
      secretKeyPath: join(dir, 'ci.key'),
      publicKeyPath: join(dir, 'ci.pub'),
    });
    expect((await stat(join(dir, 'ci.key'))).mode & 0o777).toBe(0o600);

    const out = join(dir, 'signed.xpkg');
    const s = await xpkg(['sign', pkg, '--key', join(dir, 'ci.key'), '-o', out, '--json']);
    expect(s.status).toBe(0);
    expect(s.json?.result).toMatchObject({ path: out, keyid: k.json!.result!.keyid, replaced: false });
    const v = await verify(out, { trust: [join(dir, 'ci.pub')], rollbackStore: new MemoryRollbackStore() });
    expect(v.signatures.signers.map((x) => x.keyid)).toEqual([k.json!.result!.keyid]);
    expect(v.packageId).toBe(s.json!.result!.packageId);
  });
  it('an existing key is not overwritten (E_KEY_EXISTS, exit 23) unless --force', async () => {
    const prefix = join(dir, 'dup');
    expect((await xpkg(['keygen', '-o', prefix, '--no-passphrase'])).status).toBe(0);
    const again = await xpkg(['keygen', '-o', prefix, '--no-passphrase', '--json']);
    expect([again.status, again.json?.error?.code]).toEqual([EXIT.key, 'E_KEY_EXISTS']);
    expect((await xpkg(['keygen', '-o', prefix, '--no-passphrase', '--force'])).status).toBe(0);
  });
  it('encrypted keys take XPKG_PASSPHRASE; a wrong one is E_KEY_PASSPHRASE; none and no terminal is refused', async () => {
    const k = await xpkg(['keygen', '-o', join(dir, 'enc-default'), '--json'], { XPKG_PASSPHRASE: 'hunter2' });
    expect(k.json?.result).toMatchObject({ encrypted: true });
    // Signing below uses a key with a cheap scrypt cost (read from the file) to keep the test fast.
    const prefix = join(dir, 'enc');
    await keygen(prefix, { passphrase: 'hunter2', scrypt: { N: 1 << 10, r: 8, p: 1 } });
    const [wrong, none, right] = await Promise.all([
      xpkg(['sign', pkg, '--key', `${prefix}.key`, '-o', join(dir, 'w.xpkg'), '--json'], { XPKG_PASSPHRASE: 'nope' }),
      xpkg(['sign', pkg, '--key', `${prefix}.key`, '-o', join(dir, 'n.xpkg'), '--json'], {
        XPKG_PASSPHRASE: undefined,
      }),
      xpkg(['sign', pkg, '--key', `${prefix}.key`, '-o', join(dir, 'r.xpkg'), '--json'], {
        XPKG_PASSPHRASE: 'hunter2',
      }),
    ]);
    expect([wrong.status, wrong.json?.error?.code]).toEqual([EXIT.key, 'E_KEY_PASSPHRASE']);
    expect([none.status, none.json?.error?.code]).toEqual([EXIT.key, 'E_KEY_PASSPHRASE']);
    expect(right.status).toBe(0);
    await expect(stat(join(dir, 'w.xpkg'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
  it('usage and input errors: missing --key (exit 2), missing key file (exit 3), a .pub given as key (exit 23)', async () => {
    const [noKey, missing, pub] = await Promise.all([
      xpkg(['sign', pkg, '--json']),
      xpkg(['sign', pkg, '--key', join(dir, 'nope.key'), '--json']),
      xpkg(['sign', pkg, '--key', join(dir, 'ci.pub'), '--json']),
    ]);
    expect([noKey.status, noKey.json?.error?.code]).toEqual([EXIT.usage, 'E_USAGE']);
    expect([missing.status, missing.json?.error?.code]).toEqual([EXIT.io, 'E_NOT_FOUND']);
    expect([pub.status, pub.json?.error?.code]).toEqual([EXIT.key, 'E_KEY_FORMAT']);
  });
});

describe('xpkg verify wiring (flags → verify())', () => {
  it('--trust, --trust-dir, --threshold, --allow-unsigned, --allow-downgrade, --state-dir, --json, with their exit statuses', async () => {
    const keys = await Promise.all(['v1', 'v2'].map((n) => keygen(join(dir, n), { passphrase: null })));
    const [k1, k2] = keys;
    const older = join(dir, 'older.xpkg');
    const newer = await packSource(join(dir, 'newer-src'), join(dir, 'newer.xpkg'), { sequence: 9 });
    const sres = await Promise.all([
      xpkg(['sign', pkg, '--key', k1.secretKeyPath, '-o', older]),
      xpkg(['sign', newer, '--key', k1.secretKeyPath]),
    ]);
    expect(sres.map((r) => r.status)).toEqual([0, 0]);
    const state = join(dir, 'state');
    const revokedDir = join(dir, 'revoked.d');
    await mkdir(revokedDir);
    await copyFile(k1.publicKeyPath, join(revokedDir, 'v1.pub'));
    await writeFile(join(revokedDir, 'revoked.txt'), `${k1.keyid}\n`);

    const [ok, none, unsigned, allowUnsigned, threshold, badThreshold, revoked] = await Promise.all([
      xpkg(['verify', newer, '--trust', k1.publicKeyPath, '--state-dir', state, '--json']),
      xpkg(['verify', older, '--json']),
      xpkg(['verify', pkg, '--trust', k1.publicKeyPath, '--json']),
      xpkg(['verify', pkg, '--allow-unsigned']),
      xpkg([
        'verify',
        older,
        '--trust',
        k1.publicKeyPath,
        '--trust',
        k2.publicKeyPath,
        '--threshold',
        '2',
        '--state-dir',
        join(dir, 'state-c'),
        '--json',
      ]),
      xpkg(['verify', older, '--trust', k1.publicKeyPath, '--threshold', '0', '--json']),
      xpkg(['verify', older, '--trust-dir', revokedDir, '--json']),
    ]);
    expect(ok.status).toBe(0);
    expect(ok.json?.result).toMatchObject({ ok: true, sequence: 9, signatures: { status: 'verified', recorded: 1 } });
    expect([none.status, none.json?.error?.code]).toEqual([EXIT.trust, 'E_TRUST_UNTRUSTED']);
    expect([unsigned.status, unsigned.json?.error?.code]).toEqual([EXIT.signature, 'E_SIG_MISSING']);
    expect(allowUnsigned.status).toBe(0);
    expect(allowUnsigned.stdout).toContain('--allow-unsigned');
    expect([threshold.status, threshold.json?.error?.code]).toEqual([EXIT.trust, 'E_TRUST_THRESHOLD']);
    expect([badThreshold.status, badThreshold.json?.error?.code]).toEqual([EXIT.usage, 'E_USAGE']);
    expect([revoked.status, revoked.json?.error?.code]).toEqual([EXIT.trust, 'E_TRUST_REVOKED']);

    // The newer sequence was recorded in `state`: the older package is now a rollback.
    const rollback = await xpkg(['verify', older, '--trust', k1.publicKeyPath, '--state-dir', state, '--json']);
    expect([rollback.status, rollback.json?.error?.code]).toEqual([EXIT.policy, 'E_POLICY_ROLLBACK']);
    const allowed = await xpkg([
      'verify',
      older,
      '--trust',
      k1.publicKeyPath,
      '--state-dir',
      state,
      '--allow-downgrade',
    ]);
    expect(allowed.status).toBe(0);
    expect(allowed.stdout).toContain('DOWNGRADE accepted (--allow-downgrade): sequence 3 < 9');
  });
});
