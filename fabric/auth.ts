/**
 * Peer authentication with one shared token (the minimum the issue allows; no TLS here). A device
 * sends it as a bearer token, which the peer compares in constant time; the peer answers with a
 * proof, HMAC-SHA256(token, nonce) over a fresh nonce the device chose, so a device also refuses a
 * peer that does not hold the token (a stranger answering on the peer's address).
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { FabricError } from '../spec/errors.js';

export const NONCE_HEADER = 'xpkg-fabric-nonce';
export const PROOF_HEADER = 'xpkg-fabric-proof';
const MIN_TOKEN = 16;

/** Equal strings in time that depends only on their hashes' length. */
function sameSecret(a: string, b: string): boolean {
  const h = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(h(a), h(b));
}

export function checkToken(token: string, what = 'the fabric token'): string {
  if (token.length < MIN_TOKEN || /\s/.test(token))
    throw new FabricError('E_FABRIC_CONFIG', `${what} must be at least ${MIN_TOKEN} characters without spaces`);
  return token;
}

/** The token from a file (its first line); written by an operator, e.g. `openssl rand -hex 32`. */
export async function readToken(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new FabricError('E_FABRIC_CONFIG', `cannot read the fabric token file ${path}: ${(e as Error).message}`, {
      path,
    });
  }
  return checkToken(text.split('\n')[0].trim(), `the token in ${path}`);
}

export function bearerMatches(authorization: unknown, token: string): boolean {
  if (typeof authorization !== 'string' || !authorization.startsWith('Bearer ')) return false;
  return sameSecret(authorization.slice(7), token);
}

export const newNonce = (): string => randomBytes(16).toString('hex');

export function proofOf(token: string, nonce: string): string {
  return createHmac('sha256', token).update(`xpkg-fabric-peer\u0000${nonce}`).digest('hex');
}

export function proofMatches(proof: unknown, token: string, nonce: string): boolean {
  return typeof proof === 'string' && sameSecret(proof, proofOf(token, nonce));
}
