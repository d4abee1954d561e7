/**
 * The device side of an offload: the Offloader the runner is handed. It POSTs the cut tensors to a
 * peer's fabric route (serve/routes-fabric.ts) in the V2 binary tensor extension, with the shared
 * token and a nonce, under the call's deadline; checks the peer's proof of the token and its MAC over
 * the call and both bodies (a relay that changed either is refused); and decodes the tail's outputs. Peers are tried in `pick` order until one answers or the deadline passes.
 */
import { FabricError, toXpkgError, type XpkgError } from '../spec/errors.js';
import {
  ANSWER_HEADER,
  answerMatches,
  BODY_HEADER,
  callAuthorization,
  NONCE_HEADER,
  newNonce,
  PROOF_HEADER,
  proofMatches,
  sha256,
} from './auth.js';
import { bodyUpTo } from './body.js';
import type { OffloadAnswer, OffloadCall, Offloader, PeerDirectory, PeerInfo } from './contract.js';
import { orderPeers, type PickPeers } from './peers.js';
import { decodeV2, encodeV2, HEADER_LENGTH } from './v2-binary.js';

/** Codes a peer's error answer may carry through; any other (or none) is E_FABRIC_PEER, so the union stays closed. */
const PEER_CODES = new Set(['E_FABRIC_AUTH', 'E_FABRIC_PACKAGE_UNKNOWN', 'E_FABRIC_SPLIT', 'E_FABRIC_MESSAGE']);
/** Largest answer read: outputs of a tail are megabytes; a peer streaming without end must not fill memory. */
export const MAX_ANSWER_BYTES = 256 * 1024 * 1024;
/** Largest error answer read: only its JSON code and message are used, and anyone who announced can send one. */
const MAX_ERROR_BYTES = 64 * 1024;

/** A variant or provider id as the peer names it, or '' (it lands in results and logs: short, printable). */
const label = (v: unknown): string => (typeof v === 'string' && /^[A-Za-z0-9_.:+-]{1,64}$/.test(v) ? v : '');

/** `Retry-After` (seconds or an HTTP date) in ms, kept between 250 ms and 10 minutes; undefined when absent or unreadable. */
function retryAfter(v: string | null): number | undefined {
  if (!v) return undefined;
  const ms = /^[0-9]{1,9}$/.test(v.trim()) ? Number(v.trim()) * 1000 : Date.parse(v) - Date.now();
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 250), 600_000) : undefined;
}

export interface HttpOffloaderOptions {
  peers: PeerDirectory;
  token: string;
  pick?: PickPeers;
  /** Largest answer read (default MAX_ANSWER_BYTES). */
  maxAnswerBytes?: number;
}

/** The peer route for the tail of split model `model` of package `id`. */
export const tailPath = (id: string, model: string) =>
  `/v2/fabric/packages/${encodeURIComponent(id)}/models/${encodeURIComponent(model)}/tail/infer`;

export class HttpOffloader implements Offloader {
  constructor(private readonly o: HttpOffloaderOptions) {}

  async run(call: OffloadCall): Promise<OffloadAnswer> {
    const list = this.o.peers.list();
    const peers = this.o.pick ? this.o.pick(list, call.packageId) : orderPeers(list, call);
    if (!peers.length)
      throw new FabricError('E_FABRIC_NO_PEER', `no peer can run package ${call.packageId}`, {
        package: call.packageId,
      });
    let last: XpkgError | undefined;
    const tried = new Set<string>();
    for (const peer of peers) {
      if (Date.now() >= call.deadline || call.signal?.aborted) break;
      // one peer listed twice (announced and given by URL, or under two names at one address) is asked once
      if (tried.has(peer.id) || tried.has(peer.url)) continue;
      tried.add(peer.id).add(peer.url);
      try {
        return await this.one(peer, call);
      } catch (e) {
        last = toXpkgError(e);
        // a peer that failed is left out of later calls until it is heard from again
        const back = (last.detail as { retryAfterMs?: unknown } | undefined)?.retryAfterMs;
        if (!call.signal?.aborted)
          this.o.peers.markDown?.(peer.id, last.message, typeof back === 'number' ? back : undefined);
      }
    }
    throw (
      last ??
      new FabricError('E_FABRIC_DEADLINE', 'the deadline passed before a peer was tried', { package: call.packageId })
    );
  }

  private async one(peer: PeerInfo, call: OffloadCall): Promise<OffloadAnswer> {
    const left = call.deadline - Date.now();
    const { body, headerLength } = encodeV2({ parameters: { deadline_ms: left } }, 'inputs', call.inputs);
    const nonce = newNonce();
    const digest = sha256(body);
    const path = tailPath(call.packageId, call.model);
    const signals = [AbortSignal.timeout(Math.max(1, left)), ...(call.signal ? [call.signal] : [])];
    const detail = { peer: peer.id, url: peer.url };
    let res: Response;
    let bytes: Buffer;
    try {
      res = await fetch(peer.url + path, {
        method: 'POST',
        headers: {
          // signed for this call, never the token itself (fabric/auth.ts)
          authorization: callAuthorization(this.o.token, nonce, 'POST', path, Date.now(), digest),
          'content-type': 'application/octet-stream',
          [HEADER_LENGTH]: String(headerLength),
          [BODY_HEADER]: digest,
          [NONCE_HEADER]: nonce,
        },
        body: new Uint8Array(body.buffer as ArrayBuffer, body.byteOffset, body.length),
        signal: AbortSignal.any(signals),
        // the token goes to this peer's origin only: a redirect is a failed call, never followed
        redirect: 'manual',
      });
      // a 200 without the proof is refused before its body is read (a stranger's, of any size)
      if (res.status === 200 && !proofMatches(res.headers.get(PROOF_HEADER), this.o.token, nonce)) {
        await res.body?.cancel().catch(() => {});
        throw new FabricError('E_FABRIC_AUTH', `peer ${peer.id} did not prove it holds the fabric token`, detail);
      }
      // an error's body is read only as far as its code and message need (it may never end)
      const max = res.status === 200 ? (this.o.maxAnswerBytes ?? MAX_ANSWER_BYTES) : MAX_ERROR_BYTES;
      const answer = await bodyUpTo(res, max);
      if (!answer && res.status === 200)
        throw new FabricError('E_FABRIC_MESSAGE', `the answer is larger than ${max} bytes`, detail);
      bytes = answer ?? Buffer.alloc(0);
    } catch (e) {
      if (e instanceof FabricError) throw e;
      if (signals.some((s) => s.aborted))
        throw new FabricError('E_FABRIC_DEADLINE', `peer ${peer.id} did not answer within ${left} ms`, detail);
      const why = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new FabricError(
        'E_FABRIC_PEER',
        `peer ${peer.id} failed: ${why?.code ?? why?.message ?? (e as Error).message}`,
        detail,
      );
    }
    if (res.status !== 200) {
      let code: string | undefined;
      let message = `peer ${peer.id} answered ${res.status}`;
      try {
        const j = JSON.parse(bytes.subarray(0, 64 * 1024).toString('utf8')) as { code?: unknown; error?: unknown };
        if (typeof j.code === 'string') code = j.code.slice(0, 64);
        // the peer's words, bounded and on one line: they end up in logs
        if (typeof j.error === 'string') message += `: ${j.error.slice(0, 300).replace(/\p{Cc}/gu, ' ')}`;
      } catch {}
      const known = code && PEER_CODES.has(code) ? (code as 'E_FABRIC_PEER') : 'E_FABRIC_PEER';
      const retryAfterMs =
        res.status === 429 || res.status === 503 ? retryAfter(res.headers.get('retry-after')) : undefined;
      throw new FabricError(known, message, {
        ...detail,
        status: res.status,
        code: code ?? null,
        ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      });
    }
    // the tensors are the peer's answer to this call on these inputs, unchanged on the way back
    const headerLengthValue = res.headers.get(HEADER_LENGTH) ?? '';
    const bound = {
      nonce,
      method: 'POST',
      path,
      request: digest,
      headerLength: headerLengthValue,
      answer: sha256(bytes),
    };
    if (!answerMatches(res.headers.get(ANSWER_HEADER), this.o.token, bound))
      throw new FabricError(
        'E_FABRIC_AUTH',
        `the answer of peer ${peer.id} is not the one it signed for this call`,
        detail,
      );
    const { header, tensors } = decodeV2(bytes, headerLengthValue || undefined, 'outputs');
    const p = (header.parameters ?? {}) as { variant?: unknown; provider?: unknown };
    return {
      outputs: tensors,
      peer: peer.id,
      variant: label(p.variant),
      provider: label(p.provider),
      bytesOut: body.length,
      bytesIn: bytes.length,
    };
  }
}
