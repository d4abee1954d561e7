/**
 * One multicast-dns socket as announcer and directory use it. `interface` picks the network (default:
 * every IPv4 interface); with `127.0.0.1` everything stays on loopback, which is how the tests run.
 * The socket binds to the group address, not the interface's: on Linux a socket bound to a unicast
 * address never receives the group's datagrams (verified here on `lo`, which has no MULTICAST flag yet
 * carries them once the membership and the outgoing interface are 127.0.0.1).
 */
import makeMdns from 'multicast-dns';
import { FabricError } from '../../spec/errors.js';

export interface MdnsOptions {
  /** IPv4 address of the interface to announce and browse on (default: all). */
  interface?: string;
  /** UDP port (default 5353; tests use another so parallel runs never hear each other). */
  mdnsPort?: number;
  /** Multicast group (default 224.0.0.251). */
  group?: string;
}

export type Mdns = makeMdns.MulticastDNS;

/** mDNS warnings logged a minute. */
const WARN_BURST = 20;

export type Warn = (obj: Record<string, unknown>, msg: string) => void;

/** Opens the socket; rejects with E_FABRIC_DISCOVERY when it cannot bind (port taken without reuse, no such interface). */
export async function openMdns(o: MdnsOptions, warn: Warn): Promise<Mdns> {
  const group = o.group ?? '224.0.0.251';
  const m = makeMdns({
    ...(o.interface ? { interface: o.interface } : {}),
    port: o.mdnsPort ?? 5353,
    ip: group,
    bind: group,
    reuseAddr: true,
    loopback: true,
  });
  // undecodable packets and membership failures arrive as warnings: logged, never fatal — and at
  // most WARN_BURST a minute, so a sender of garbage cannot flood the log
  let windowStart = 0;
  let inWindow = 0;
  m.on('warning', (e: Error) => {
    const now = Date.now();
    if (now - windowStart > 60_000) [windowStart, inWindow] = [now, 0];
    if (++inWindow <= WARN_BURST) warn({ err: e.message }, 'mDNS warning');
    else if (inWindow === WARN_BURST + 1)
      warn({ limit: WARN_BURST }, 'many mDNS warnings: no more are logged this minute');
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => {
      m.destroy();
      reject(
        new FabricError('E_FABRIC_DISCOVERY', `cannot open mDNS on port ${o.mdnsPort ?? 5353}: ${e.message}`, {
          port: o.mdnsPort ?? 5353,
          interface: o.interface,
        }),
      );
    };
    m.once('error', onError);
    m.once('ready', () => {
      m.removeListener('error', onError);
      m.on('error', (e: Error) => warn({ err: e.message }, 'mDNS error'));
      resolve();
    });
  });
  return m;
}

export function closeMdns(m: Mdns): Promise<void> {
  return new Promise((resolve) => m.destroy(() => resolve()));
}
