/**
 * Keys and trust folders as users and other tools leave them: files saved by Windows editors
 * (BOM, CRLF), keys in encodings xpkg does not read, trust folders holding macOS AppleDouble files,
 * editor swap files, links, sub-folders and a revocation list under the wrong case. A trust
 * decision must never get laxer by accident, and junk that cannot widen trust must not break it.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatPublicKey, generateKeyPair, type KeyPair } from '../signing/keys.js';
import { encodeSecretKey } from '../signing/secret-key.js';
import { sign } from '../signing/sign.js';
import { MemoryRollbackStore } from '../signing/state.js';
import { loadTrustStore, REVOCATION_FILE } from '../signing/trust.js';
import { type VerifyPolicy, verify } from '../signing/verify.js';
import { type ErrorCode, EXIT, exitStatusOf } from '../spec/errors.js';
import { xpkg, xpkgAsync } from './helpers/cli.js';
import { codeOf } from './helpers/errors.js';
import { packSource } from './signing-helpers.js';

let dir: string;
let pkg: string;
let alice: KeyPair;
let bob: KeyPair;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xpkg-sign-hostile-'));
  alice = generateKeyPair({ seed: new Uint8Array(32).fill(1) });
  bob = generateKeyPair({ seed: new Uint8Array(32).fill(2) });
  pkg = await packSource(join(dir, 'src'), join(dir, 'tiny.xpkg'));
  await sign(pkg, { key: alice });
  await writeFile(join(dir, 'alice.pub'), formatPublicKey(alice.publicKey));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
async function folder(files: Record<string, string | Buffer> = {}): Promise<string> {
  const d = join(dir, `d${n++}`);
  await mkdir(d, { recursive: true });
  for (const [name, content] of Object.entries(files)) await writeFile(join(d, name), content);
  return d;
}
const policy = (p: VerifyPolicy): VerifyPolicy => ({ rollbackStore: new MemoryRollbackStore(), ...p });
const expectCode = (got: string, code: ErrorCode, status: number) => {
  expect(got).toBe(code);
  expect(exitStatusOf(code)).toBe(status);
};

describe('trust folders with junk in them', () => {
  it('hidden files (AppleDouble ._alice.pub, swap files, dot-keys) are ignored, the real key still trusted', async () => {
    const td = await folder({
      'alice.pub': formatPublicKey(alice.publicKey),
      '._alice.pub': Buffer.from('0005160700020000Mac OS X        ', 'hex'),
      '.alice.pub.swp': 'b0VIM 8.2',
      '.old.pub': 'not a key',
    });
    const r = await verify(pkg, policy({ trustDir: td }));
    expect(r.signatures.signers.map((s) => s.keyid)).toEqual([alice.keyid]);
  });

  it('a hidden key is not trusted (skipping only ever trusts less)', async () => {
    const td = await folder({ '.alice.pub': formatPublicKey(alice.publicKey) });
    expect(await codeOf(verify(pkg, policy({ trustDir: td })))).toBe('E_TRUST_UNTRUSTED');
  });

  it('a revocation list named REVOKED.txt or Revoked.TXT is E_TRUST_STORE, never silently ignored', async () => {
    for (const name of ['REVOKED.txt', 'Revoked.TXT', 'revoked.TXT']) {
      const td = await folder({ 'alice.pub': formatPublicKey(alice.publicKey), [name]: `${alice.keyid}\n` });
      expectCode(await codeOf(verify(pkg, policy({ trustDir: td }))), 'E_TRUST_STORE', EXIT.trust);
    }
    const td = await folder({ 'alice.pub': formatPublicKey(alice.publicKey), [REVOCATION_FILE]: `${alice.keyid}\r\n` });
    expectCode(await codeOf(verify(pkg, policy({ trustDir: td }))), 'E_TRUST_REVOKED', EXIT.trust);
  });

  it('a linked key file is read through the link; a dangling link or a folder named *.pub fails closed', async () => {
    const linked = await folder();
    await symlink(join(dir, 'alice.pub'), join(linked, 'alice.pub'));
    expect((await verify(pkg, policy({ trustDir: linked }))).signatures.status).toBe('verified');
    const dangling = await folder();
    await symlink(join(dir, 'gone.pub'), join(dangling, 'gone.pub'));
    expectCode(await codeOf(verify(pkg, policy({ trustDir: dangling }))), 'E_TRUST_STORE', EXIT.trust);
    const sub = await folder();
    await mkdir(join(sub, 'team.pub'));
    expectCode(await codeOf(verify(pkg, policy({ trustDir: sub }))), 'E_TRUST_STORE', EXIT.trust);
  });

  it('keys in a sub-folder are not read (not recursive); a secret key named *.pub is E_KEY_FORMAT', async () => {
    const td = await folder();
    await mkdir(join(td, 'team'));
    await writeFile(join(td, 'team', 'alice.pub'), formatPublicKey(alice.publicKey));
    expect(await codeOf(verify(pkg, policy({ trustDir: td })))).toBe('E_TRUST_UNTRUSTED');
    const secret = await folder({ 'alice.pub': await encodeSecretKey(alice, null) });
    expectCode(await codeOf(verify(pkg, policy({ trustDir: secret }))), 'E_KEY_FORMAT', EXIT.key);
  });
});

describe('public key files in other spellings', () => {
  it('BOM, CRLF, trailing white space and blank lines are accepted', async () => {
    const text = `\ufeff${formatPublicKey(alice.publicKey).replace(/\n/g, '  \r\n')}\r\n\r\n`;
    const store = await loadTrustStore({ trust: [text] });
    expect([...store.keys.keys()]).toEqual([alice.keyid]);
    const td = await folder({ 'alice.pub': text });
    expect((await verify(pkg, policy({ trustDir: td }))).signatures.status).toBe('verified');
  });

  it('a key file whose name starts with the key tag is a path, not key text', async () => {
    const name = 'xpkg-ed25519-pub-alice.pub';
    await writeFile(join(dir, name), formatPublicKey(alice.publicKey));
    const cwd = process.cwd();
    process.chdir(dir); // named as a user in that folder names it
    try {
      expect((await verify(pkg, policy({ trust: [name] }))).signatures.status).toBe('verified');
    } finally {
      process.chdir(cwd);
    }
  });

  it('PEM, OpenSSH, raw, hex and wrong-length keys are E_KEY_FORMAT (exit 23), not a crash', async () => {
    const { publicKey } = generateKeyPairSync('ed25519');
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const raw = Buffer.from(alice.publicKey);
    const b64 = raw.toString('base64');
    const cases = [
      pem,
      `ssh-ed25519 ${Buffer.concat([Buffer.from('\0\0\0\x0bssh-ed25519\0\0\0\x20'), raw]).toString('base64')} me@host\n`,
      raw,
      `${raw.toString('hex')}\n`,
      `xpkg-ed25519-pub ${alice.keyid} ${raw.subarray(0, 31).toString('base64')}\n`,
      `xpkg-ed25519-pub ${alice.keyid} ${b64}${b64}\n`,
      `xpkg-ed25519-pub ${alice.keyid.toUpperCase()} ${b64}\n`,
    ];
    for (const c of cases) {
      const td = await folder({ 'k.pub': c });
      expectCode(await codeOf(verify(pkg, policy({ trustDir: td }))), 'E_KEY_FORMAT', EXIT.key);
    }
  });
});

describe('secret key files in other spellings', () => {
  it('a key file saved with a BOM and CRLF (PowerShell, Notepad) signs', async () => {
    const path = join(dir, 'bom.key');
    await writeFile(path, `\ufeff${(await encodeSecretKey(bob, null)).replace(/\n/g, '\r\n')}`);
    const out = join(dir, 'bom-signed.xpkg');
    const r = await sign(pkg, { key: path, out });
    expect(r.signatures).toEqual([alice.keyid, bob.keyid].sort());
  });
});

describe('several signers of one package at once', () => {
  const keys = [3, 4, 5, 6].map((b) => generateKeyPair({ seed: new Uint8Array(32).fill(b) }));

  it('in place, every signature is kept (each signer re-reads the envelope under a lock)', async () => {
    const p = await packSource(join(dir, 'many-src'), join(dir, 'many.xpkg'), { model: Buffer.alloc(3 << 20, 9) });
    await Promise.all(keys.map((key) => sign(p, { key })));
    const td = await folder();
    for (const k of keys) await writeFile(join(td, `${k.keyid}.pub`), formatPublicKey(k.publicKey));
    const r = await verify(p, policy({ trustDir: td, threshold: keys.length }));
    expect(r.signatures.signers.map((s) => s.keyid).sort()).toEqual(keys.map((k) => k.keyid).sort());
    expect((await readdir(dir)).filter((f) => f.includes('.lock'))).toEqual([]);
  });

  it('through the CLI, by separate processes', async () => {
    const p = await packSource(join(dir, 'cli-src'), join(dir, 'cli.xpkg'), { model: Buffer.alloc(3 << 20, 9) });
    const files = await Promise.all(
      keys.map(async (k, i) => {
        const path = join(dir, `cli${i}.key`);
        await writeFile(path, await encodeSecretKey(k, null));
        return path;
      }),
    );
    const runs = await Promise.all(files.map((f) => xpkgAsync(['sign', p, '--key', f, '--json'])));
    expect(runs.map((r) => r.status)).toEqual([0, 0, 0, 0]);
    const td = await folder();
    for (const k of keys) await writeFile(join(td, `${k.keyid}.pub`), formatPublicKey(k.publicKey));
    const r = await verify(p, policy({ trustDir: td, threshold: keys.length }));
    expect(r.signatures.signers).toHaveLength(keys.length);
  });
});

describe('the CLI', () => {
  it('REVOKED.txt: exit 21 with E_TRUST_STORE; a junk AppleDouble file: verified', async () => {
    const bad = await folder({ 'alice.pub': formatPublicKey(alice.publicKey), 'REVOKED.txt': `${alice.keyid}\n` });
    const state = await folder();
    const r = xpkg(['verify', pkg, '--trust-dir', bad, '--state-dir', state, '--json']);
    expect(r.json?.error?.code).toBe('E_TRUST_STORE');
    expect(r.status).toBe(EXIT.trust);
    const junk = await folder({
      'alice.pub': await readFile(join(dir, 'alice.pub')),
      '._alice.pub': Buffer.from('0005160700020000', 'hex'),
    });
    const s = xpkg(['verify', pkg, '--trust-dir', junk, '--state-dir', state, '--json']);
    expect(s.status).toBe(0);
    expect(s.json?.result?.signatures.status).toBe('verified');
  });
});
