/**
 * Helpers for the observability sweep (test/serve-observability.test.ts): a daemon whose log is kept
 * as the raw text it wrote (so a line that is not one JSON object, or a text line split in two, is
 * seen as such), raw HTTP bytes over a socket, and the daemon's own metric families.
 */
import { connect } from 'node:net';
import type { LogFormat } from '../../serve/log.js';
import type { ServeOptions, XpkgServer } from '../../serve/server.js';
import { type Family, parseExposition } from './prom-text.js';
import { http, startWithLog } from './serve.js';

export interface RawServer extends XpkgServer {
  /** Everything the logger wrote, in order. */
  text: () => string;
  /** The JSON lines parsed (throws on a line that is not one JSON object). */
  lines: () => Record<string, unknown>[];
}

/** A daemon on a free loopback port, not yet ready (await `ready`); its log written line by line. */
export async function rawServer(
  o: Partial<ServeOptions> & { repo: string },
  format: LogFormat = 'json',
): Promise<RawServer> {
  const chunks: string[] = [];
  const server = await startWithLog(o, format, (text) => chunks.push(text));
  const text = () => chunks.join('');
  const lines = () =>
    text()
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const v = JSON.parse(l);
        if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`not an object: ${l}`);
        return v as Record<string, unknown>;
      });
  return Object.assign(server, { text, lines });
}

/** Sends `bytes` on a fresh connection and resolves with all the server answered once it closes. */
export function rawRequest(url: string, bytes: string | Buffer): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const sock = connect(Number(u.port), u.hostname);
    let out = '';
    sock.on('data', (d) => (out += d));
    sock.on('close', () => resolve(out));
    sock.on('error', () => {});
    sock.write(bytes);
  });
}

/** The daemon's own families (not the process metrics prom-client adds, whose labels vary by themselves). */
export const OWN = [
  'xpkg_serve_requests_total',
  'xpkg_serve_request_duration_seconds',
  'xpkg_serve_stage_duration_seconds',
  'xpkg_serve_queue_depth',
  'xpkg_serve_inflight',
  'xpkg_serve_loaded_versions',
  'xpkg_serve_swap_events_total',
  'xpkg_serve_worker_restarts_total',
  'xpkg_serve_memory_bytes',
];

/** `/metrics` fetched and parsed strictly (prom-text.ts), with the page's content type checked. */
export async function scrape(url: string): Promise<Map<string, Family>> {
  const r = await http(`${url}/metrics`);
  if (r.status !== 200 || !/^text\/plain; version=0\.0\.4/.test(r.headers.get('content-type') ?? ''))
    throw new Error(`/metrics answered ${r.status} ${r.headers.get('content-type')}`);
  return parseExposition(r.raw.toString('utf8'));
}

/** The value of one series (labels matched exactly on the ones given), or undefined. */
export function sample(f: Map<string, Family>, name: string, labels: Record<string, string>): number | undefined {
  const family = f.get(name.replace(/_(bucket|sum|count)$/, '')) ?? f.get(name);
  const s = family?.samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return s?.value;
}
