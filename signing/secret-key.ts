/**
 * The secret key file `<prefix>.key` (spec/SIGNATURES.md §1.2): canonical JSON holding the 32-byte
 * ed25519 seed, encrypted with AES-256-GCM under a key stretched from the passphrase by scrypt
 * (memory-hard), or in the clear when made with --no-passphrase. The GCM additional data is the
 * whole header, so editing the public key, key id or KDF parameters breaks decryption.
 */
import { createCipheriv, createDecipheriv, randomBytes, type ScryptOptions, scrypt as scryptCb } from 'node:crypto';
import { canonicalize, type Json, parseStrictJson } from '../spec/canonical.js';
import { SigningError, XpkgError } from '../spec/errors.js';
import { SEED_BYTES } from './ed25519.js';
import { generateKeyPair, type KeyPair } from './keys.js';

export const SECRET_KEY_FORMAT = 'xpkg-secret-key/1';

/** scrypt cost for new key files: N = 2^17, r = 8, p = 1 (128 MiB, ~0.3–0.5 s). */
export const DEFAULT_SCRYPT = { N: 1 << 17, r: 8, p: 1 } as const;
/** Largest cost a key file may ask for: bounds the memory a hostile key file can make us spend. */
const MAX_SCRYPT_MEMORY = 1024 * 1024 * 1024;

export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

const ENCRYPTION_FIELDS = ['N', 'cipher', 'kdf', 'nonce', 'p', 'r', 'salt'];

interface Encryption {
  kdf: 'scrypt';
  N: number;
  r: number;
  p: number;
  salt: string;
  cipher: 'aes-256-gcm';
  nonce: string;
}

function scrypt(passphrase: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  const options: ScryptOptions = {
    N: params.N,
    r: params.r,
    p: params.p,
    maxmem: 128 * params.N * params.r * params.p + 32 * 1024 * 1024,
  };
  return new Promise<Buffer>((resolve, reject) =>
    scryptCb(passphrase.normalize('NFC'), salt, 32, options, (err, key) => (err ? reject(err) : resolve(key))),
  ).catch((e: NodeJS.ErrnoException) => {
    // parse() bounds the parameters; whatever OpenSSL still refuses is a bad key file, not a crash.
    if (e?.code === 'ERR_CRYPTO_INVALID_SCRYPT_PARAMS') throw bad('scrypt parameters out of range', { ...params });
    throw e;
  });
}

function header(kp: { keyid: string; publicKey: Uint8Array }, encryption: Encryption | null): Record<string, Json> {
  return {
    format: SECRET_KEY_FORMAT,
    keyid: kp.keyid,
    publicKey: Buffer.from(kp.publicKey).toString('base64'),
    encryption: encryption as unknown as Json,
  };
}

/**
 * Serialises a key pair as a key file. `passphrase: null` stores the seed in the clear (CI use).
 * An empty passphrase is refused: it would look encrypted and protect nothing.
 */
export async function encodeSecretKey(
  kp: KeyPair,
  passphrase: string | null,
  params: ScryptParams = DEFAULT_SCRYPT,
): Promise<string> {
  if (passphrase === null)
    return `${canonicalize({ ...header(kp, null), seed: Buffer.from(kp.seed).toString('base64') })}\n`;
  if (passphrase.length === 0)
    throw new SigningError('E_KEY_PASSPHRASE', 'empty passphrase; use --no-passphrase for an unencrypted key');
  const salt = randomBytes(16);
  const nonce = randomBytes(12);
  const encryption: Encryption = {
    kdf: 'scrypt',
    N: params.N,
    r: params.r,
    p: params.p,
    salt: salt.toString('base64'),
    cipher: 'aes-256-gcm',
    nonce: nonce.toString('base64'),
  };
  const head = header(kp, encryption);
  const key = await scrypt(passphrase, salt, params);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(Buffer.from(canonicalize(head), 'utf8'));
  const ct = Buffer.concat([cipher.update(kp.seed), cipher.final(), cipher.getAuthTag()]);
  return `${canonicalize({ ...head, ciphertext: ct.toString('base64') })}\n`;
}

export interface SecretKeyInfo {
  keyid: string;
  publicKey: Uint8Array;
  encrypted: boolean;
}

function bad(summary: string, detail: Record<string, unknown> = {}): SigningError {
  return new SigningError('E_KEY_FORMAT', `key file: ${summary}`, detail);
}

const b64 = (v: Json | undefined, bytes: number, what: string): Buffer => {
  if (typeof v !== 'string') throw bad(`${what} missing`);
  const buf = Buffer.from(v, 'base64');
  if (buf.length !== bytes || buf.toString('base64') !== v) throw bad(`${what} is not ${bytes} bytes of base64`);
  return buf;
};

interface Parsed {
  head: Record<string, Json>;
  info: SecretKeyInfo;
  doc: Record<string, Json>;
  encryption: Encryption | null;
}

function parse(raw: string): Parsed {
  // A BOM (PowerShell's and Notepad's UTF-8) is dropped as in .pub files: the file is the user's own key.
  const text = raw.replace(/^\uFEFF/, '');
  if (/^\s*(#.*\n\s*)*xpkg-ed25519-pub /.test(text))
    throw bad('this is a PUBLIC key file; sign with the .key file', { reason: 'public-key' });
  let doc: Json;
  try {
    doc = parseStrictJson(text.replace(/\n$/, ''), { maxDepth: 4 });
  } catch (e) {
    throw bad(e instanceof XpkgError ? e.message : 'not JSON', { cause: e instanceof XpkgError ? e.code : undefined });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw bad('not a JSON object');
  if (doc.format !== SECRET_KEY_FORMAT) {
    throw bad(`format is not ${SECRET_KEY_FORMAT}`, { format: doc.format ?? null });
  }
  if (typeof doc.keyid !== 'string' || !/^[0-9a-f]{64}$/.test(doc.keyid)) throw bad('keyid missing or malformed');
  const publicKey = new Uint8Array(b64(doc.publicKey, 32, 'publicKey'));
  const enc = doc.encryption;
  let encryption: Encryption | null = null;
  if (enc !== null) {
    if (typeof enc !== 'object' || Array.isArray(enc) || enc === undefined)
      throw bad('encryption must be an object or null');
    const { N, r, p } = enc as Record<string, Json>;
    if (enc.kdf !== 'scrypt' || enc.cipher !== 'aes-256-gcm')
      throw bad('unsupported encryption (expected scrypt + aes-256-gcm)');
    const unknown = Object.keys(enc).filter((k) => !ENCRYPTION_FIELDS.includes(k));
    if (unknown.length) throw bad(`unexpected encryption fields ${unknown.join(', ')}`);
    const ints = [N, r, p].every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 1);
    if (
      !ints ||
      ((N as number) & ((N as number) - 1)) !== 0 ||
      (N as number) < 2 ||
      // RFC 7914: N < 2^(128·r/8); OpenSSL refuses more (N = 2^16 with r = 1).
      (N as number) >= 2 ** (16 * (r as number)) ||
      128 * (N as number) * (r as number) * (p as number) > MAX_SCRYPT_MEMORY
    ) {
      throw bad('scrypt parameters out of range', { N, r, p });
    }
    b64(enc.salt, 16, 'salt');
    b64(enc.nonce, 12, 'nonce');
    encryption = enc as unknown as Encryption;
  }
  const head = { format: doc.format, keyid: doc.keyid, publicKey: doc.publicKey, encryption: enc };
  const extra = Object.keys(doc).filter((k) => !(k in head) && k !== (encryption ? 'ciphertext' : 'seed'));
  if (extra.length) throw bad(`unexpected fields ${extra.join(', ')}`);
  return { head, info: { keyid: doc.keyid, publicKey, encrypted: encryption !== null }, doc, encryption };
}

/** Reads the header of a key file without decrypting it (to know whether a passphrase is needed). */
export function inspectSecretKey(text: string): SecretKeyInfo {
  return parse(text).info;
}

/**
 * Decrypts a key file. Throws E_KEY_FORMAT (malformed, or the seed does not give the stated public
 * key) or E_KEY_PASSPHRASE (missing or wrong passphrase, or a tampered file: GCM cannot tell which).
 */
export async function decodeSecretKey(text: string, passphrase?: string | null): Promise<KeyPair> {
  const { head, info, doc, encryption } = parse(text);
  let seed: Buffer;
  if (!encryption) {
    seed = b64(doc.seed, SEED_BYTES, 'seed');
  } else {
    if (passphrase === undefined || passphrase === null)
      throw new SigningError('E_KEY_PASSPHRASE', 'key file is encrypted and no passphrase was given', {
        keyid: info.keyid,
      });
    const ct = b64(doc.ciphertext, SEED_BYTES + 16, 'ciphertext');
    const key = await scrypt(passphrase, Buffer.from(encryption.salt, 'base64'), encryption);
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(encryption.nonce, 'base64'));
    decipher.setAAD(Buffer.from(canonicalize(head), 'utf8'));
    decipher.setAuthTag(ct.subarray(SEED_BYTES));
    try {
      seed = Buffer.concat([decipher.update(ct.subarray(0, SEED_BYTES)), decipher.final()]);
    } catch {
      throw new SigningError('E_KEY_PASSPHRASE', 'wrong passphrase (or the key file was altered)', {
        keyid: info.keyid,
      });
    }
  }
  const kp = generateKeyPair({ seed: new Uint8Array(seed) });
  if (kp.keyid !== info.keyid || !Buffer.from(kp.publicKey).equals(Buffer.from(info.publicKey))) {
    throw bad('the secret key does not match the public key recorded beside it', { keyid: info.keyid });
  }
  return kp;
}
