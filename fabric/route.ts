/**
 * Routing a tail to a peer: a pure function of the peers a directory lists and what the tail needs.
 * A peer qualifies when it holds exactly the package id, has a free slot and a known host profile on
 * which the project's variant selection (runner/select.ts) finds a runnable variant of the tail model.
 * Qualified peers are ranked by the variant they would run — accelerator over CPU, exact device
 * match over compatible, a build for the CPU's features over a generic one, the precision policy's
 * place for that device, then manifest order — then
 * by free slots (most first), then by id, so the same inputs always give the same peer.
 */
import { selectVariants } from '../runner/select.js';
import { DEFAULT_PRECISION_POLICY, precisionList } from '../runner/select-rules.js';
import type { Model } from '../spec/schema.js';
import type { PeerInfo } from './contract.js';

export interface TailNeed {
  /** The package id (exact signed version) the tail belongs to. */
  packageId: string;
  /** The tail model as the manifest declares it (its variants and their requirements). */
  model: Model;
  /** Peers not to consider (ones already tried for this call). */
  exclude?: ReadonlySet<string>;
}

export interface PeerChoice {
  peer: PeerInfo;
  /** The variant of the tail model selection picks on that peer. */
  variant: string;
  /** Ranking key of that variant (lower is better). */
  key: number[];
}

export interface PeerRanking {
  /** Best first. */
  ranked: PeerChoice[];
  /** Peers left out, with why (stable codes). */
  rejected: { peer: string; reason: 'excluded' | 'package' | 'busy' | 'no-profile' | 'no-variant' }[];
}

const MATCH_RANK = { exact: 0, compatible: 1, any: 2 } as const;

export function rankPeers(peers: readonly PeerInfo[], need: TailNeed): PeerRanking {
  const ranked: PeerChoice[] = [];
  const rejected: PeerRanking['rejected'] = [];
  for (const peer of peers) {
    if (need.exclude?.has(peer.id)) rejected.push({ peer: peer.id, reason: 'excluded' });
    else if (!peer.packages.includes(need.packageId)) rejected.push({ peer: peer.id, reason: 'package' });
    else if (peer.free <= 0) rejected.push({ peer: peer.id, reason: 'busy' });
    else if (!peer.profile) rejected.push({ peer: peer.id, reason: 'no-profile' });
    else {
      // the peer's backends are the runtimes it announced (available there and known to its xpkg)
      const sel = selectVariants({ models: [need.model] }, peer.profile, { backends: peer.host.runtimes });
      const chosen = sel.models[0].chosen;
      if (!chosen) {
        rejected.push({ peer: peer.id, reason: 'no-variant' });
        continue;
      }
      const { list } = precisionList(DEFAULT_PRECISION_POLICY, peer.profile, chosen.device);
      const place = list.indexOf(chosen.variant.precision);
      const key = [
        chosen.device ? 0 : 1,
        chosen.device ? MATCH_RANK[chosen.device.match] : 3,
        // a build for this CPU's features beats the generic fallback another peer would run
        chosen.variant.requires?.cpuFeatures?.length ? 0 : 1,
        place >= 0 ? place : list.length,
        chosen.declared,
      ];
      ranked.push({ peer, variant: chosen.variant.id, key });
    }
  }
  ranked.sort((a, b) => {
    for (let i = 0; i < a.key.length; i++) if (a.key[i] !== b.key[i]) return a.key[i] - b.key[i];
    if (a.peer.free !== b.peer.free) return b.peer.free - a.peer.free;
    return a.peer.id < b.peer.id ? -1 : a.peer.id > b.peer.id ? 1 : 0;
  });
  return { ranked, rejected };
}

/** The best peer for the tail, or undefined when none qualifies (the caller runs locally or fails with E_FABRIC_NO_PEER). */
export function pickPeer(peers: readonly PeerInfo[], need: TailNeed): PeerChoice | undefined {
  return rankPeers(peers, need).ranked[0];
}
