/**
 * `xpkg peers`: the peers a device would offload to — found by mDNS (`--discover`) and/or given
 * (`--peer URL`), each with its host summary, package ids and free slots — after listening `--wait` ms.
 * `discoveryFlags`/`directoryOptions` are the device-side flags `run` and `serve` share for offload.
 */
import type { Command } from 'commander';
import type { PeerInfo } from '../../fabric/contract.js';
import type { DirectoryOptions } from '../../fabric/discovery/directory.js';
import { action, msOption, portOption, usage } from '../framework.js';

export interface DiscoveryFlags {
  discover?: boolean;
  peer?: string[];
  mdnsInterface?: string;
  mdnsPort?: string;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** Adds --discover, --peer, --mdns-interface and --mdns-port to a command. */
export function discoveryFlags(cmd: Command, what = 'peers'): Command {
  return cmd
    .option('--discover', `find ${what} on the local network (DNS-SD _xpkg._tcp over mDNS)`)
    .option('--peer <url>', 'a peer xpkg serve at this base URL, e.g. http://10.0.0.5:8000 (repeatable)', collect)
    .option('--mdns-interface <ipv4>', 'browse on this interface only (default: all)')
    .option('--mdns-port <n>', 'mDNS UDP port (default 5353)');
}

export function mdnsOptions(f: DiscoveryFlags): Pick<DirectoryOptions, 'interface' | 'mdnsPort'> {
  if (f.mdnsInterface !== undefined && !/^\d{1,3}(\.\d{1,3}){3}$/.test(f.mdnsInterface))
    throw usage(`--mdns-interface is an IPv4 address, not ${JSON.stringify(f.mdnsInterface)}`);
  const port = portOption(f.mdnsPort, 'mdns-port', 1);
  if (port !== undefined && port > 65535) throw usage('--mdns-port must be at most 65535');
  return {
    ...(f.mdnsInterface ? { interface: f.mdnsInterface } : {}),
    ...(port !== undefined ? { mdnsPort: port } : {}),
  };
}

export function directoryOptions(f: DiscoveryFlags): DirectoryOptions {
  return { discover: Boolean(f.discover), peers: f.peer ?? [], ...mdnsOptions(f) };
}

interface PeersFlags extends DiscoveryFlags {
  wait?: string;
  json?: boolean;
}

export function register(program: Command): void {
  const cmd = discoveryFlags(
    program
      .command('peers')
      .description('list the xpkg serve peers split inference can offload to: found by mDNS or given')
      .option('--wait <ms>', 'listen this long before listing (default 3000)')
      .option('--json', 'print the peers as JSON'),
  );
  action<[], PeersFlags>(cmd, async (io, f) => {
    const wait = msOption(f.wait, 'wait', 0) ?? 3000;
    const { createPeerDirectory } = await import('../../fabric/discovery/index.js');
    const dir = await createPeerDirectory({
      ...directoryOptions(f),
      log: { info: () => {}, warn: (obj, msg) => io.log(`${msg}: ${JSON.stringify(obj)}`) },
    });
    await new Promise((r) => setTimeout(r, wait));
    const peers: PeerInfo[] = dir.list().map(({ profile: _, ...p }) => p);
    await dir.close();
    const human = peers.length
      ? peers
          .map(
            (p) =>
              `${p.id}  ${p.url}  ${p.host.cpu}${p.host.accelerators.length ? ` ${p.host.accelerators.join(',')}` : ''}  free ${p.free}  ${p.packages.length} package(s)`,
          )
          .join('\n')
      : 'no peers found';
    return { result: { peers }, human };
  });
}
