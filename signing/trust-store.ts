/**
 * Trust stores (spec/SIGNATURES.md §4) as data: the keys a verifier accepts signatures from and the
 * revoked key ids. Building one needs no file system (the browser build pastes keys); loading them
 * from `--trust` files and `--trust-dir` folders is signing/trust.ts's.
 */
import { SigningError } from '../spec/errors.js';
import { assertStrongPublicKey } from './ed25519.js';
import { keyIdOf, PUBLIC_KEY_TAG, type PublicKey } from './keys.js';

export interface TrustedKey extends PublicKey {
  /** Where the key came from: a file path or `<inline>`. */
  source: string;
}

export interface TrustStore {
  /** Trusted, non-revoked keys by key id. */
  readonly keys: ReadonlyMap<string, TrustedKey>;
  /** Revoked key ids: never trusted, whatever else says so. */
  readonly revoked: ReadonlySet<string>;
}

export const EMPTY_TRUST_STORE: TrustStore = { keys: new Map(), revoked: new Set() };

/** Parses a revocation list: one key id per line, `#` comments and blank lines allowed. */
export function parseRevocationList(text: string, source = '<inline>'): string[] {
  const ids: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') return;
    if (!/^[0-9a-f]{64}$/.test(line)) {
      throw new SigningError('E_TRUST_STORE', `${source}:${i + 1}: not a key id (64 lower-case hex digits)`, {
        source,
        line: i + 1,
      });
    }
    ids.push(line);
  });
  return ids;
}

/**
 * Builds a store from parsed keys and revoked ids; revocation wins over trust. Keys are checked
 * again here because callers of the library may build them by hand: a key id that is not the hash
 * of its key (E_SIG_KEYID_MISMATCH) would let one key stand under two ids and count twice toward a
 * threshold, and a weak key (E_SIG_WEAK_KEY) must never enter a store.
 */
export function buildTrustStore(keys: Iterable<TrustedKey>, revoked: Iterable<string> = []): TrustStore {
  const revokedSet = new Set(revoked);
  const map = new Map<string, TrustedKey>();
  for (const k of keys) {
    assertStrongPublicKey(k.publicKey, { source: k.source, keyid: k.keyid });
    const actual = keyIdOf(k.publicKey);
    if (actual !== k.keyid) {
      throw new SigningError('E_SIG_KEYID_MISMATCH', `${k.source}: key id is not the id of the key it carries`, {
        source: k.source,
        stated: k.keyid,
        actual,
      });
    }
    if (!revokedSet.has(k.keyid) && !map.has(k.keyid)) map.set(k.keyid, k);
  }
  return { keys: map, revoked: revokedSet };
}

/**
 * True when a `--trust` value is key text rather than a path: only what could be a key's text, its
 * line first or comment lines before it. Any other value is a path, even one with a newline or
 * starting with `#` (a file named `#team.pub`): read as text it could never be a key.
 */
export function looksLikeKeyText(value: string): boolean {
  const t = value.trimStart();
  // the tag and then white space: a file named `xpkg-ed25519-pub-alice.pub` is a path
  return (
    (t.startsWith(PUBLIC_KEY_TAG) && /^\s/.test(t.slice(PUBLIC_KEY_TAG.length))) ||
    (t.startsWith('#') && t.includes('\n'))
  );
}
