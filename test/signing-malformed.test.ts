/**
 * Malformed inputs to the signing parsers that earlier versions accepted, crashed on or hung on:
 * signatures and partial records in a compressed entry, key files with parameters OpenSSL refuses
 * or unknown encryption fields, and state or trust files that are not regular files. Each case
 * asserts the code.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signDetached } from '../signing/ed25519.js';
import { encodeEnvelope, PAYLOAD_TYPE, signedBytes } from '../signing/envelope.js';
import { generateKeyPair } from '../signing/keys.js';
import { verifySignatures } from '../signing/policy.js';
import { decodeSecretKey, encodeSecretKey } from '../signing/secret-key.js';
import { keygen, loadSigningKey, sign } from '../signing/sign.js';
import { FileRollbackStore, MemoryRollbackStore, ROLLBACK_FILE } from '../signing/state.js';
import { buildTrustStore, loadTrustStore, REVOCATION_FILE } from '../signing/trust.js';
import { type VerifyPolicy, verify } from '../signing/verify.js';
import { canonicalBytes } from '../spec/canonical.js';
import { SigningError } from '../spec/errors.js';
import { PARTIAL_PATH } from '../spec/partial.js';
import { codeOf, syncCodeOf } from './helpers/errors.js';
import { assemble, packSource, type RawEntry, rawEntries, storedEntry } from './signing-helpers.js';

let dir: string;
let n = 0;
const tmp = (name: string) => join(dir, `${n++}-${name}`);
let pub: string;
let signed: string;
const policy = (): VerifyPolicy => ({ trust: [pub], rollbackStore: new MemoryRollbackStore() });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xpkg-sign-malformed-'));
  const k = await keygen(join(dir, 'alice'), { passphrase: null });
  pub = k.publicKeyPath;
  signed = tmp('signed.xpkg');
  await sign(await packSource(tmp('src'), tmp('tiny.xpkg')), { key: k.secretKeyPath, out: signed });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const deflated = (e: RawEntry): RawEntry => ({ ...e, method: 8, data: deflateRawSync(e.data) });

describe('metadata entries outside the manifest are stored', () => {
  async function variant(edit: (entries: RawEntry[]) => RawEntry[]): Promise<string> {
    const { entries, dosTime } = await rawEntries(signed);
    const out = tmp('variant.xpkg');
    await writeFile(out, assemble(edit(entries), dosTime));
    return out;
  }
  /** model.onnx (empty, a model file only) left out and recorded in xpkg/partial.json. */
  const partial = (es: RawEntry[], method: 0 | 8) => {
    const record = storedEntry(PARTIAL_PATH, canonicalBytes({ absent: ['model.onnx'] }));
    const kept = es.filter((e) => e.name !== 'model.onnx');
    return [...kept.slice(0, -1), method === 8 ? deflated(record) : record, kept[kept.length - 1]];
  };

  it('the stored forms verify', async () => {
    expect(await codeOf(verify(await variant((es) => es), policy()))).toBe('OK');
    expect(await codeOf(verify(await variant((es) => partial(es, 0)), policy()))).toBe('OK');
  });
  it('a deflated xpkg/signatures.json is E_ARCHIVE_METHOD', async () => {
    const out = await variant((es) => [...es.slice(0, -1), deflated(es[es.length - 1])]);
    expect(await codeOf(verify(out, policy()))).toBe('E_ARCHIVE_METHOD');
  });
  it('a deflated xpkg/partial.json is E_ARCHIVE_METHOD', async () => {
    expect(await codeOf(verify(await variant((es) => partial(es, 8)), policy()))).toBe('E_ARCHIVE_METHOD');
  });
});

describe('secret key files', () => {
  async function keyFile(edit: (enc: Record<string, unknown>) => void): Promise<string> {
    const doc = JSON.parse(await encodeSecretKey(generateKeyPair(), 'pw', { N: 2, r: 1, p: 1 }));
    edit(doc.encryption);
    return JSON.stringify(doc);
  }
  it('scrypt parameters OpenSSL refuses (N ≥ 2^(16·r)) are E_KEY_FORMAT, not an internal error', async () => {
    for (const N of [1 << 16, 1 << 17, 1 << 20]) {
      const text = await keyFile((enc) => {
        enc.N = N;
      });
      expect(await codeOf(decodeSecretKey(text, 'pw'))).toBe('E_KEY_FORMAT');
    }
  });
  it('unknown fields in "encryption" are E_KEY_FORMAT', async () => {
    const text = await keyFile((enc) => {
      enc.iterations = 1;
    });
    expect(await codeOf(decodeSecretKey(text, 'pw'))).toBe('E_KEY_FORMAT');
  });
});

describe('trust stores built by hand (library callers)', () => {
  const kp = generateKeyPair({ seed: new Uint8Array(32).fill(7) });
  const key = (keyid: string, publicKey: Uint8Array = kp.publicKey) => ({ keyid, publicKey, source: 'config' });
  it('one key under a second, made-up id is E_SIG_KEYID_MISMATCH (it counted twice toward a threshold)', () => {
    const fake = 'f'.repeat(64);
    expect(syncCodeOf(() => buildTrustStore([key(kp.keyid), key(fake)]), SigningError)).toBe('E_SIG_KEYID_MISMATCH');
    // Two envelope entries by the one key, threshold 2: earlier this verified with two signers.
    const manifestBytes = canonicalBytes({ format: 'xpkg/1', name: 'demo', sequence: 1, version: '1.0.0' });
    const id = createHash('sha256').update(manifestBytes).digest('hex');
    const sig = signDetached(signedBytes(manifestBytes), kp.secretKey);
    const signaturesBytes = encodeEnvelope({
      payloadType: PAYLOAD_TYPE,
      packageId: id,
      signatures: [
        { keyid: kp.keyid, sig },
        { keyid: fake, sig },
      ],
    });
    const store = { keys: new Map([kp.keyid, fake].map((k) => [k, key(k)])), revoked: new Set<string>() };
    const input = { manifestBytes, id, signaturesBytes, manifest: { name: 'demo', version: '1.0.0', sequence: 1 } };
    const policy = {
      store,
      threshold: 2,
      allowUnsigned: false,
      allowDowngrade: false,
      now: new Date(),
      rollback: null,
    };
    // verifySignatures checks it too, for stores that never went through buildTrustStore.
    expect(syncCodeOf(() => verifySignatures(input, policy), SigningError)).toBe('E_SIG_KEYID_MISMATCH');
    const short = {
      keys: new Map([[kp.keyid, key(kp.keyid, kp.publicKey.subarray(0, 31))]]),
      revoked: new Set<string>(),
    };
    expect(syncCodeOf(() => verifySignatures(input, { ...policy, store: short }), SigningError)).toBe('E_SIG_WEAK_KEY');
  });
  it('weak or wrong-length keys are E_SIG_WEAK_KEY', () => {
    const identity = new Uint8Array(32);
    identity[0] = 1;
    for (const publicKey of [identity, kp.publicKey.subarray(0, 31)])
      expect(syncCodeOf(() => buildTrustStore([key(kp.keyid, publicKey)]), SigningError)).toBe('E_SIG_WEAK_KEY');
  });
});

describe('state and trust files that are not regular files', () => {
  const fifo = async (path: string) => {
    await mkdir(join(path, '..'), { recursive: true });
    execFileSync('mkfifo', [path]);
  };
  it('a FIFO as the rollback state is E_POLICY_STATE at once (it used to block forever)', async () => {
    const stateDir = tmp('state');
    await fifo(join(stateDir, ROLLBACK_FILE));
    expect(await codeOf(FileRollbackStore.open(stateDir))).toBe('E_POLICY_STATE');
    expect(await codeOf(verify(signed, { trust: [pub], stateDir }))).toBe('E_POLICY_STATE');
  });
  it('a folder as the rollback state is E_POLICY_STATE', async () => {
    const stateDir = tmp('state');
    await mkdir(join(stateDir, ROLLBACK_FILE), { recursive: true });
    expect(await codeOf(FileRollbackStore.open(stateDir))).toBe('E_POLICY_STATE');
  });
  it('a FIFO as a key file or revocation list is E_TRUST_STORE', async () => {
    const trustDir = tmp('trust');
    await fifo(join(trustDir, REVOCATION_FILE));
    expect(await codeOf(loadTrustStore({ trustDir }))).toBe('E_TRUST_STORE');
    const keyDir = tmp('trust');
    await fifo(join(keyDir, 'k.pub'));
    expect(await codeOf(loadTrustStore({ trustDir: keyDir }))).toBe('E_TRUST_STORE');
    expect(await codeOf(loadTrustStore({ trust: [join(keyDir, 'k.pub')] }))).toBe('E_TRUST_STORE');
  });
  it('a FIFO given as the signing key is E_KEY_FORMAT', async () => {
    const path = tmp('key.key');
    await fifo(path);
    expect(await codeOf(loadSigningKey(path, { passphrase: null }))).toBe('E_KEY_FORMAT');
  });
  it('an oversized key file is E_TRUST_STORE', async () => {
    const big = tmp('big.pub');
    await writeFile(big, `# ${'x'.repeat(8192)}\n`);
    expect(await codeOf(loadTrustStore({ trust: [big] }))).toBe('E_TRUST_STORE');
  });
});
