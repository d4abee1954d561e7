/**
 * The HTTP layer under the registry client: one request over Node's keep-alive agents, bounded
 * response bodies, registry error answers mapped to OciError codes, and retries with backoff.
 */
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { OciError } from '../spec/errors.js';
import { MAX_OCI_MANIFEST } from './artifact.js';

export type Body = Buffer | (() => Readable);

export interface Send {
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: Body;
  bodyLength?: number;
}

const agents = {
  'http:': new http.Agent({ keepAlive: true, maxSockets: 16 }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: 16 }),
};

/** Whether an error is worth another attempt: the network failed, or the registry had a 5xx or 429. */
export function isRetryable(e: unknown): boolean {
  if (!(e instanceof OciError)) return false;
  if (e.code === 'E_OCI_NETWORK') return true;
  const status = (e.detail as { status?: number } | undefined)?.status ?? 0;
  return e.code === 'E_OCI_REGISTRY' && (status >= 500 || status === 429);
}

export async function withRetries<T>(retries: number, fn: (attempt: number) => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      if (attempt >= retries || !isRetryable(e)) throw e;
      await new Promise((r) => setTimeout(r, backoff(e, attempt)));
    }
  }
}

/** Longest wait a registry's Retry-After is honoured for, per attempt. */
const MAX_RETRY_AFTER_MS = 60_000;

/**
 * Milliseconds before the next attempt: exponential, or what a 429/503's Retry-After asks (a
 * rate-limited registry refuses again until then, so the attempts would all be spent at once).
 */
export function backoff(e: unknown, attempt: number): number {
  const base = Math.min(3000, 150 * 2 ** attempt);
  const after = ((e as OciError).detail as { retryAfter?: string | null } | undefined)?.retryAfter;
  if (!after) return base;
  const seconds = /^\d+$/.test(after.trim()) ? Number(after) * 1000 : Date.parse(after) - Date.now();
  return Number.isFinite(seconds) ? Math.max(base, Math.min(MAX_RETRY_AFTER_MS, seconds)) : base;
}

export function send(req: Send): Promise<IncomingMessage> {
  const url = new URL(req.url);
  const agent = agents[url.protocol as 'http:' | 'https:'];
  if (!agent) return Promise.reject(new OciError('E_OCI_REFERENCE', `unsupported URL ${req.url}`));
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { 'user-agent': 'xpkg', ...req.headers };
    if (Buffer.isBuffer(req.body)) headers['content-length'] = req.body.length;
    else if (req.body) headers['content-length'] = req.bodyLength ?? 0;
    else if (req.method === 'PUT' || req.method === 'POST' || req.method === 'PATCH') headers['content-length'] = 0;
    const r = (url.protocol === 'https:' ? https : http).request(url, { method: req.method, headers, agent }, resolve);
    const fail = (e: NodeJS.ErrnoException) =>
      reject(
        new OciError('E_OCI_NETWORK', `${req.method} ${url.host}${url.pathname}: ${e.message}`, {
          url: `${url.origin}${url.pathname}`,
          errno: e.code ?? null,
        }),
      );
    r.on('error', fail);
    r.setTimeout(60_000, () => r.destroy(Object.assign(new Error('no response for 60 s'), { code: 'ETIMEDOUT' })));
    if (Buffer.isBuffer(req.body)) r.end(req.body);
    else if (req.body) {
      const src = req.body();
      src.on('error', (e) => r.destroy(e));
      src.pipe(r);
    } else r.end();
  });
}

/** The response body, at most `limit` bytes (a larger one is E_OCI_REGISTRY). */
export async function readBody(res: IncomingMessage, limit = MAX_OCI_MANIFEST): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of res as AsyncIterable<Buffer>) {
      n += c.length;
      if (n > limit) {
        res.destroy();
        throw new OciError('E_OCI_REGISTRY', `response larger than ${limit} bytes`, { limit });
      }
      parts.push(c);
    }
  } catch (e) {
    if (e instanceof OciError) throw e;
    throw new OciError('E_OCI_NETWORK', `response cut short: ${(e as Error).message}`);
  }
  return Buffer.concat(parts);
}

/** Drains and turns an unexpected response into an error with the registry's own codes. */
export async function failure(res: IncomingMessage, what: string): Promise<OciError> {
  const body = await readBody(res, 64 * 1024).catch(() => Buffer.alloc(0));
  let errors: unknown = null;
  try {
    errors = (JSON.parse(body.toString('utf8')) as { errors?: unknown }).errors ?? null;
  } catch {
    // not JSON
  }
  const status = res.statusCode ?? 0;
  const retryAfter = res.headers['retry-after'];
  const detail = { status, errors, ...(retryAfter ? { retryAfter } : {}) };
  const codes = Array.isArray(errors) ? errors.map((x) => (x as { code?: string })?.code) : [];
  if (status === 401 || status === 403) return new OciError('E_OCI_AUTH', `${what}: access denied (${status})`, detail);
  if (status === 404) return new OciError('E_OCI_NOT_FOUND', `${what}: not found`, detail);
  if (codes.includes('DIGEST_INVALID') || codes.includes('SIZE_INVALID'))
    return new OciError('E_OCI_DIGEST', `${what}: the registry says the bytes do not match their digest`, detail);
  return new OciError('E_OCI_REGISTRY', `${what}: unexpected response ${status}`, detail);
}

export const OCTETS = { 'content-type': 'application/octet-stream' };

/** An answer's Location as an absolute URL: relative ones resolve against the request's URL (RFC 9110 §10.2.2). */
export function locationOf(res: IncomingMessage, requestUrl: string): string {
  return res.headers.location ? new URL(res.headers.location, requestUrl).toString() : requestUrl;
}

/** The session URL with `digest=` added to whatever query the registry put there. */
export function withDigest(location: string, digest: string): string {
  const u = new URL(location);
  u.searchParams.set('digest', digest);
  return u.toString();
}

/**
 * Refuses an answer whose Docker-Content-Digest names other bytes than those sent: the digest is
 * ours (the manifest's is what the signatures' package id is reached through), and a registry that
 * stored something else must not be taken as having the package. An absent header is fine.
 */
export function saidDigest(res: IncomingMessage, expected: string, what: string): void {
  const said = String(res.headers['docker-content-digest'] ?? '').trim();
  if (said && said !== expected)
    throw new OciError('E_OCI_DIGEST', `${what}: the registry says it stored ${said}`, { expected, actual: said });
}

/** A registry refusing the method or form of an upload (not its bytes, not its auth). */
export function refusedMethod(e: unknown): boolean {
  if (!(e instanceof OciError) || e.code !== 'E_OCI_REGISTRY') return false;
  const d = e.detail as { status?: number; errors?: unknown } | undefined;
  const codes = Array.isArray(d?.errors) ? d.errors.map((x) => (x as { code?: unknown })?.code) : [];
  // 416: a chunk's Content-Range in another form than the one the registry wants
  return d?.status === 405 || d?.status === 416 || d?.status === 501 || codes.includes('UNSUPPORTED');
}

/** Frees idle keep-alive sockets (a CLI command ends with this so the process can exit at once). */
export function closeConnections(): void {
  agents['http:'].destroy();
  agents['https:'].destroy();
}
