/**
 * The peer document: what a daemon serves at `GET /v2/xpkg/peer` and what a device reads after an
 * announcement — the whole host profile (variant selection needs all of it; the TXT record holds
 * only a summary) and every package id, which may not fit in the TXT record. Validated field by
 * field on the device: a peer's answer is untrusted input.
 */
import { loadHostProfile } from '../../runner/host-profile.js';
import type { HostProfile } from '../../runner/host-profile-schema.js';
import { XpkgError } from '../../spec/errors.js';
import { bodyUpTo } from '../body.js';
import type { PeerInfo } from '../contract.js';
import { PACKAGE_ID, packagesDigest } from './txt.js';

export interface PeerDocument {
  format: 'xpkg-peer/1';
  /** The announced instance name. */
  name: string;
  host: PeerInfo['host'];
  profile: HostProfile;
  /** Packages loaded and serving: id (exact signed version), manifest name, sequence. */
  packages: { id: string; name: string; sequence: number }[];
  free: number;
  /** packagesDigest of the ids, as in the TXT record. */
  digest: string;
}

const TOKEN = /^[A-Za-z0-9_.:+-]{1,64}$/;
const NAME = /^[^\p{C}\s.\\][^\p{C}.\\]{0,62}$/u;

/** The announced summary of a profile: CPU arch, accelerators (`vendor-kind:arch`), runtimes xpkg can use there. */
export function hostSummaryOf(profile: HostProfile, backends: readonly string[]): PeerInfo['host'] {
  const clean = (s: string) => s.replace(/[^A-Za-z0-9_.:+-]/g, '-').slice(0, 64);
  return {
    cpu: profile.arch,
    accelerators: [...profile.gpus, ...profile.npus].map((d) =>
      clean(`${d.vendor}-${d.kind}${d.arch ? `:${d.arch}` : ''}`),
    ),
    runtimes: Object.entries(profile.runtimes)
      .filter(([name, r]) => r.available && backends.includes(name))
      .map(([name]) => name)
      .sort(),
  };
}

/** Checks a fetched document; returns the reason it is refused, or the document. */
export function checkPeerDocument(value: unknown): PeerDocument | { reason: string } {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return { reason: 'not a JSON object' };
  const d = value as Record<string, unknown>;
  if (d.format !== 'xpkg-peer/1') return { reason: `format ${JSON.stringify(d.format)}` };
  // the name is the peer's id in results, logs and `xpkg peers`: no control or format characters (a
  // terminal escape, a bidi override), as an announce name (one DNS label) never has
  if (typeof d.name !== 'string' || !NAME.test(d.name) || Buffer.byteLength(d.name) > 63) return { reason: 'name' };
  if (!Number.isSafeInteger(d.free) || (d.free as number) < 0) return { reason: 'free' };
  if (!Array.isArray(d.packages) || d.packages.length > 100_000) return { reason: 'packages is not a list' };
  const packages: PeerDocument['packages'] = [];
  for (const p of d.packages as unknown[]) {
    const e = p as Record<string, unknown> | null;
    if (
      !e ||
      typeof e.id !== 'string' ||
      !PACKAGE_ID.test(e.id) ||
      typeof e.name !== 'string' ||
      !Number.isSafeInteger(e.sequence)
    )
      return { reason: `package entry ${JSON.stringify(p)?.slice(0, 100)}` };
    packages.push({ id: e.id, name: e.name, sequence: e.sequence as number });
  }
  if (d.digest !== packagesDigest(packages.map((p) => p.id))) return { reason: 'digest does not match the packages' };
  const h = d.host as Record<string, unknown> | undefined;
  const tokens = (v: unknown) => Array.isArray(v) && v.every((t) => typeof t === 'string' && TOKEN.test(t));
  if (!h || typeof h.cpu !== 'string' || !TOKEN.test(h.cpu) || !tokens(h.accelerators) || !tokens(h.runtimes))
    return { reason: 'host summary' };
  let profile: HostProfile;
  try {
    profile = loadHostProfile(d.profile as object);
  } catch (e) {
    return { reason: e instanceof XpkgError ? `profile: ${e.message}` : 'profile' };
  }
  return {
    format: 'xpkg-peer/1',
    name: d.name,
    host: { cpu: h.cpu, accelerators: h.accelerators as string[], runtimes: h.runtimes as string[] },
    profile,
    packages,
    free: d.free as number,
    digest: d.digest as string,
  };
}

/** Largest document read (a profile and a few thousand ids fit well under it). */
const MAX_DOC_BYTES = 4 * 1024 * 1024;

/** Fetches and checks `<url>/v2/xpkg/peer`; a network failure, a non-200 or a bad document is a reason. */
export async function fetchPeerDocument(
  url: string,
  o: { timeoutMs: number; headers?: Record<string, string> },
): Promise<PeerDocument | { reason: string }> {
  try {
    const r = await fetch(`${url}/v2/xpkg/peer`, {
      signal: AbortSignal.timeout(o.timeoutMs),
      ...(o.headers ? { headers: o.headers } : {}),
      // the document describes the peer at this URL: one served elsewhere (a redirect) is not its own
      redirect: 'manual',
    });
    if (r.status !== 200) {
      await r.body?.cancel().catch(() => {});
      return { reason: `GET /v2/xpkg/peer answered ${r.status}` };
    }
    const body = await bodyUpTo(r, MAX_DOC_BYTES);
    if (!body) return { reason: 'peer document too large' };
    return checkPeerDocument(JSON.parse(body.toString('utf8')));
  } catch (e) {
    return { reason: `GET /v2/xpkg/peer: ${(e as Error).message}` };
  }
}
