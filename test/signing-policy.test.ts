/**
 * The pure signature/policy decision, trust stores on disk and the anti-rollback state file.
 * No archive involved: the envelope and manifest bytes are built directly.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signDetached } from '../signing/ed25519.js';
import { bigIntToLe, L, leToBigInt } from '../signing/ed25519-math.js';
import { decodeEnvelope, encodeEnvelope, PAYLOAD_TYPE, pae, signedBytes } from '../signing/envelope.js';
import { formatPublicKey, generateKeyPair, type KeyPair } from '../signing/keys.js';
import { type ResolvedPolicy, type SignatureInput, verifySignatures } from '../signing/policy.js';
import { addSignature } from '../signing/sign.js';
import { defaultStateDir, FileRollbackStore, MemoryRollbackStore, ROLLBACK_FILE } from '../signing/state.js';
import {
  buildTrustStore,
  EMPTY_TRUST_STORE,
  loadTrustStore,
  parseRevocationList,
  REVOCATION_FILE,
  type TrustedKey,
} from '../signing/trust.js';
import { resolvePolicy } from '../signing/verify.js';
import { canonicalBytes } from '../spec/canonical.js';
import { XpkgError } from '../spec/errors.js';

const alice = generateKeyPair({ seed: new Uint8Array(32).fill(1) });
const bob = generateKeyPair({ seed: new Uint8Array(32).fill(2) });
const mallory = generateKeyPair({ seed: new Uint8Array(32).fill(3) });
const trusted = (...kps: KeyPair[]): TrustedKey[] =>
  kps.map((k) => ({ keyid: k.keyid, publicKey: k.publicKey, source: `${k.keyid.slice(0, 4)}.pub` }));

interface Fields {
  name?: string;
  sequence?: number;
  expires?: string;
}
function input(fields: Fields, signers: KeyPair[]): SignatureInput {
  const manifest = {
    name: fields.name ?? 'demo',
    version: '1.0.0',
    sequence: fields.sequence ?? 5,
    ...(fields.expires ? { expires: fields.expires } : {}),
  };
  const manifestBytes = canonicalBytes({ ...manifest, format: 'xpkg/1' });
  const id = createHash('sha256').update(manifestBytes).digest('hex');
  let sigs: Buffer | null = null;
  for (const s of signers) sigs = addSignature(manifestBytes, id, sigs, s).envelope;
  return { manifestBytes, manifest, id, signaturesBytes: sigs };
}
function policy(p: Partial<ResolvedPolicy> = {}): ResolvedPolicy {
  return {
    store: buildTrustStore(trusted(alice, bob)),
    threshold: 1,
    allowUnsigned: false,
    allowDowngrade: false,
    now: new Date('2030-01-01T00:00:00Z'),
    rollback: null,
    ...p,
  };
}
async function codeOf(f: () => unknown): Promise<string | null> {
  try {
    await f();
    return null;
  } catch (e) {
    expect(e).toBeInstanceOf(XpkgError);
    return (e as XpkgError).code;
  }
}
const check = (i: SignatureInput, p: ResolvedPolicy) => codeOf(() => verifySignatures(i, p));
/** Replaces the envelope with one built from raw parts. */
function withEnvelope(
  i: SignatureInput,
  signatures: { keyid: string; sig: Uint8Array }[],
  packageId = i.id,
): SignatureInput {
  return { ...i, signaturesBytes: encodeEnvelope({ payloadType: PAYLOAD_TYPE, packageId, signatures }) };
}

describe('signatures and trust', () => {
  it('a package signed by a trusted key verifies and names its signer', () => {
    const r = verifySignatures(input({}, [alice]), policy());
    expect(r.status).toBe('verified');
    expect(r.signers.map((s) => s.keyid)).toEqual([alice.keyid]);
    expect(r.untrusted).toEqual([]);
  });
  it('unsigned: E_SIG_MISSING, or status "unsigned" with allowUnsigned', async () => {
    expect(await check(input({}, []), policy())).toBe('E_SIG_MISSING');
    expect(await check(input({}, []), policy({ store: EMPTY_TRUST_STORE }))).toBe('E_SIG_MISSING');
    expect(verifySignatures(input({}, []), policy({ allowUnsigned: true })).status).toBe('unsigned');
  });
  it('signed only by an untrusted key: E_TRUST_UNTRUSTED, or "untrusted" with allowUnsigned', async () => {
    expect(await check(input({}, [mallory]), policy())).toBe('E_TRUST_UNTRUSTED');
    expect(await check(input({}, [mallory]), policy({ store: EMPTY_TRUST_STORE }))).toBe('E_TRUST_UNTRUSTED');
    const r = verifySignatures(input({}, [mallory]), policy({ allowUnsigned: true }));
    expect(r).toMatchObject({ status: 'untrusted', untrusted: [mallory.keyid], signers: [] });
  });
  it('untrusted extra signatures are listed and ignored', () => {
    const r = verifySignatures(input({}, [alice, mallory]), policy());
    expect(r.status).toBe('verified');
    expect(r.untrusted).toEqual([mallory.keyid]);
  });
  it('threshold counts distinct trusted keys', async () => {
    expect(await check(input({}, [alice]), policy({ threshold: 2 }))).toBe('E_TRUST_THRESHOLD');
    expect(await check(input({}, [alice, mallory]), policy({ threshold: 2 }))).toBe('E_TRUST_THRESHOLD');
    expect(verifySignatures(input({}, [alice, bob]), policy({ threshold: 2 })).signers).toHaveLength(2);
    // The same key twice is not two signers: the envelope itself refuses it.
    const i = input({}, [alice]);
    const one = decodeEnvelope(i.signaturesBytes!).signatures[0];
    const twice = Buffer.from(i.signaturesBytes!.toString().replace(/\[(.*)\]/, '[$1,$1]'));
    expect(await check({ ...i, signaturesBytes: twice }, policy({ threshold: 2 }))).toBe('E_SIG_MALFORMED');
    expect(one.keyid).toBe(alice.keyid);
    expect(await check(input({}, [alice]), policy({ threshold: 0 }))).toBe('E_USAGE');
    expect(await check(input({}, [alice]), policy({ threshold: 1.5 }))).toBe('E_USAGE');
  });
  it('a revoked key never counts', async () => {
    const store = buildTrustStore(trusted(alice, bob), [alice.keyid]);
    expect(store.keys.has(alice.keyid)).toBe(false);
    expect(await check(input({}, [alice]), policy({ store }))).toBe('E_TRUST_REVOKED');
    const r = verifySignatures(input({}, [alice, bob]), policy({ store }));
    expect(r).toMatchObject({ status: 'verified', revoked: [alice.keyid] });
    expect(await check(input({}, [alice, bob]), policy({ store, threshold: 2 }))).toBe('E_TRUST_REVOKED');
  });
  it('a trusted key whose signature does not verify is tampering: E_SIG_INVALID', async () => {
    const i = input({}, [alice]);
    const changed = Buffer.from(i.manifestBytes);
    changed[changed.indexOf('demo')] = 'D'.charCodeAt(0);
    const id = createHash('sha256').update(changed).digest('hex');
    // The attacker also rewrites the envelope's (unsigned) package id to match.
    const env = decodeEnvelope(i.signaturesBytes!);
    const forged = { ...i, manifestBytes: changed, id, signaturesBytes: encodeEnvelope({ ...env, packageId: id }) };
    expect(await check(forged, policy())).toBe('E_SIG_INVALID');
    // allowUnsigned accepts a missing signature, never a bad one from a trusted key.
    expect(await check(forged, policy({ allowUnsigned: true }))).toBe('E_SIG_INVALID');
  });
  it('signatures made for another package id: E_SIG_WRONG_PACKAGE', async () => {
    const a = input({ sequence: 1 }, [alice]);
    const b = input({ sequence: 2 }, []);
    expect(await check({ ...b, signaturesBytes: a.signaturesBytes }, policy())).toBe('E_SIG_WRONG_PACKAGE');
    // Copying only the signature into a correctly addressed envelope: E_SIG_INVALID.
    expect(await check(withEnvelope(b, decodeEnvelope(a.signaturesBytes!).signatures), policy())).toBe('E_SIG_INVALID');
  });
  it('S + L malleated signature: E_SIG_MALLEABLE', async () => {
    const i = input({}, [alice]);
    const s = decodeEnvelope(i.signaturesBytes!).signatures[0];
    const sig = Uint8Array.from(s.sig);
    sig.set(bigIntToLe(leToBigInt(sig.subarray(32)) + L), 32);
    expect(await check(withEnvelope(i, [{ keyid: s.keyid, sig }]), policy())).toBe('E_SIG_MALLEABLE');
  });
  it('payload-type confusion: other envelope types, and signatures over other encodings', async () => {
    const i = input({}, [alice]);
    const other = JSON.parse(i.signaturesBytes!.toString());
    other.payloadType = 'application/vnd.in-toto+json';
    expect(await check({ ...i, signaturesBytes: canonicalBytes(other) }, policy())).toBe('E_SIG_PAYLOAD_TYPE');
    // Signed raw manifest bytes (no PAE) or a PAE with another type do not verify as xpkg signatures.
    for (const message of [
      i.manifestBytes,
      pae('application/vnd.in-toto+json', i.manifestBytes),
      pae(PAYLOAD_TYPE, Buffer.concat([i.manifestBytes, Buffer.from(' ')])),
    ]) {
      const sig = signDetached(message, alice.secretKey);
      expect(await check(withEnvelope(i, [{ keyid: alice.keyid, sig }]), policy())).toBe('E_SIG_INVALID');
    }
    expect(signedBytes(i.manifestBytes).subarray(0, 7).toString()).toBe('DSSEv1 ');
  });
  it('expiry: refused at and after the instant, accepted before, whatever the signature status', async () => {
    const now = new Date('2030-01-01T00:00:00Z');
    expect(await check(input({ expires: '2029-12-31T23:59:59Z' }, [alice]), policy({ now }))).toBe('E_POLICY_EXPIRED');
    expect(await check(input({ expires: '2030-01-01T00:00:00Z' }, [alice]), policy({ now }))).toBe('E_POLICY_EXPIRED');
    expect(await check(input({ expires: '2029-01-01T00:00:00Z' }, []), policy({ now, allowUnsigned: true }))).toBe(
      'E_POLICY_EXPIRED',
    );
    expect(verifySignatures(input({ expires: '2030-01-01T00:00:01Z' }, [alice]), policy({ now })).expires).toBe(
      '2030-01-01T00:00:01Z',
    );
  });
});

describe('anti-rollback decision', () => {
  it('refuses a lower sequence from the same signer and package name unless allowed', async () => {
    const rollback = new MemoryRollbackStore();
    await rollback.record([{ keyid: alice.keyid, name: 'demo', sequence: 5 }]);
    expect(await check(input({ sequence: 4 }, [alice]), policy({ rollback }))).toBe('E_POLICY_ROLLBACK');
    const allowed = verifySignatures(input({ sequence: 4 }, [alice]), policy({ rollback, allowDowngrade: true }));
    expect(allowed.downgrades).toEqual([{ keyid: alice.keyid, highest: 5, sequence: 4 }]);
    expect(allowed.rollbackUpdates).toEqual([]);
    expect(verifySignatures(input({ sequence: 5 }, [alice]), policy({ rollback })).rollbackUpdates).toEqual([]);
    expect(verifySignatures(input({ sequence: 6 }, [alice]), policy({ rollback })).rollbackUpdates).toEqual([
      { keyid: alice.keyid, name: 'demo', sequence: 6 },
    ]);
  });
  it('is keyed by name across every trusted key: an older release signed by another trusted key is a rollback', async () => {
    const rollback = new MemoryRollbackStore();
    await rollback.record([{ keyid: alice.keyid, name: 'demo', sequence: 9 }]);
    expect(verifySignatures(input({ sequence: 1, name: 'other' }, [alice]), policy({ rollback })).status).toBe(
      'verified',
    );
    // bob never signed "demo" before, but alice's 9 was accepted: bob's 1 is older.
    expect(await check(input({ sequence: 1 }, [bob]), policy({ rollback }))).toBe('E_POLICY_ROLLBACK');
    expect(await check(input({ sequence: 1 }, [alice, bob]), policy({ rollback }))).toBe('E_POLICY_ROLLBACK');
    const allowed = verifySignatures(input({ sequence: 1 }, [bob]), policy({ rollback, allowDowngrade: true }));
    expect(allowed.downgrades).toEqual([{ keyid: alice.keyid, highest: 9, sequence: 1 }]);
    expect(allowed.rollbackUpdates).toEqual([]);
    // Equal is fine (re-signed by another key), and raises bob's record.
    expect(verifySignatures(input({ sequence: 9 }, [bob]), policy({ rollback })).rollbackUpdates).toEqual([
      { keyid: bob.keyid, name: 'demo', sequence: 9 },
    ]);
  });
  it('records of keys no longer trusted (revoked or dropped) do not count', async () => {
    const rollback = new MemoryRollbackStore();
    await rollback.record([{ keyid: mallory.keyid, name: 'demo', sequence: Number.MAX_SAFE_INTEGER }]);
    expect(verifySignatures(input({ sequence: 1 }, [bob]), policy({ rollback })).status).toBe('verified');
    await rollback.record([{ keyid: alice.keyid, name: 'demo', sequence: 9 }]);
    const aliceRevoked = buildTrustStore(trusted(alice, bob), [alice.keyid]);
    expect(verifySignatures(input({ sequence: 1 }, [bob]), policy({ rollback, store: aliceRevoked })).status).toBe(
      'verified',
    );
  });
  it('unsigned packages under allowUnsigned are not tracked', () => {
    const rollback = new MemoryRollbackStore();
    expect(verifySignatures(input({}, []), policy({ rollback, allowUnsigned: true })).rollbackUpdates).toEqual([]);
  });
});

describe('trust stores on disk', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'xpkg-trust-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads --trust files and inline texts', async () => {
    const f = join(dir, 'alice.pub');
    await writeFile(f, formatPublicKey(alice.publicKey));
    const store = await loadTrustStore({ trust: [f, formatPublicKey(bob.publicKey)] });
    expect([...store.keys.keys()].sort()).toEqual([alice.keyid, bob.keyid].sort());
    expect(store.keys.get(alice.keyid)!.source).toBe(f);
    expect(store.keys.get(bob.keyid)!.source).toBe('<inline>');
  });
  it('a --trust path with a newline, or starting with #, is a path; key text with comment lines is text', async () => {
    const odd = [join(dir, 'a\nb.pub'), join(dir, '#team.pub'), `${join(dir, 'trailing.pub')}\n`];
    for (const f of odd) await writeFile(f, formatPublicKey(alice.publicKey));
    for (const f of odd) {
      const store = await loadTrustStore({ trust: [f] });
      expect([[...store.keys.keys()], store.keys.get(alice.keyid)!.source]).toEqual([[alice.keyid], f]);
    }
    // relative, from the working folder: `#team.pub` as the shell passes `'#team.pub'`
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      expect((await loadTrustStore({ trust: ['#team.pub'] })).keys.has(alice.keyid)).toBe(true);
    } finally {
      process.chdir(cwd);
    }
    // one that names no file is E_TRUST_STORE with its path, never read as a malformed key text
    expect(await codeOf(() => loadTrustStore({ trust: [join(dir, 'no\nsuch.pub')] }))).toBe('E_TRUST_STORE');
    const commented = `# bob's key\n${formatPublicKey(bob.publicKey)}`;
    expect((await loadTrustStore({ trust: [commented] })).keys.get(bob.keyid)!.source).toBe('<inline>');
  });
  it('loads a trust dir: *.pub files, revoked.txt, other files ignored', async () => {
    const td = join(dir, 'trust.d');
    await mkdir(td);
    await writeFile(join(td, 'alice.pub'), formatPublicKey(alice.publicKey));
    await writeFile(join(td, 'bob.pub'), formatPublicKey(bob.publicKey));
    await writeFile(join(td, 'README'), 'not a key');
    await writeFile(join(td, REVOCATION_FILE), `# compromised 2030-01-01\n${bob.keyid}  # laptop stolen\n\n`);
    const store = await loadTrustStore({ trustDir: td });
    expect([...store.keys.keys()]).toEqual([alice.keyid]);
    expect(store.revoked.has(bob.keyid)).toBe(true);
    // Revocation wins over an explicit --trust of the same key.
    const both = await loadTrustStore({ trustDir: td, trust: [formatPublicKey(bob.publicKey)] });
    expect(both.keys.has(bob.keyid)).toBe(false);
  });
  it('fails closed on missing or malformed entries', async () => {
    expect(await codeOf(() => loadTrustStore({ trust: [join(dir, 'nope.pub')] }))).toBe('E_TRUST_STORE');
    expect(await codeOf(() => loadTrustStore({ trust: [dir] }))).toBe('E_TRUST_STORE');
    expect(await codeOf(() => loadTrustStore({ trustDir: join(dir, 'nope') }))).toBe('E_TRUST_STORE');
    const td = join(dir, 'bad.d');
    await mkdir(td);
    await writeFile(join(td, 'x.pub'), 'garbage');
    expect(await codeOf(() => loadTrustStore({ trustDir: td }))).toBe('E_KEY_FORMAT');
    await rm(join(td, 'x.pub'));
    await writeFile(join(td, REVOCATION_FILE), 'not-a-key-id\n');
    expect(await codeOf(() => loadTrustStore({ trustDir: td }))).toBe('E_TRUST_STORE');
    expect(await codeOf(() => parseRevocationList(alice.keyid.toUpperCase()))).toBe('E_TRUST_STORE');
  });
});

describe('rollback state file', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'xpkg-state-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('persists the highest sequence, mode 0600, and never lowers it', async () => {
    const sd = join(dir, 'a', 'nested');
    const s1 = await FileRollbackStore.open(sd);
    expect(s1.highest(alice.keyid, 'demo')).toBeUndefined();
    await s1.record([{ keyid: alice.keyid, name: 'demo', sequence: 7 }]);
    await s1.record([{ keyid: alice.keyid, name: 'demo', sequence: 3 }]);
    const s2 = await FileRollbackStore.open(sd);
    expect(s2.highest(alice.keyid, 'demo')).toBe(7);
    expect((await stat(join(sd, ROLLBACK_FILE))).mode & 0o777).toBe(0o600);
  });
  it('merges with what another verifier wrote in between', async () => {
    const sd = join(dir, 'merge');
    const a = await FileRollbackStore.open(sd);
    const b = await FileRollbackStore.open(sd);
    await a.record([{ keyid: alice.keyid, name: 'x', sequence: 1 }]);
    await b.record([{ keyid: bob.keyid, name: 'y', sequence: 2 }]);
    const c = await FileRollbackStore.open(sd);
    expect([c.highest(alice.keyid, 'x'), c.highest(bob.keyid, 'y')]).toEqual([1, 2]);
  });
  it('a damaged state file is E_POLICY_STATE, not a silent reset', async () => {
    for (const content of [
      '{',
      '{"format":"xpkg-rollback/1","highest":{},"highest":{}}',
      '{"format":"other","highest":{}}',
      `{"format":"xpkg-rollback/1","highest":{"${alice.keyid}":{"demo":-1}}}`,
    ]) {
      const sd = await mkdtemp(join(dir, 'bad-'));
      await writeFile(join(sd, ROLLBACK_FILE), content);
      expect(await codeOf(() => FileRollbackStore.open(sd))).toBe('E_POLICY_STATE');
    }
  });
  it('default location: XPKG_STATE_DIR, then XDG_STATE_HOME/xpkg, then ~/.local/state/xpkg', () => {
    expect(defaultStateDir({ XPKG_STATE_DIR: '/s', XDG_STATE_HOME: '/x' })).toBe('/s');
    expect(defaultStateDir({ XDG_STATE_HOME: '/x' })).toBe(join('/x', 'xpkg'));
    expect(defaultStateDir({})).toMatch(/\.local[/\\]state[/\\]xpkg$/);
  });
  it('resolvePolicy reads state only when there are trusted keys', async () => {
    const sd = await mkdtemp(join(dir, 'resolve-'));
    await writeFile(join(sd, ROLLBACK_FILE), 'garbage');
    expect((await resolvePolicy({ stateDir: sd, allowUnsigned: true })).rollback).toBeNull();
    expect(await codeOf(() => resolvePolicy({ stateDir: sd, trust: [formatPublicKey(alice.publicKey)] }))).toBe(
      'E_POLICY_STATE',
    );
    await writeFile(
      join(sd, ROLLBACK_FILE),
      canonicalBytes({ format: 'xpkg-rollback/1', highest: { [alice.keyid]: { demo: 3 } } }),
    );
    const p = await resolvePolicy({ stateDir: sd, trust: [formatPublicKey(alice.publicKey)] });
    expect(p.rollback!.highest(alice.keyid, 'demo')).toBe(3);
    expect(await readFile(join(sd, ROLLBACK_FILE), 'utf8')).toContain(alice.keyid);
  });
});
