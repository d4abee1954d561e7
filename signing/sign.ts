/**
 * Signing side: key files (`keygen`) and adding a signature to a package (`sign`). Kept apart from
 * verification, which never needs a secret key.
 */
import { realpath, stat, unlink } from 'node:fs/promises';
import { refuseNonRegular } from '../pack/atomic.js';
import { PackageReader } from '../pack/reader.js';
import { writeSignatures } from '../pack/writer.js';
import { PackError, SigningError, UsageError } from '../spec/errors.js';
import { signDetached } from './ed25519.js';
import { decodeEnvelope, encodeEnvelope, PAYLOAD_TYPE, type SignatureEntry, signedBytes } from './envelope.js';
import { readSmallFile, SmallFileError, writeFileAtomic } from './files.js';
import { formatPublicKey, generateKeyPair, type KeyPair } from './keys.js';
import { withFileLock } from './lock.js';
import { obtainPassphrase, passphraseAsSet } from './passphrase.js';
import { DEFAULT_SCRYPT, decodeSecretKey, encodeSecretKey, inspectSecretKey, type ScryptParams } from './secret-key.js';

const KEY_FILE_MAX = 64 * 1024;

export interface KeygenOptions {
  /** Passphrase; null writes an unencrypted key (CI); undefined asks (XPKG_PASSPHRASE or the terminal). */
  passphrase?: string | null;
  /** Replace existing key files. */
  force?: boolean;
  /** scrypt cost (tests use a cheaper one); default N = 2^17, r = 8, p = 1. */
  scrypt?: ScryptParams;
  /** Derive the key from this seed instead of fresh randomness (tests, reproducible fixtures). */
  seed?: Uint8Array;
}

export interface KeygenResult {
  keyid: string;
  publicKeyPath: string;
  secretKeyPath: string;
  encrypted: boolean;
  publicKey: string;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    (e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? false : Promise.reject(e)),
  );
}

/** Writes `<prefix>.key` (mode 0600) and `<prefix>.pub`. Throws E_KEY_EXISTS unless `force`. */
export async function keygen(prefix: string, options: KeygenOptions = {}): Promise<KeygenResult> {
  const secretKeyPath = `${prefix}.key`;
  const publicKeyPath = `${prefix}.pub`;
  for (const p of [secretKeyPath, publicKeyPath]) {
    if (!options.force && (await exists(p)))
      throw new SigningError('E_KEY_EXISTS', `${p} already exists (pass --force to replace it)`, { path: p });
    // --force replaces key files, never a folder, device or FIFO; checked for both before the
    // secret key is written, so a refused .pub never leaves a new .key beside an old .pub
    const st = await stat(p).catch(() => null);
    if (st && !st.isFile())
      throw new SigningError('E_KEY_EXISTS', `${p} exists and is not a regular file; it is never replaced`, {
        path: p,
      });
  }
  const passphrase =
    options.passphrase === undefined
      ? await obtainPassphrase({ confirm: true, prompt: 'Passphrase for the new key: ' })
      : options.passphrase;
  const kp = generateKeyPair({ seed: options.seed });
  const keyText = await encodeSecretKey(kp, passphrase, options.scrypt ?? DEFAULT_SCRYPT);
  const pubText = formatPublicKey(kp.publicKey);
  let wroteSecret = false;
  try {
    await writeFileAtomic(secretKeyPath, keyText, { mode: 0o600, overwrite: Boolean(options.force) });
    wroteSecret = true;
    await writeFileAtomic(publicKeyPath, pubText, { mode: 0o644, overwrite: Boolean(options.force) });
  } catch (e) {
    // Never leave half a key pair: a new .key without its .pub would block the next keygen.
    if (wroteSecret && !options.force) await unlink(secretKeyPath).catch(() => {});
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
      const err = e as NodeJS.ErrnoException & { dest?: string };
      const path = err.dest ?? err.path;
      throw new SigningError(
        'E_KEY_EXISTS',
        `${path ?? prefix} appeared while writing the key (pass --force to replace it)`,
        { path },
      );
    }
    throw e;
  }
  return { keyid: kp.keyid, publicKeyPath, secretKeyPath, encrypted: passphrase !== null, publicKey: pubText };
}

/**
 * Reads and decrypts a key file. `passphrase` undefined: asks (XPKG_PASSPHRASE or the terminal)
 * only when the file is encrypted.
 */
export async function loadSigningKey(path: string, options: { passphrase?: string | null } = {}): Promise<KeyPair> {
  const text = await readSmallFile(path, KEY_FILE_MAX).then(
    (b) => b.toString('utf8'),
    (e) => {
      if (e instanceof SmallFileError) throw new SigningError('E_KEY_FORMAT', `${path} is not a key file`, { path });
      throw e;
    },
  );
  const info = inspectSecretKey(text);
  let passphrase = options.passphrase;
  let asSet: string | undefined;
  if (info.encrypted && (passphrase === undefined || passphrase === null)) {
    passphrase = await obtainPassphrase({ prompt: `Passphrase for ${path}: ` });
    asSet = passphraseAsSet();
  }
  try {
    return await decodeSecretKey(text, passphrase);
  } catch (e) {
    // a key made by an earlier build, which kept XPKG_PASSPHRASE's line ending, still opens
    if (asSet === undefined || (e as SigningError).code !== 'E_KEY_PASSPHRASE') throw e;
    return decodeSecretKey(text, asSet);
  }
}

export interface AddSignatureResult {
  envelope: Buffer;
  /** True when this key's earlier signature was replaced. */
  replaced: boolean;
  /** Key ids of signatures dropped because they were made for another package id. */
  dropped: string[];
  keyids: string[];
}

/**
 * Pure: signs the canonical manifest and merges the signature into the existing envelope (one per
 * key; the same key replaces its old one). Signatures of an envelope bound to another package id
 * can never verify here, so they are dropped and reported rather than carried along.
 */
export function addSignature(
  manifestBytes: Uint8Array,
  packageId: string,
  existing: Uint8Array | null,
  key: KeyPair,
): AddSignatureResult {
  const sig = signDetached(signedBytes(manifestBytes), key.secretKey);
  let others: SignatureEntry[] = [];
  let dropped: string[] = [];
  let replaced = false;
  if (existing) {
    const env = decodeEnvelope(existing);
    if (env.packageId !== packageId) dropped = env.signatures.map((s) => s.keyid);
    else {
      others = env.signatures.filter((s) => s.keyid !== key.keyid);
      replaced = others.length !== env.signatures.length;
    }
  }
  const signatures = [...others, { keyid: key.keyid, sig }];
  const envelope = encodeEnvelope({ payloadType: PAYLOAD_TYPE, packageId, signatures });
  return { envelope, replaced, dropped, keyids: signatures.map((s) => s.keyid).sort() };
}

export interface SignOptions {
  /** Path of the `.key` file, or a key pair already loaded. */
  key: string | KeyPair;
  /** Output path; default: replace the package in place (atomically, keeping its mode; a link is written through). */
  out?: string;
  /** Replace an existing `out` that is not the package itself. */
  force?: boolean;
  /** Passphrase of the key file; undefined asks when needed. */
  passphrase?: string | null;
  /** Check every payload digest before signing (default true): never sign a broken package. */
  checkIntegrity?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface SignResult {
  path: string;
  packageId: string;
  keyid: string;
  /** Key ids of all signatures the package now carries. */
  signatures: string[];
  replaced: boolean;
  dropped: string[];
}

/** An output other than the package itself must not exist (`force` replaces it). */
async function refuseExisting(pkgPath: string, out: string): Promise<void> {
  const [a, b] = await Promise.all([
    stat(pkgPath),
    stat(out).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? null : Promise.reject(e))),
  ]);
  if (b && (a.ino !== b.ino || a.dev !== b.dev))
    throw new PackError('E_PACK_OUTPUT_EXISTS', `${out} already exists (pass --force to replace it)`, { path: out });
}

/** The output is never the key file, --force or not: a signed package written over the secret key loses it. */
async function refuseKeyFile(key: string, out: string): Promise<void> {
  const [k, o] = await Promise.all([stat(key).catch(() => null), stat(out).catch(() => null)]);
  if (k && o && k.ino === o.ino && k.dev === o.dev)
    throw new PackError('E_PACK_OUTPUT_SOURCE', `${out} is the key file; the signed package would replace it`, {
      path: out,
    });
}

/** Adds (or replaces) this key's signature. The package id and every other byte range stay the same. */
export async function sign(pkgPath: string, options: SignOptions): Promise<SignResult> {
  // Before the passphrase prompt and the digest pass: nothing to do if the output is refused.
  // never a folder, device, FIFO or socket, --force or not: checked before the passphrase and digests
  if (options.out !== undefined) refuseNonRegular(options.out, await stat(options.out).catch(() => null));
  if (options.out !== undefined && typeof options.key === 'string') await refuseKeyFile(options.key, options.out);
  if (options.out !== undefined && !options.force) await refuseExisting(pkgPath, options.out);
  const key =
    typeof options.key === 'string'
      ? await loadSigningKey(options.key, { passphrase: options.passphrase })
      : options.key;
  const out = options.out ?? pkgPath;
  const signIt = async (): Promise<SignResult> => {
    const reader = await PackageReader.open(pkgPath);
    try {
      if (options.checkIntegrity !== false) await reader.verifyIntegrity({ onProgress: options.onProgress });
      const r = addSignature(reader.manifestBytes, reader.id, reader.signaturesBytes, key);
      await writeSignatures(reader, r.envelope, out);
      return {
        path: out,
        packageId: reader.id,
        keyid: key.keyid,
        signatures: r.keyids,
        replaced: r.replaced,
        dropped: r.dropped,
      };
    } finally {
      await reader.close();
    }
  };
  if (!(await sameFile(pkgPath, out))) return signIt();
  // In place, signing is read-modify-write of the envelope: two signers at once would each write
  // the package with only their own signature added, and one signature would be lost while both
  // reported success. One lock per package file (its real path: a link is signed through).
  const lock = `${await realpath(pkgPath)}.sign.lock`;
  return withFileLock(lock, signIt, SIGN_LOCK).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ELOCKED') throw e;
    throw new UsageError('E_IO', `${pkgPath} is being signed by another process (${e.message})`, {
      path: pkgPath,
      lock,
    });
  });
}

/**
 * A signer holds the lock for a whole digest pass and copy (minutes for a large package): others
 * wait that long. A holder that died on this host is seen at once (its pid is gone); one on another
 * host sharing the folder only by age.
 */
const SIGN_LOCK = { waitMs: 60 * 60_000, staleMs: 60 * 60_000 };

async function sameFile(a: string, b: string): Promise<boolean> {
  if (a === b) return true;
  const [x, y] = await Promise.all([stat(a).catch(() => null), stat(b).catch(() => null)]);
  return Boolean(x && y && x.ino === y.ino && x.dev === y.dev);
}
