/**
 * Trust stores (spec/SIGNATURES.md §4): the keys a verifier accepts signatures from, given as
 * `--trust` files or texts and/or a `--trust-dir` holding `*.pub` files and an optional
 * `revoked.txt`. Fails closed: an unreadable or malformed entry is an error, never skipped.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { SigningError } from '../spec/errors.js';
import { collisionKey } from '../spec/paths.js';
import { readSmallFile, SmallFileError } from './files.js';
import { PUBLIC_KEY_TEXT_MAX, parsePublicKey } from './keys.js';
import {
  buildTrustStore,
  looksLikeKeyText,
  parseRevocationList,
  type TrustedKey,
  type TrustStore,
} from './trust-store.js';

export {
  buildTrustStore,
  EMPTY_TRUST_STORE,
  looksLikeKeyText,
  parseRevocationList,
  type TrustedKey,
  type TrustStore,
} from './trust-store.js';

export const REVOCATION_FILE = 'revoked.txt';
const REVOCATION_TEXT_MAX = 1024 * 1024;

async function readSmall(path: string, max: number, what: string): Promise<string> {
  let text: string;
  try {
    text = (await readSmallFile(path, max)).toString('utf8');
  } catch (e) {
    if (e instanceof SmallFileError) {
      if (e.reason === 'not-regular')
        throw new SigningError('E_TRUST_STORE', `${what} ${path} is not a regular file`, { path });
      throw new SigningError('E_TRUST_STORE', `${what} ${path} is larger than ${max} bytes`, { path, size: e.size });
    }
    const err = e as NodeJS.ErrnoException;
    throw new SigningError('E_TRUST_STORE', `cannot read ${what} ${path}: ${err.code ?? err.message}`, {
      path,
      errno: err.code,
    });
  }
  return text;
}

async function keyFromFile(path: string): Promise<TrustedKey> {
  const text = await readSmall(path, PUBLIC_KEY_TEXT_MAX, 'public key file');
  return { ...parsePublicKey(text, path), source: path };
}

/**
 * A public key file's text, checked to be one (E_KEY_FORMAT otherwise): read as `--trust` files are,
 * a regular file of at most PUBLIC_KEY_TEXT_MAX bytes (E_TRUST_STORE otherwise, never a device read
 * without end).
 */
export async function readPublicKeyFile(path: string): Promise<string> {
  const text = await readSmall(path, PUBLIC_KEY_TEXT_MAX, 'public key file');
  parsePublicKey(text, path);
  return text;
}

export interface TrustSources {
  /** Public key files, or public key texts. */
  trust?: readonly string[];
  /** A folder of `*.pub` files with an optional `revoked.txt`. */
  trustDir?: string;
}

/** Loads `--trust` and `--trust-dir` into one store. */
export async function loadTrustStore(sources: TrustSources): Promise<TrustStore> {
  const keys: TrustedKey[] = [];
  const revoked: string[] = [];
  for (const t of sources.trust ?? []) {
    if (looksLikeKeyText(t)) keys.push({ ...parsePublicKey(t), source: '<inline>' });
    else keys.push(await keyFromFile(t));
  }
  if (sources.trustDir !== undefined) {
    const dir = sources.trustDir;
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new SigningError('E_TRUST_STORE', `cannot read trust directory ${dir}: ${err.code ?? err.message}`, {
        path: dir,
        errno: err.code,
      });
    }
    for (const name of names) {
      // Hidden files are not keys: macOS leaves `._alice.pub` (AppleDouble) beside each file it
      // copies to a foreign volume, editors their swap files. Skipping one only ever trusts less.
      if (name.startsWith('.')) continue;
      if (name === REVOCATION_FILE) {
        const path = join(dir, name);
        revoked.push(...parseRevocationList(await readSmall(path, REVOCATION_TEXT_MAX, 'revocation list'), path));
      } else if (collisionKey(name) === collisionKey(REVOCATION_FILE))
        // `REVOKED.txt` ignored would silently trust the keys it revokes: refuse, never guess
        throw new SigningError(
          'E_TRUST_STORE',
          `${join(dir, name)}: the revocation list must be named exactly ${REVOCATION_FILE}`,
          { path: join(dir, name) },
        );
      else if (name.endsWith('.pub')) keys.push(await keyFromFile(join(dir, name)));
    }
  }
  return buildTrustStore(keys, revoked);
}
