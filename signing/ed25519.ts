/**
 * Strict ed25519 on top of tweetnacl.
 *
 * tweetnacl 1.0.3 implements the RFC 8032 equation but accepts a signature whose scalar S is not
 * reduced (S + L verifies like S: a second valid signature made without the key) and any 32 bytes
 * that decode to a point as a public key, including non-canonical encodings and the 8 points of
 * small order (with the identity as key, R = identity and S = 0 "signs" every message). This module
 * adds those checks so that one signature has one encoding and a trusted key binds one signer.
 *
 * Two layers, kept apart on purpose:
 *  - `verifyEquation`: the cofactorless RFC 8032 equation plus S < L. tweetnacl (portable: the
 *    browser build) and node:crypto (OpenSSL) compute it; the tests cross-check that both agree on
 *    edge vectors and random inputs. Under Node the OpenSSL backend is used by default because
 *    tweetnacl needs ~6 ms per verification on a slow CI core and OpenSSL ~0.1 ms.
 *  - `publicKeyProblem` / `assertStrongPublicKey`: key policy, stricter than OpenSSL. Applied when a
 *    key enters a trust store and again before every verification.
 */
import { ed25519Native, tweetnacl } from '../platform/index.js';
import { SigningError } from '../spec/errors.js';
import { type DecodeProblem, decodePoint, hasSmallOrder, inPrimeOrderSubgroup, L, leToBigInt } from './ed25519-math.js';

// tweetnacl signs and is the fallback verifier: loaded on first use, not by every `xpkg run` (~15 ms).
const nacl = tweetnacl;

export const PUBLIC_KEY_BYTES = 32;
export const SECRET_KEY_BYTES = 64;
export const SEED_BYTES = 32;
export const SIGNATURE_BYTES = 64;

export type KeyProblem = DecodeProblem | 'small-order' | 'torsion';

const KEY_PROBLEMS: Record<KeyProblem, string> = {
  length: `is not ${PUBLIC_KEY_BYTES} bytes`,
  'non-canonical': 'is not in canonical encoding (y ≥ p, or x = 0 with the sign bit set)',
  'not-on-curve': 'is not a point on edwards25519',
  'small-order': 'has small order (any signature with R = identity and S = 0 would verify)',
  torsion: 'has a small-order component (not in the prime-order subgroup)',
};

// Key checks cost ~1 ms (the subgroup check is a 253-bit scalar multiplication in BigInt); a
// verifier sees the same few keys again and again.
const keyCache = new Map<string, KeyProblem | null>();

/** Null when `publicKey` is a canonical encoding of a point of prime order L, else what is wrong. */
export function publicKeyProblem(publicKey: Uint8Array): KeyProblem | null {
  if (publicKey.length !== PUBLIC_KEY_BYTES) return 'length';
  const cacheKey = Buffer.from(publicKey).toString('hex');
  const hit = keyCache.get(cacheKey);
  if (hit !== undefined) return hit;
  const decoded = decodePoint(publicKey);
  let problem: KeyProblem | null;
  if ('problem' in decoded) problem = decoded.problem;
  else if (hasSmallOrder(decoded.point)) problem = 'small-order';
  else if (!inPrimeOrderSubgroup(decoded.point)) problem = 'torsion';
  else problem = null;
  if (keyCache.size > 1024) keyCache.clear();
  keyCache.set(cacheKey, problem);
  return problem;
}

/** Throws E_SIG_WEAK_KEY unless the key passes `publicKeyProblem`. */
export function assertStrongPublicKey(publicKey: Uint8Array, context: Record<string, unknown> = {}): void {
  const problem = publicKeyProblem(publicKey);
  if (problem) {
    throw new SigningError('E_SIG_WEAK_KEY', `public key ${KEY_PROBLEMS[problem]}`, { reason: problem, ...context });
  }
}

/** True when the S half of a signature is a reduced scalar (S < L), RFC 8032 §5.1.7 step 1. */
export function hasCanonicalS(signature: Uint8Array): boolean {
  return signature.length === SIGNATURE_BYTES && leToBigInt(signature.subarray(32, 64)) < L;
}

export type Ed25519Backend = 'node' | 'tweetnacl';

// OpenSSL's equation (platform/index.ts); absent in the browser build, where tweetnacl computes it.
const nodeEquation = (message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean =>
  ed25519Native ? ed25519Native(message, signature, publicKey) : false;

const EQUATIONS: Record<Ed25519Backend, (m: Uint8Array, s: Uint8Array, k: Uint8Array) => boolean> = {
  node: nodeEquation,
  tweetnacl: (m, s, k) => nacl().sign.detached.verify(m, s, k),
};

/** Node's OpenSSL unless XPKG_ED25519=tweetnacl or it fails a known-answer self-test. */
function pickBackend(): Ed25519Backend {
  if (!ed25519Native) return 'tweetnacl';
  if (typeof process !== 'undefined' && process.env?.XPKG_ED25519 === 'tweetnacl') return 'tweetnacl';
  try {
    // RFC 8032 test 1 must verify; one flipped bit must not.
    const pk = Buffer.from('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', 'hex');
    const sig = Buffer.from(
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
      'hex',
    );
    const ok = nodeEquation(new Uint8Array(0), sig, pk);
    sig[0] ^= 1;
    if (ok && !nodeEquation(new Uint8Array(0), sig, pk)) return 'node';
  } catch {
    // fall through
  }
  return 'tweetnacl';
}

let backend: Ed25519Backend = pickBackend();

/** The backend `verifyEquation` uses by default. */
export function ed25519Backend(): Ed25519Backend {
  return backend;
}

/** Selects the default backend (benchmarks, tests, or a host that distrusts its OpenSSL). */
export function setEd25519Backend(b: Ed25519Backend): void {
  backend = b;
}

/**
 * The RFC 8032 equation [S]B = R + [k]A (cofactorless, like tweetnacl and OpenSSL) with S < L.
 * No key policy: see `verifyStrict`.
 */
export function verifyEquation(
  message: Uint8Array,
  signature: Uint8Array,
  publicKey: Uint8Array,
  use: Ed25519Backend = backend,
): boolean {
  if (signature.length !== SIGNATURE_BYTES || publicKey.length !== PUBLIC_KEY_BYTES) return false;
  // Checked here for both backends: tweetnacl 1.0.3 skips it.
  if (!hasCanonicalS(signature)) return false;
  return EQUATIONS[use](message, signature, publicKey);
}

/**
 * Verifies or throws: E_SIG_MALFORMED (wrong length), E_SIG_WEAK_KEY, E_SIG_MALLEABLE (S ≥ L),
 * E_SIG_INVALID (the equation does not hold).
 */
export function verifyStrict(
  message: Uint8Array,
  signature: Uint8Array,
  publicKey: Uint8Array,
  context: Record<string, unknown> = {},
): void {
  if (signature.length !== SIGNATURE_BYTES) {
    throw new SigningError('E_SIG_MALFORMED', `signature is ${signature.length} bytes, not ${SIGNATURE_BYTES}`, {
      ...context,
      size: signature.length,
    });
  }
  assertStrongPublicKey(publicKey, context);
  if (!hasCanonicalS(signature)) {
    throw new SigningError(
      'E_SIG_MALLEABLE',
      'signature scalar S is not reduced (S ≥ L): a malleated copy of a signature',
      context,
    );
  }
  if (!EQUATIONS[backend](message, signature, publicKey)) {
    throw new SigningError('E_SIG_INVALID', 'signature does not verify', context);
  }
}

export interface Ed25519KeyPair {
  publicKey: Uint8Array;
  /** tweetnacl form: seed ‖ public key. */
  secretKey: Uint8Array;
}

export function keyPairFromSeed(seed: Uint8Array): Ed25519KeyPair {
  if (seed.length !== SEED_BYTES) throw new RangeError(`seed must be ${SEED_BYTES} bytes`);
  return nacl().sign.keyPair.fromSeed(seed);
}

export function randomSeed(): Uint8Array {
  return nacl().randomBytes(SEED_BYTES);
}

export function signDetached(message: Uint8Array, secretKey: Uint8Array): Uint8Array {
  return nacl().sign.detached(message, secretKey);
}
