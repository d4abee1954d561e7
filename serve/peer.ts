/**
 * The daemon as a peer of split inference: `GET /v2/xpkg/peer` (its host profile, the package ids it
 * serves, free slots — fabric/discovery/peer-doc.ts) and, with `announce`, its DNS-SD announcement,
 * whose TXT record follows loads, unloads and capacity (checked every `checkMs`; the announcer
 * rate-limits what goes on the wire).
 */
import { networkInterfaces, hostname as osHostname } from 'node:os';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { Announcer } from '../fabric/discovery/announce.js';
import type { DirectoryOptions, MdnsPeerDirectory } from '../fabric/discovery/directory.js';
import { createPeerDirectory } from '../fabric/discovery/index.js';
import type { MdnsOptions } from '../fabric/discovery/mdns.js';
import { hostSummaryOf, type PeerDocument } from '../fabric/discovery/peer-doc.js';
import { encodeTxt, packagesDigest } from '../fabric/discovery/txt.js';
import { defaultRegistry } from '../runner/backends/index.js';
import { resolveHost } from '../runner/host.js';
import type { HostProfile } from '../runner/host-profile.js';
import type { Repository } from './repository.js';

export interface AnnounceOptions extends MdnsOptions {
  /** Instance name (default `xpkg-<hostname>-<port>`). */
  name?: string;
  /** Record TTL in seconds (default 120). */
  ttlSec?: number;
  /** Least time between two announcements of a changed TXT (default 1000 ms). */
  minIntervalMs?: number;
  /** How often packages and capacity are looked at (default 500 ms). */
  checkMs?: number;
}

export interface PeerState {
  name: string;
  profile: HostProfile;
  backends: string[];
  concurrency: number;
  repository: Repository;
}

/** What the daemon can run right now. */
export function peerDocument(s: PeerState): PeerDocument {
  const packages: PeerDocument['packages'] = [];
  let free = 0;
  for (const e of s.repository.models.values()) {
    const v = e.current;
    if (v?.state !== 'ready') continue;
    packages.push({ id: v.id, name: v.name, sequence: v.sequence });
    const { queued, active } = e.scheduler.depth;
    free += Math.max(0, s.concurrency - active - queued);
  }
  packages.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  // library paths say nothing a device needs and more than a network should hear
  const runtimes = Object.fromEntries(
    Object.entries(s.profile.runtimes).map(([k, { path: _, ...r }]) => [k, r]),
  ) as HostProfile['runtimes'];
  return {
    format: 'xpkg-peer/1',
    name: s.name,
    host: hostSummaryOf(s.profile, s.backends),
    profile: { ...s.profile, runtimes },
    packages,
    free,
    digest: packagesDigest(packages.map((p) => p.id)),
  };
}

export function peerRoute(app: FastifyInstance, state: () => Promise<PeerState>): void {
  app.get('/v2/xpkg/peer', async () => peerDocument(await state()));
}

/** The host profile and backends the daemon's workers select variants with. */
export async function peerState(
  repository: Repository,
  host: string | HostProfile | undefined,
  concurrency: number,
  name: string,
): Promise<PeerState> {
  const profile = typeof host === 'object' ? host : await resolveHost(host !== undefined ? { host } : {});
  return { name, profile, backends: defaultRegistry().runtimes(), concurrency, repository };
}

export function defaultPeerName(port: number): string {
  const h =
    osHostname()
      .split('.')[0]
      .replace(/[^A-Za-z0-9-]/g, '-')
      .slice(0, 40) || 'host';
  return `xpkg-${h}-${port}`;
}

/** IPv4 addresses to announce: the listen address, or every external one when listening on all. */
export function announceAddresses(listenHost: string, mdnsInterface: string | undefined): string[] {
  if (/^\d+\.\d+\.\d+\.\d+$/.test(listenHost) && listenHost !== '0.0.0.0') return [listenHost];
  if (mdnsInterface) return [mdnsInterface];
  return Object.values(networkInterfaces())
    .flat()
    .filter((a) => a && a.family === 'IPv4' && !a.internal)
    .map((a) => a!.address);
}

export interface Announcing {
  close(): Promise<void>;
}

export async function startAnnouncing(
  o: AnnounceOptions,
  state: PeerState,
  http: { host: string; port: number },
  log: Logger,
): Promise<Announcing> {
  const txt = () => {
    const d = peerDocument(state);
    return encodeTxt({ host: d.host, packages: d.packages.map((p) => p.id), free: d.free });
  };
  const addresses = announceAddresses(http.host, o.interface);
  const announcer = await Announcer.start(
    {
      ...o,
      name: state.name,
      port: http.port,
      addresses,
      warn: (obj, msg) => log.warn(obj, msg),
    },
    txt(),
  );
  const timer = setInterval(() => announcer.update(txt()), o.checkMs ?? 500);
  timer.unref();
  log.info({ name: state.name, addresses, port: http.port }, 'announcing');
  return {
    close: async () => {
      clearInterval(timer);
      await announcer.close();
      log.info({ name: state.name }, 'announcement withdrawn');
    },
  };
}

/** The device side: a directory of peers, its comings and goings logged. */
export async function discoverPeers(o: DirectoryOptions, log: Logger): Promise<MdnsPeerDirectory> {
  const dir = await createPeerDirectory({
    log: { info: (obj, msg) => log.info(obj, msg), warn: (obj, msg) => log.warn(obj, msg) },
    ...o,
  });
  dir.onChange((peers) => log.info({ peers: peers.map((p) => p.id) }, 'peers'));
  return dir;
}
