/**
 * The contract between the three parts of split inference (issue #16), written first so they can be
 * built apart: the runner's offload step (runner/), the peer client and server route (fabric/, serve/),
 * and discovery (fabric/discovery). The runner knows only `Offloader`; it never opens a socket.
 */
import type { HostProfile } from '../runner/host-profile-schema.js';
import type { Tensor } from '../runner/types.js';
import type { Model } from '../spec/schema.js';

/** One peer `xpkg serve` as a device sees it (from mDNS or a static `--peer` list). */
export interface PeerInfo {
  /** Stable id of the peer process (its announced instance name). */
  id: string;
  /** Base URL of its HTTP endpoint, e.g. `https://127.0.0.1:8443`. */
  url: string;
  /** Summary of its host profile: accelerators and runtimes it can run. */
  host: { cpu: string; accelerators: string[]; runtimes: string[] };
  /** Package ids (exact signed versions) it holds and will run. */
  packages: string[];
  /** Free inference slots right now (higher is less loaded). */
  free: number;
  /** When it was last heard from (ms since epoch). */
  seen: number;
  /** Its whole host profile, when known (fabric/discovery reads it from the peer's `GET /v2/xpkg/peer`): routing selects variants against it. */
  profile?: HostProfile;
}

/** Where peers come from; `list()` holds only peers heard from recently. */
export interface PeerDirectory {
  list(): PeerInfo[];
  /** Called whenever a peer comes, changes or goes. Returns an unsubscribe function. */
  onChange(listener: (peers: PeerInfo[]) => void): () => void;
  /**
   * A call to this peer failed: leave it out until it is heard from again (directories that can),
   * or for `forMs` when the peer said when to come back (a busy peer's `Retry-After`).
   */
  markDown?(id: string, reason?: string, forMs?: number): void;
  close(): Promise<void>;
}

/** One request to run the tail of a split model elsewhere. */
export interface OffloadCall {
  /** The package's id (content address of the signed version): a peer runs it only if it holds exactly this. */
  packageId: string;
  /** Model id in the manifest whose `tail` part is wanted. */
  model: string;
  /** The tail model as the manifest declares it, so a peer can be chosen by the variant it would run. */
  tail?: Model;
  /** The cut tensors, by name. */
  inputs: Record<string, Tensor>;
  /** Absolute deadline, ms since epoch. */
  deadline: number;
  signal?: AbortSignal;
}

export interface OffloadAnswer {
  outputs: Record<string, Tensor>;
  /** The peer that ran it (`PeerInfo.id`) and what it ran on. */
  peer: string;
  variant: string;
  provider: string;
  /** Bytes sent and received for this call. */
  bytesOut: number;
  bytesIn: number;
}

/** Implemented by fabric/; handed to the runner through its options. */
export interface Offloader {
  run(call: OffloadCall): Promise<OffloadAnswer>;
}
