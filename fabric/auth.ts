/**
 * Peer authentication with one shared token (the minimum the issue allows; no TLS here). The token
 * itself never goes on the wire: a device could be talking to anyone who announced on the LAN, and a
 * bearer token sent there would be stolen. A call carries `Authorization: XpkgFabric t=,n=,m=` —
 * HMAC-SHA256(token) over the time, a fresh nonce, the method and the path — which the peer checks
 * in constant time, within CLOCK_SKEW_MS of its clock and refusing a nonce it has seen (a replayed
 * call). The peer answers with a proof, HMAC-SHA256(token, nonce), so a device also refuses a peer
 * that does not hold the token (a stranger answering on the peer's address), and with an answer MAC
 * over the call and both bodies' digests: anyone who announced can relay a call to a real peer, and
 * without it could change the tensors either way and pass the real peer's proof on.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readSmallFile } from '../signing/files.js';
import { FabricError } from '../spec/errors.js';

export const NONCE_HEADER = 'xpkg-fabric-nonce';
export const PROOF_HEADER = 'xpkg-fabric-proof';
/** The request body's SHA-256 (hex), covered by the call's MAC: the peer refuses a body changed on the way. */
export const BODY_HEADER = 'xpkg-fabric-body-sha256';
/** HMAC of the answer (`answerMac`): the device refuses tensors changed on the way back. */
export const ANSWER_HEADER = 'xpkg-fabric-answer';
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

/** A SHA-256 digest as BODY_HEADER carries it. */
export const DIGEST = /^[0-9a-f]{64}$/;
export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

// the body's digest is signed only when given: a call signed with it does not verify without it
const callMac = (token: string, t: string, nonce: string, method: string, path: string, body?: string) =>
  createHmac('sha256', token)
    .update(`xpkg-fabric-call\u0000${t}\u0000${nonce}\u0000${method}\u0000${path}${body ? `\u0000${body}` : ''}`)
    .digest('hex');

/** The Authorization value of one call (`path` with its query, as the peer sees it; `body`: BODY_HEADER's digest). */
export function callAuthorization(
  token: string,
  nonce: string,
  method: string,
  path: string,
  now = Date.now(),
  body?: string,
): string {
  const t = String(now);
  return `${SCHEME} t=${t},n=${nonce},m=${callMac(token, t, nonce, method, path, body)}`;
}

/** The peer's side: which nonces it has accepted, until they fall out of the clock window. */
export class CallVerifier {
  readonly #seen = new Map<string, number>();
  /**
   * Calls signed at or before this time are refused: raised when a nonce still inside the window
   * must be forgotten (the map is full), so a forgotten nonce can never be replayed.
   */
  #floor = 0;
  constructor(
    private readonly token: string,
    private readonly maxSeen = 100_000,
  ) {}

  /** True when `authorization` is a fresh call for this method and path made with the token. */
  verify(authorization: unknown, method: string, path: string, now = Date.now(), body?: string): boolean {
    return this.check(authorization, method, path, now, body) !== undefined;
  }

  /** The call's nonce when `authorization` is a fresh call for this method, path (and body digest); else undefined. */
  check(authorization: unknown, method: string, path: string, now = Date.now(), body?: string): string | undefined {
    if (typeof authorization !== 'string') return undefined;
    const m = /^XpkgFabric t=([0-9]{1,16}),n=([0-9a-f]{32}),m=([0-9a-f]{64})$/.exec(authorization);
    if (!m) return undefined;
    const [, t, nonce, mac] = m;
    if (Math.abs(Number(t) - now) > CLOCK_SKEW_MS || Number(t) <= this.#floor) return undefined;
    if (!sameSecret(mac, callMac(this.token, t, nonce, method, path, body))) return undefined;
    // forget nonces older than the window (the map is in insertion order, roughly by time)
    for (const [n, until] of this.#seen) {
      if (until > now && this.#seen.size < this.maxSeen) break;
      if (until > now) this.#floor = Math.max(this.#floor, until - CLOCK_SKEW_MS);
      this.#seen.delete(n);
    }
    if (this.#seen.has(nonce)) return undefined;
    this.#seen.set(nonce, Number(t) + CLOCK_SKEW_MS);
    return nonce;
  }
}

export function proofOf(token: string, nonce: string): string {
  return createHmac('sha256', token).update(`xpkg-fabric-peer\u0000${nonce}`).digest('hex');
}

export function proofMatches(proof: unknown, token: string, nonce: string): boolean {
  return typeof proof === 'string' && sameSecret(proof, proofOf(token, nonce));
}

/**
 * The peer's MAC of one answer: the call (nonce, method, path: package id and model), the request
 * body as the peer received it, and the answer as it sent it (header length and body digests).
 */
export function answerMac(
  token: string,
  a: { nonce: string; method: string; path: string; request: string; headerLength: string; answer: string },
): string {
  return createHmac('sha256', token)
    .update(['xpkg-fabric-answer', a.nonce, a.method, a.path, a.request, a.headerLength, a.answer].join('\u0000'))
    .digest('hex');
}

export function answerMatches(mac: unknown, token: string, a: Parameters<typeof answerMac>[1]): boolean {
  return typeof mac === 'string' && sameSecret(mac, answerMac(token, a));
}
