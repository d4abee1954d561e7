/** Key ids, the public key text format, encrypted key files and `keygen` on disk. */
import { createHash } from 'node:crypto';
import { lstat, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bigIntToLe, P } from '../signing/ed25519-math.js';
import { formatPublicKey, generateKeyPair, keyIdOf, PUBLIC_KEY_TAG, parsePublicKey } from '../signing/keys.js';
import { PASSPHRASE_ENV } from '../signing/passphrase.js';
import { DEFAULT_SCRYPT, decodeSecretKey, encodeSecretKey, inspectSecretKey } from '../signing/secret-key.js';
import { keygen, loadSigningKey } from '../signing/sign.js';
import { SigningError } from '../spec/errors.js';

const CHEAP = { N: 1 << 10, r: 8, p: 1 };
const SEED = new Uint8Array(32).fill(42);

async function codeOf(f: () => unknown): Promise<string | null> {
  try {
    await f();
    return null;
  } catch (e) {
    expect(e).toBeInstanceOf(SigningError);
    return (e as SigningError).code;
  }
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xpkg-keys-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
const savedEnv = process.env[PASSPHRASE_ENV];
afterEach(() => {
  if (savedEnv === undefined) delete process.env[PASSPHRASE_ENV];
  else process.env[PASSPHRASE_ENV] = savedEnv;
});

describe('key pairs and key ids', () => {
  it('derives deterministically from a seed; the key id is the SHA-256 of the raw key', () => {
    const a = generateKeyPair({ seed: SEED });
    const b = generateKeyPair({ seed: SEED });
    expect(a.keyid).toBe(b.keyid);
    expect(a.keyid).toBe(createHash('sha256').update(a.publicKey).digest('hex'));
    expect(keyIdOf(a.publicKey)).toBe(a.keyid);
    expect(generateKeyPair().keyid).not.toBe(generateKeyPair().keyid);
  });
});

describe('public key text', () => {
  const kp = generateKeyPair({ seed: SEED });
  const text = formatPublicKey(kp.publicKey);
  const line = text.split('\n').find((l) => l.startsWith(PUBLIC_KEY_TAG))!;

  it('round-trips, ignoring comments, blank lines, CRLF and surrounding space', () => {
    expect(parsePublicKey(text).keyid).toBe(kp.keyid);
    expect(parsePublicKey(`\r\n# pasted from chat\r\n  ${line}  \r\n\r\n`).keyid).toBe(kp.keyid);
    expect(Buffer.from(parsePublicKey(line).publicKey)).toEqual(Buffer.from(kp.publicKey));
  });

  const [, keyid, b64] = line.split(' ');
  const other = generateKeyPair({ seed: new Uint8Array(32).fill(1) });
  const identity = Buffer.from(bigIntToLe(1n));
  const nonCanonical = Buffer.from(bigIntToLe(P + 1n));
  const idOf = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
  const cases: [string, string, string][] = [
    ['empty', '', 'E_KEY_FORMAT'],
    ['only comments', '# nothing here\n', 'E_KEY_FORMAT'],
    ['two key lines', `${line}\n${line}\n`, 'E_KEY_FORMAT'],
    ['wrong tag', line.replace(PUBLIC_KEY_TAG, 'minisign'), 'E_KEY_FORMAT'],
    ['missing key', `${PUBLIC_KEY_TAG} ${keyid}`, 'E_KEY_FORMAT'],
    ['extra token', `${line} trailing`, 'E_KEY_FORMAT'],
    ['upper-case key id', `${PUBLIC_KEY_TAG} ${keyid.toUpperCase()} ${b64}`, 'E_KEY_FORMAT'],
    ['short key', `${PUBLIC_KEY_TAG} ${keyid} ${Buffer.alloc(31).toString('base64')}`, 'E_KEY_FORMAT'],
    ['unpadded key', `${PUBLIC_KEY_TAG} ${keyid} ${b64.replace('=', '')}`, 'E_KEY_FORMAT'],
    ['key id of another key', `${PUBLIC_KEY_TAG} ${other.keyid} ${b64}`, 'E_SIG_KEYID_MISMATCH'],
    [
      'identity (small-order) key',
      `${PUBLIC_KEY_TAG} ${idOf(identity)} ${identity.toString('base64')}`,
      'E_SIG_WEAK_KEY',
    ],
    [
      'non-canonical key',
      `${PUBLIC_KEY_TAG} ${idOf(nonCanonical)} ${nonCanonical.toString('base64')}`,
      'E_SIG_WEAK_KEY',
    ],
    ['a secret key file', '{"encryption":null,"format":"xpkg-secret-key/1"}', 'E_KEY_FORMAT'],
    ['huge', `# ${'x'.repeat(5000)}\n${line}`, 'E_KEY_FORMAT'],
  ];
  for (const [name, input, code] of cases) {
    it(`${name} → ${code}`, async () => expect(await codeOf(() => parsePublicKey(input))).toBe(code));
  }
});

describe('secret key files', () => {
  const kp = generateKeyPair({ seed: SEED });

  it('unencrypted: round-trips and says so', async () => {
    const text = await encodeSecretKey(kp, null);
    expect(inspectSecretKey(text)).toMatchObject({ keyid: kp.keyid, encrypted: false });
    expect((await decodeSecretKey(text)).keyid).toBe(kp.keyid);
  });
  it('encrypted: the seed is not in the file, the right passphrase opens it', async () => {
    const text = await encodeSecretKey(kp, 'correct horse', CHEAP);
    expect(text).not.toContain(Buffer.from(kp.seed).toString('base64'));
    expect(inspectSecretKey(text).encrypted).toBe(true);
    expect(Buffer.from((await decodeSecretKey(text, 'correct horse')).secretKey)).toEqual(Buffer.from(kp.secretKey));
  });
  it('the default scrypt cost (N = 2^17, r = 8) works end to end', async () => {
    const text = await encodeSecretKey(kp, 'pw', DEFAULT_SCRYPT);
    expect(JSON.parse(text).encryption).toMatchObject({ kdf: 'scrypt', N: 131072, r: 8, p: 1, cipher: 'aes-256-gcm' });
    expect((await decodeSecretKey(text, 'pw')).keyid).toBe(kp.keyid);
  });
  it('wrong, missing or empty passphrases fail with E_KEY_PASSPHRASE', async () => {
    const text = await encodeSecretKey(kp, 'right', CHEAP);
    expect(await codeOf(() => decodeSecretKey(text, 'wrong'))).toBe('E_KEY_PASSPHRASE');
    expect(await codeOf(() => decodeSecretKey(text))).toBe('E_KEY_PASSPHRASE');
    expect(await codeOf(() => encodeSecretKey(kp, '', CHEAP))).toBe('E_KEY_PASSPHRASE');
  });
  it('tampering with the authenticated header or the ciphertext is detected', async () => {
    const doc = JSON.parse(await encodeSecretKey(kp, 'pw', CHEAP));
    const other = generateKeyPair({ seed: new Uint8Array(32).fill(1) });
    const swapped = { ...doc, keyid: other.keyid, publicKey: Buffer.from(other.publicKey).toString('base64') };
    expect(await codeOf(() => decodeSecretKey(JSON.stringify(swapped), 'pw'))).toBe('E_KEY_PASSPHRASE');
    const ct = Buffer.from(doc.ciphertext, 'base64');
    ct[0] ^= 1;
    expect(
      await codeOf(() => decodeSecretKey(JSON.stringify({ ...doc, ciphertext: ct.toString('base64') }), 'pw')),
    ).toBe('E_KEY_PASSPHRASE');
    const cheaper = { ...doc, encryption: { ...doc.encryption, N: 512 } };
    expect(await codeOf(() => decodeSecretKey(JSON.stringify(cheaper), 'pw'))).toBe('E_KEY_PASSPHRASE');
  });
  it('an unencrypted file whose seed does not give its public key is refused', async () => {
    const doc = JSON.parse(await encodeSecretKey(kp, null));
    const other = generateKeyPair({ seed: new Uint8Array(32).fill(1) });
    expect(
      await codeOf(() => decodeSecretKey(JSON.stringify({ ...doc, seed: Buffer.from(other.seed).toString('base64') }))),
    ).toBe('E_KEY_FORMAT');
  });
  it('malformed key files fail with E_KEY_FORMAT', async () => {
    const doc = JSON.parse(await encodeSecretKey(kp, 'pw', CHEAP));
    const bad = [
      'not json',
      formatPublicKey(kp.publicKey),
      JSON.stringify({ ...doc, format: 'xpkg-secret-key/2' }),
      JSON.stringify({ ...doc, extra: 1 }),
      JSON.stringify({ ...doc, encryption: { ...doc.encryption, N: 1000 } }),
      JSON.stringify({ ...doc, encryption: { ...doc.encryption, N: 1 << 24, r: 64 } }),
      JSON.stringify({ ...doc, encryption: { ...doc.encryption, kdf: 'pbkdf2' } }),
      JSON.stringify({ ...doc, encryption: { ...doc.encryption, salt: 'AA==' } }),
      JSON.stringify({ ...doc, ciphertext: 'AA==' }),
      `{"format":"xpkg-secret-key/1","format":"xpkg-secret-key/1"}`,
    ];
    for (const text of bad)
      expect(await codeOf(() => decodeSecretKey(text, 'pw')), text.slice(0, 60)).toBe('E_KEY_FORMAT');
  });
});

describe('keygen on disk', () => {
  it('writes <prefix>.key with mode 0600 and a parseable <prefix>.pub, atomically', async () => {
    const prefix = join(dir, 'alice');
    const r = await keygen(prefix, { passphrase: null, seed: SEED });
    expect(r).toMatchObject({ secretKeyPath: `${prefix}.key`, publicKeyPath: `${prefix}.pub`, encrypted: false });
    expect((await stat(`${prefix}.key`)).mode & 0o777).toBe(0o600);
    expect(parsePublicKey(await readFile(`${prefix}.pub`, 'utf8')).keyid).toBe(r.keyid);
    expect((await loadSigningKey(`${prefix}.key`)).keyid).toBe(r.keyid);
    expect((await readdir(dir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });
  it('refuses to overwrite either file unless forced', async () => {
    const prefix = join(dir, 'bob');
    const first = await keygen(prefix, { passphrase: null });
    expect(await codeOf(() => keygen(prefix, { passphrase: null }))).toBe('E_KEY_EXISTS');
    await rm(`${prefix}.key`);
    expect(await codeOf(() => keygen(prefix, { passphrase: null }))).toBe('E_KEY_EXISTS');
    expect(parsePublicKey(await readFile(`${prefix}.pub`, 'utf8')).keyid).toBe(first.keyid);
    const second = await keygen(prefix, { passphrase: null, force: true });
    expect(second.keyid).not.toBe(first.keyid);
    expect((await loadSigningKey(`${prefix}.key`)).keyid).toBe(second.keyid);
  });
  it('a .pub that appears while writing (here a dangling link) fails E_KEY_EXISTS and leaves no lone .key', async () => {
    const prefix = join(dir, 'half');
    await symlink(join(dir, 'nowhere'), `${prefix}.pub`);
    expect(await codeOf(() => keygen(prefix, { passphrase: null }))).toBe('E_KEY_EXISTS');
    await expect(lstat(`${prefix}.key`)).rejects.toMatchObject({ code: 'ENOENT' });
  });
  it('takes the passphrase from XPKG_PASSPHRASE, for keygen and for loading', async () => {
    process.env[PASSPHRASE_ENV] = 's3cret';
    const prefix = join(dir, 'carol');
    const r = await keygen(prefix, { scrypt: CHEAP });
    expect(r.encrypted).toBe(true);
    expect((await loadSigningKey(`${prefix}.key`)).keyid).toBe(r.keyid);
    process.env[PASSPHRASE_ENV] = 'other';
    expect(await codeOf(() => loadSigningKey(`${prefix}.key`))).toBe('E_KEY_PASSPHRASE');
    process.env[PASSPHRASE_ENV] = '';
    expect(await codeOf(() => loadSigningKey(`${prefix}.key`))).toBe('E_KEY_PASSPHRASE');
  });
  it("XPKG_PASSPHRASE's one line ending (a secret mounted from a file) is not part of the passphrase", async () => {
    for (const [i, end] of ['\n', '\r\n'].entries()) {
      process.env[PASSPHRASE_ENV] = `s3cret${end}`;
      const prefix = join(dir, `line-end-${i}`);
      const r = await keygen(prefix, { scrypt: CHEAP });
      // what the terminal prompt gives (it ends at the line ending) opens it, and so does the variable
      expect((await loadSigningKey(`${prefix}.key`, { passphrase: 's3cret' })).keyid).toBe(r.keyid);
      expect((await loadSigningKey(`${prefix}.key`)).keyid).toBe(r.keyid);
    }
    // a key an earlier build encrypted with the line ending still opens from the same variable
    const old = join(dir, 'line-end-old.key');
    await writeFile(old, await encodeSecretKey(generateKeyPair({ seed: SEED }), 's3cret\n', CHEAP));
    process.env[PASSPHRASE_ENV] = 's3cret\n';
    expect((await loadSigningKey(old)).keyid).toBe(generateKeyPair({ seed: SEED }).keyid);
    process.env[PASSPHRASE_ENV] = 'other\n';
    expect(await codeOf(() => loadSigningKey(old))).toBe('E_KEY_PASSPHRASE');
    process.env[PASSPHRASE_ENV] = '\n';
    expect(await codeOf(() => keygen(join(dir, 'line-end-empty'), { scrypt: CHEAP }))).toBe('E_KEY_PASSPHRASE');
  });
  it('with neither a passphrase nor a terminal, keygen fails instead of writing a clear key', async () => {
    delete process.env[PASSPHRASE_ENV];
    const prefix = join(dir, 'dave');
    if (!process.stdin.isTTY) {
      expect(await codeOf(() => keygen(prefix))).toBe('E_KEY_PASSPHRASE');
      await expect(stat(`${prefix}.key`)).rejects.toMatchObject({ code: 'ENOENT' });
    }
  });
  it('loading a .pub as a signing key is a clear E_KEY_FORMAT', async () => {
    const prefix = join(dir, 'erin');
    await keygen(prefix, { passphrase: null });
    expect(await codeOf(() => loadSigningKey(`${prefix}.pub`))).toBe('E_KEY_FORMAT');
    await writeFile(join(dir, 'big.key'), Buffer.alloc(100_000));
    expect(await codeOf(() => loadSigningKey(join(dir, 'big.key')))).toBe('E_KEY_FORMAT');
  });
});
