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

/** A fixed list of peer URLs; what they hold is not known in advance. */
export class StaticPeers implements PeerDirectory {
  readonly #peers: PeerInfo[];

  constructor(urls: readonly string[]) {
    this.#peers = urls.map((raw) => {
      let u: URL;
      try {
        u = new URL(raw);
      } catch {
        throw new FabricError('E_FABRIC_CONFIG', `peer ${JSON.stringify(raw)} is not a URL`, { peer: raw });
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:')
        throw new FabricError('E_FABRIC_CONFIG', `peer ${raw}: only http and https URLs`, { peer: raw });
      const url = u.href.replace(/\/+$/, '');
      return { id: u.host, url, host: { cpu: '', accelerators: [], runtimes: [] }, packages: [], free: 0, seen: 0 };
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
