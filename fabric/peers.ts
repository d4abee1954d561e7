/**
 * Peers named on the command line (`--peer URL`), and the default choice among peers. Discovery
 * (fabric/discovery/) supplies another PeerDirectory and a better `pickPeer`; both fit here.
 */
import { FabricError } from '../spec/errors.js';
import type { OffloadCall, PeerDirectory, PeerInfo } from './contract.js';
import { rankPeers } from './route.js';

/** Orders the peers to try for a package: those known to hold it first, then the least loaded. */
export type PickPeers = (peers: PeerInfo[], packageId: string) => PeerInfo[];

/**
 * Peers that announce the package id, or announce nothing (a static peer: it refuses an id it does
 * not hold), known holders first, then most `free` first.
 */
export const pickPeers: PickPeers = (peers, packageId) =>
  peers
    .filter((p) => p.packages.length === 0 || p.packages.includes(packageId))
    .sort((a, b) => Number(b.packages.includes(packageId)) - Number(a.packages.includes(packageId)) || b.free - a.free);

/**
 * The default order for a call: peers whose host profile is known (discovered, or read from their
 * peer document) ranked by fabric/route.ts — the tail's variant each would run, then free slots —
 * then peers known only by URL, by `pickPeers`.
 */
export function orderPeers(peers: PeerInfo[], call: Pick<OffloadCall, 'packageId' | 'tail'>): PeerInfo[] {
  const known = peers.filter((p) => p.profile);
  const ranked = call.tail
    ? rankPeers(known, { packageId: call.packageId, model: call.tail }).ranked.map((c) => c.peer)
    : pickPeers(known, call.packageId);
  return [
    ...ranked,
    ...pickPeers(
      peers.filter((p) => !p.profile),
      call.packageId,
    ),
  ];
}

/**
 * A peer's base URL as given (`--peer`), checked: http(s) only, and nothing that would go elsewhere
 * than `<url><route>` — no credentials (the fabric token is the credential; a password in a URL
 * would reach logs and error details), query or fragment (a route appended after them is not a
 * path). `path`: a path prefix is kept (a peer behind a proxy); else only `/` is allowed. Throws
 * E_FABRIC_CONFIG, quoting the URL without its credentials.
 */
export function peerBaseUrl(raw: string, o: { path: boolean }): string {
  let u: URL | undefined;
  try {
    u = new URL(raw);
  } catch {}
  const shown = u && (u.username || u.password) ? `${u.protocol}//…@${u.host}${u.pathname}` : raw.slice(0, 200);
  const refuse = (why: string) =>
    new FabricError('E_FABRIC_CONFIG', `peer ${JSON.stringify(shown)}: ${why}`, { peer: shown });
  if (!u) throw refuse('not a URL');
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw refuse('only http and https URLs');
  if (u.username || u.password) throw refuse('no user or password in the URL (the fabric token is the credential)');
  if (u.search || u.hash || raw.includes('?') || raw.includes('#')) throw refuse('no query or fragment');
  const path = u.pathname.replace(/\/+$/, '');
  if (path && !o.path) throw refuse('a base URL like http://host:port');
  return `${u.protocol}//${u.host}${path}`;
}

/** A fixed list of peer URLs; what they hold is not known in advance. */
export class StaticPeers implements PeerDirectory {
  readonly #peers: PeerInfo[];

  constructor(urls: readonly string[]) {
    this.#peers = urls.map((raw) => {
      const url = peerBaseUrl(raw, { path: true });
      return {
        id: new URL(url).host,
        url,
        host: { cpu: '', accelerators: [], runtimes: [] },
        packages: [],
        free: 0,
        seen: 0,
      };
    });
  }

  list(): PeerInfo[] {
    return [...this.#peers];
  }

  onChange(): () => void {
    return () => {};
  }

  async close(): Promise<void> {}
}
