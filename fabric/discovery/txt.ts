/**
 * The TXT record of an `_xpkg._tcp` announcement (DNS-SD, RFC 6763 §6): `key=value` strings of at
 * most 255 bytes each, the whole record kept under `TXT_BUDGET` so an announcement fits one packet.
 * Package ids (64 hex characters each) go in inline while they fit; the count and a digest of the
 * sorted list always go, so a browser knows when the inline list is partial and fetches the whole
 * document from the peer's `GET /v2/xpkg/peer`. Decoding is strict: anything off is a reason, never
 * a throw, and the caller ignores that announcement with the reason logged.
 */
import { createHash } from 'node:crypto';

export const SERVICE_TYPE = '_xpkg._tcp.local';
/** Format of the TXT record (`v=`); a browser ignores announcements of another version. */
export const TXT_VERSION = '1';
/** Bytes of all TXT strings together: RFC 6763 §6.2 suggests ≤ 1300 to stay in one Ethernet frame. */
export const TXT_BUDGET = 1300;
/** Where the whole peer document is served (serve/routes-peer.ts). */
export const PEER_PATH = '/v2/xpkg/peer';

/** What a peer announces: PeerInfo's fields less those the browser derives (url, seen). */
export interface Announcement {
  host: { cpu: string; accelerators: string[]; runtimes: string[] };
  packages: string[];
  free: number;
  /** Digest of the sorted package ids (`packagesDigest`) and their count. */
  digest: string;
  count: number;
  /** true when `packages` holds every id (else fetch PEER_PATH). */
  complete: boolean;
  scheme: 'http' | 'https';
}

const PACKAGE_ID = /^[0-9a-f]{64}$/;
const TOKEN = /^[A-Za-z0-9_.:+-]{1,64}$/;

export function packagesDigest(ids: readonly string[]): string {
  return createHash('sha256')
    .update([...ids].sort().join('\n'))
    .digest('hex')
    .slice(0, 32);
}

/** The TXT strings of an announcement; ids go in one per string (`p0=…`) while the budget lasts. */
export function encodeTxt(a: {
  host: Announcement['host'];
  packages: readonly string[];
  free: number;
  scheme?: 'http' | 'https';
}): Buffer[] {
  const ids = [...a.packages].sort();
  const head = [
    `v=${TXT_VERSION}`,
    `s=${a.scheme ?? 'http'}`,
    `cpu=${a.host.cpu}`,
    `acc=${a.host.accelerators.join(',')}`,
    `rt=${a.host.runtimes.join(',')}`,
    `free=${Math.max(0, Math.floor(a.free))}`,
    `pn=${ids.length}`,
    `pd=${packagesDigest(ids)}`,
  ];
  const out = head.map((s) => Buffer.from(s, 'utf8'));
  let used = out.reduce((n, b) => n + b.length + 1, 0);
  for (const [i, id] of ids.entries()) {
    const b = Buffer.from(`p${i}=${id}`, 'utf8');
    if (used + b.length + 1 > TXT_BUDGET) break;
    out.push(b);
    used += b.length + 1;
  }
  for (const b of out) if (b.length > 255) throw new RangeError(`TXT string over 255 bytes: ${b.subarray(0, 40)}…`);
  return out;
}

const list = (v: string) => (v === '' ? [] : v.split(','));

/** Parses a TXT record's strings; `{ reason }` when it is not a valid announcement. */
export function decodeTxt(strings: readonly (Buffer | string)[]): Announcement | { reason: string } {
  const kv = new Map<string, string>();
  for (const raw of strings) {
    const s = typeof raw === 'string' ? raw : raw.toString('utf8');
    if (Buffer.byteLength(s) > 255) return { reason: 'a TXT string is over 255 bytes' };
    const eq = s.indexOf('=');
    if (eq <= 0) return { reason: `TXT string without key=value: ${JSON.stringify(s.slice(0, 40))}` };
    const key = s.slice(0, eq).toLowerCase();
    // RFC 6763 §6.4: a repeated key is ignored after its first appearance
    if (!kv.has(key)) kv.set(key, s.slice(eq + 1));
  }
  if (kv.get('v') !== TXT_VERSION) return { reason: `TXT version ${JSON.stringify(kv.get('v'))}, want ${TXT_VERSION}` };
  const scheme = kv.get('s') ?? 'http';
  if (scheme !== 'http' && scheme !== 'https') return { reason: `scheme ${JSON.stringify(scheme)}` };
  const cpu = kv.get('cpu');
  if (!cpu || !TOKEN.test(cpu)) return { reason: `cpu ${JSON.stringify(cpu)} is not a token` };
  const accelerators = list(kv.get('acc') ?? '');
  const runtimes = list(kv.get('rt') ?? '');
  for (const t of [...accelerators, ...runtimes])
    if (!TOKEN.test(t)) return { reason: `accelerator or runtime ${JSON.stringify(t)} is not a token` };
  const free = Number(kv.get('free'));
  const count = Number(kv.get('pn'));
  if (!Number.isSafeInteger(free) || free < 0) return { reason: `free ${JSON.stringify(kv.get('free'))}` };
  if (!Number.isSafeInteger(count) || count < 0 || count > 100_000)
    return { reason: `pn ${JSON.stringify(kv.get('pn'))}` };
  const digest = kv.get('pd') ?? '';
  if (!/^[0-9a-f]{32}$/.test(digest)) return { reason: `pd ${JSON.stringify(digest)} is not a digest` };
  const packages: string[] = [];
  for (let i = 0; kv.has(`p${i}`); i++) {
    const id = kv.get(`p${i}`)!;
    if (!PACKAGE_ID.test(id)) return { reason: `p${i} ${JSON.stringify(id.slice(0, 70))} is not a package id` };
    packages.push(id);
  }
  if (packages.length > count) return { reason: `${packages.length} package ids but pn=${count}` };
  const complete = packages.length === count;
  if (complete && packagesDigest(packages) !== digest) return { reason: 'package ids do not match their digest' };
  return { host: { cpu, accelerators, runtimes }, packages, free, digest, count, complete, scheme };
}

export { PACKAGE_ID };
