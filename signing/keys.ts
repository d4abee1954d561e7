/**
 * Public keys: the key id and the pasteable text format of `<prefix>.pub` (spec/SIGNATURES.md §1).
 *
 *   # xpkg public key (ed25519) …free comment lines…
 *   xpkg-ed25519-pub <keyid: 64 hex> <key: 44 chars of base64>
 */
import { sha256Hex } from '../platform/index.js';
import { SigningError } from '../spec/errors.js';
import { assertStrongPublicKey, keyPairFromSeed, PUBLIC_KEY_BYTES, randomSeed, SEED_BYTES } from './ed25519.js';

export const PUBLIC_KEY_TAG = 'xpkg-ed25519-pub';
/** Longest public key text accepted; a key file is a few hundred bytes. */
export const PUBLIC_KEY_TEXT_MAX = 4096;

export interface PublicKey {
  /** Lower-case hex SHA-256 of the 32 raw key bytes. */
  keyid: string;
  publicKey: Uint8Array;
}

export interface KeyPair extends PublicKey {
  /** tweetnacl form (seed ‖ public key). Keep secret. */
  secretKey: Uint8Array;
  /** The 32-byte seed the key pair derives from; what the key file stores. Keep secret. */
  seed: Uint8Array;
}

/** Key id: SHA-256 of the raw public key. Full length, so ids never collide in practice. */
export function keyIdOf(publicKey: Uint8Array): string {
  if (publicKey.length !== PUBLIC_KEY_BYTES) throw new RangeError(`public key must be ${PUBLIC_KEY_BYTES} bytes`);
  return sha256Hex(publicKey);
}

/** Makes a new ed25519 key pair (or derives it from a 32-byte seed). */
export function generateKeyPair(options: { seed?: Uint8Array } = {}): KeyPair {
  const seed = options.seed ?? randomSeed();
  if (seed.length !== SEED_BYTES) throw new SigningError('E_KEY_FORMAT', `seed must be ${SEED_BYTES} bytes`);
  const kp = keyPairFromSeed(seed);
  return {
    keyid: keyIdOf(kp.publicKey),
    publicKey: kp.publicKey,
    secretKey: kp.secretKey,
    seed: Uint8Array.from(seed),
  };
}

export function formatPublicKey(publicKey: Uint8Array): string {
  const keyid = keyIdOf(publicKey);
  return [
    '# xpkg public key (ed25519). Trust it with: xpkg verify --trust <this file>',
    `# key id ${keyid.slice(0, 16)}…`,
    `${PUBLIC_KEY_TAG} ${keyid} ${Buffer.from(publicKey).toString('base64')}`,
    '',
  ].join('\n');
}

function keyFormat(summary: string, detail: Record<string, unknown>): SigningError {
  return new SigningError('E_KEY_FORMAT', summary, detail);
}

/**
 * Parses public key text. Throws E_KEY_FORMAT (not a public key), E_SIG_KEYID_MISMATCH (the stated
 * id is not the hash of the key) or E_SIG_WEAK_KEY (non-canonical, small-order or torsion key).
 */
export function parsePublicKey(text: string, source = '<inline>'): PublicKey {
  if (text.length > PUBLIC_KEY_TEXT_MAX)
    throw keyFormat(`${source}: public key text longer than ${PUBLIC_KEY_TEXT_MAX} characters`, { source });
  if (/"format"\s*:\s*"xpkg-secret-key\//.test(text)) {
    throw keyFormat(`${source} is a SECRET key file; give the .pub file instead (and keep the .key private)`, {
      source,
      reason: 'secret-key',
    });
  }
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (lines.length !== 1)
    throw keyFormat(
      `${source}: expected one "${PUBLIC_KEY_TAG} <keyid> <key>" line, found ${lines.length} non-comment lines`,
      { source },
    );
  const parts = lines[0].split(/\s+/);
  if (parts.length !== 3 || parts[0] !== PUBLIC_KEY_TAG)
    throw keyFormat(`${source}: not an xpkg public key (expected "${PUBLIC_KEY_TAG} <keyid> <key>")`, { source });
  const [, keyid, b64] = parts;
  if (!/^[0-9a-f]{64}$/.test(keyid)) throw keyFormat(`${source}: key id is not 64 lower-case hex digits`, { source });
  const raw = Buffer.from(b64, 'base64');
  if (!/^[A-Za-z0-9+/]{43}=$/.test(b64) || raw.length !== PUBLIC_KEY_BYTES || raw.toString('base64') !== b64) {
    throw keyFormat(`${source}: key is not ${PUBLIC_KEY_BYTES} bytes of canonical base64`, { source });
  }
  const publicKey = new Uint8Array(raw);
  const actual = keyIdOf(publicKey);
  if (actual !== keyid) {
    throw new SigningError(
      'E_SIG_KEYID_MISMATCH',
      `${source}: key id ${keyid.slice(0, 16)}… is not the id of the key it carries (${actual.slice(0, 16)}…)`,
      { source, stated: keyid, actual },
    );
  }
  assertStrongPublicKey(publicKey, { source, keyid });
  return { keyid, publicKey };
}
