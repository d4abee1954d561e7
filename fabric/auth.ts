/**
 * Peer authentication with one shared token (the minimum the issue allows; no TLS here). The token
 * itself never goes on the wire: a device could be talking to anyone who announced on the LAN, and a
 * bearer token sent there would be stolen. A call carries `Authorization: XpkgFabric t=,n=,m=` —
 * HMAC-SHA256(token) over the time, a fresh nonce, the method and the path — which the peer checks
 * in constant time, within CLOCK_SKEW_MS of its clock and refusing a nonce it has seen (a replayed
 * call). The peer answers with a proof, HMAC-SHA256(token, nonce), so a device also refuses a peer
 * that does not hold the token (a stranger answering on the peer's address).
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readSmallFile } from '../signing/files.js';
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

/** The largest token file read: a token is a line of tens of characters (`/dev/zero` never ends). */
export const TOKEN_FILE_MAX = 64 * 1024;

/** The token from a file (its first line); written by an operator, e.g. `openssl rand -hex 32`. */
export async function readToken(path: string): Promise<string> {
  let text: string;
  try {
    // a regular file of at most TOKEN_FILE_MAX bytes: a device or a pipe nobody writes is refused, not waited on
    text = (await readSmallFile(path, TOKEN_FILE_MAX)).toString('utf8');
  } catch (e) {
    throw new FabricError('E_FABRIC_CONFIG', `cannot read the fabric token file ${path}: ${(e as Error).message}`, {
      path,
    });
  }
  return checkToken(text.split('\n')[0].trim(), `the token in ${path}`);
}

export const newNonce = (): string => randomBytes(16).toString('hex');

/** How far a call's time may be from the peer's clock (hosts without NTP drift by seconds, not minutes). */
export const CLOCK_SKEW_MS = 120_000;
const SCHEME = 'XpkgFabric';

const callMac = (token: string, t: string, nonce: string, method: string, path: string) =>
  createHmac('sha256', token)
    .update(`xpkg-fabric-call\u0000${t}\u0000${nonce}\u0000${method}\u0000${path}`)
    .digest('hex');

/** The Authorization value of one call (`path` with its query, as the peer sees it). */
export function callAuthorization(
  token: string,
  nonce: string,
  method: string,
  path: string,
  now = Date.now(),
): string {
  const t = String(now);
  return `${SCHEME} t=${t},n=${nonce},m=${callMac(token, t, nonce, method, path)}`;
}

/** The peer's side: which nonces it has accepted, until they fall out of the clock window. */
export class CallVerifier {
  readonly #seen = new Map<string, number>();
  constructor(
    private readonly token: string,
    private readonly maxSeen = 100_000,
  ) {}

  /** True when `authorization` is a fresh call for this method and path made with the token. */
  verify(authorization: unknown, method: string, path: string, now = Date.now()): boolean {
    if (typeof authorization !== 'string') return false;
    const m = /^XpkgFabric t=([0-9]{1,16}),n=([0-9a-f]{32}),m=([0-9a-f]{64})$/.exec(authorization);
    if (!m) return false;
    const [, t, nonce, mac] = m;
    if (Math.abs(Number(t) - now) > CLOCK_SKEW_MS) return false;
    if (!sameSecret(mac, callMac(this.token, t, nonce, method, path))) return false;
    // forget nonces older than the window (the map is in insertion order, roughly by time)
    for (const [n, until] of this.#seen) {
      if (until > now && this.#seen.size < this.maxSeen) break;
      this.#seen.delete(n);
    }
    if (this.#seen.has(nonce)) return false;
    this.#seen.set(nonce, Number(t) + CLOCK_SKEW_MS);
    return true;
  }
}

export function proofOf(token: string, nonce: string): string {
  return createHmac('sha256', token).update(`xpkg-fabric-peer\u0000${nonce}`).digest('hex');
}

export function proofMatches(proof: unknown, token: string, nonce: string): boolean {
  return typeof proof === 'string' && sameSecret(proof, proofOf(token, nonce));
}
