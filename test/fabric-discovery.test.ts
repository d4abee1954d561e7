/**
 * Discovery with real daemons: `xpkg serve --announce` processes (dist/) on loopback with injected
 * host profiles, a device-side MdnsPeerDirectory on the same loopback-only mDNS group (on a port of
 * its own, so parallel runs never hear each other). Peers come with their package ids, profile and
 * capacity; a package dropped in is re-announced; malformed announcements are ignored with a logged
 * reason; a graceful stop says goodbye and a SIGKILLed peer is forgotten when its TTL runs out.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import makeMdns from 'multicast-dns';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PeerInfo } from '../fabric/contract.js';
import { Announcer, createPeerDirectory, encodeTxt, type MdnsPeerDirectory } from '../fabric/discovery/index.js';
import { pickPeer } from '../fabric/route.js';
import { EXIT } from '../spec/errors.js';
import type { Manifest } from '../spec/schema.js';
import { xpkgAsync } from './helpers/cli.js';
import { dropIn, idOf, testServer, until, versionedPackage } from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

const MDNS_PORT = 20_000 + Math.floor(Math.random() * 20_000);
const LOOPBACK = { interface: '127.0.0.1', mdnsPort: MDNS_PORT };
const PKG = 'fixtures/dist/multi-variant.xpkg';

interface Daemon {
  child: ChildProcess;
  lines: Record<string, any>[];
  repo: string;
}

/** SIGKILL to the daemon's own process (it logs its pid), not to the launcher that started it. */
function killDaemon(d: Daemon): void {
  const pid = d.lines.find((l) => l.msg === 'listening')?.pid;
  try {
    if (pid) process.kill(pid, 'SIGKILL');
  } catch {}
}

function announce(name: string, hostFile: string, ttlSec: number): Daemon {
  const repo = tempDir('xpkg-peer-repo-');
  const child = spawn(
    process.execPath,
    [
      resolve('bin/xpkg.js'),
      'serve',
      ...['--repo', repo, '--port', '0', '--trust', 'fixtures/keys/test.pub', '--state-dir', tempDir()],
      ...['--host-profile', `fixtures/hosts/${hostFile}.json`, '--log-format', 'json', '--poll', '100'],
      ...['--announce', '--announce-name', name, '--announce-ttl', String(ttlSec)],
      ...['--mdns-interface', '127.0.0.1', '--mdns-port', String(MDNS_PORT)],
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const d: Daemon = { child, lines: [], repo };
  let buf = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    buf += s;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      d.lines.push(line.startsWith('{') ? JSON.parse(line) : { text: line });
    }
  });
  return d;
}

describe('peer discovery over mDNS (loopback, real daemons)', () => {
  let a: Daemon;
  let b: Daemon;
  let dir: MdnsPeerDirectory;
  const logged: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
  const changes: PeerInfo[][] = [];
  let id: string;
  const byId = (name: string) => dir.list().find((p) => p.id === name);

  beforeAll(async () => {
    id = await idOf(PKG);
    // the device listens first, so it hears the daemons' first announcements (and asks again besides)
    dir = await createPeerDirectory({
      discover: true,
      ...LOOPBACK,
      tickMs: 100,
      downMs: 1500,
      log: {
        info: (obj, msg) => logged.push({ level: 'info', obj, msg }),
        warn: (obj, msg) => logged.push({ level: 'warn', obj, msg }),
      },
    });
    dir.onChange((peers) => changes.push(peers));
    // a: generic AVX2 box, long TTL (its disappearance must come from the goodbye); b: AVX-512 VNNI, TTL 2 s
    a = announce('peer-a', 'x64-avx2', 120);
    b = announce('peer-b', 'x64-avx512-vnni', 2);
    await Promise.all([copyFile(PKG, join(a.repo, 'm.xpkg')), copyFile(PKG, join(b.repo, 'm.xpkg'))]);
  }, 30_000);

  afterAll(async () => {
    for (const d of [a, b]) if (d && d.child.exitCode === null && d.child.signalCode === null) d.child.kill('SIGKILL');
    for (const d of [a, b]) if (d) killDaemon(d);
    await dir?.close();
  });

  it('sees the peers come, with their package ids, host profile and free slots, and picks the one with the best variant', async () => {
    await until(
      () => dir.list().length === 2 && dir.list().every((p) => p.packages.length === 1),
      40_000,
      'both peers',
    );
    const [pa, pb] = [byId('peer-a')!, byId('peer-b')!];
    expect(pa.packages).toEqual([id]);
    expect(pb.packages).toEqual([id]);
    expect(pa.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(pa.url).toBe(a.lines.find((l) => l.msg === 'listening')?.url);
    expect(pa.host).toEqual({ cpu: 'x64', accelerators: [], runtimes: ['onnxruntime'] });
    expect(pb.profile?.cpu.features).toContain('avx512_vnni');
    expect(pa.profile?.cpu.features).not.toContain('avx512_vnni');
    expect(pa.free).toBe(4); // --concurrency default, nothing running
    expect(changes.at(-1)?.map((p) => p.id)).toEqual(['peer-a', 'peer-b']);
    // the tail of the multi-variant package runs best as its VNNI int8 build: peer-b
    const manifest = JSON.parse(readFileSync('fixtures/multi-variant/xpkg.json', 'utf8')) as Manifest;
    const choice = pickPeer(dir.list(), { packageId: id, model: manifest.models[0] });
    expect([choice?.peer.id, choice?.variant]).toEqual(['peer-b', 'cpu-int8-vnni']);

    // a daemon as the device (serve's discover option) sees them too, and stops browsing when closed
    const device = await testServer({ repo: tempDir(), discover: { discover: true, ...LOOPBACK } });
    try {
      await until(() => device.peers?.list().length === 2, 15_000, "the device daemon's peers");
      expect(device.peers!.list().map((p) => p.id)).toEqual(['peer-a', 'peer-b']);
    } finally {
      await device.close();
    }

    // a static peer list reads the same document, without mDNS; a bad URL is a configuration error
    const fixed = await createPeerDirectory({ peers: [pa.url] });
    try {
      await until(() => fixed.list().length === 1, 10_000, 'the static peer');
      expect(fixed.list()[0]).toMatchObject({ id: 'peer-a', url: pa.url, packages: [id], free: 4 });
    } finally {
      await fixed.close();
    }
    await expect(createPeerDirectory({ peers: ['ftp://127.0.0.1:1'] })).rejects.toMatchObject({
      code: 'E_FABRIC_CONFIG',
    });
    await expect(createPeerDirectory({})).rejects.toMatchObject({ code: 'E_FABRIC_CONFIG' });

    // the CLI lists the same peers
    const cli = await xpkgAsync([
      'peers',
      '--discover',
      '--mdns-interface',
      '127.0.0.1',
      '--mdns-port',
      String(MDNS_PORT),
      '--wait',
      '1500',
      '--json',
    ]);
    expect(cli.status).toBe(0);
    expect(cli.json?.result.peers.map((p: PeerInfo) => [p.id, p.packages])).toEqual([
      ['peer-a', [id]],
      ['peer-b', [id]],
    ]);
  }, 60_000);

  it('hears a re-announcement when a package is added; a peer marked down is left out, then listed again', async () => {
    const other = await versionedPackage({ sequence: 7, k: 3, name: 'another-model' });
    const otherId = await idOf(other);
    await dropIn(other, a.repo, 'another.xpkg');
    await until(() => byId('peer-a')?.packages.length === 2, 30_000, 'the second package announced');
    expect(byId('peer-a')!.packages).toEqual([id, otherId].sort());
    dir.markDown('peer-a', 'a call failed');
    expect(byId('peer-a')).toBeUndefined();
    expect(changes.at(-1)?.map((p) => p.id)).toEqual(['peer-b']);
    // downMs (1.5 s here) later its announcements are heard again and its document read anew
    await until(() => byId('peer-a') !== undefined, 15_000, 'peer-a listed again');
  }, 40_000);

  it('ignores malformed announcements and undecodable packets with a logged reason, and keeps working', async () => {
    const m = makeMdns({ interface: '127.0.0.1', port: MDNS_PORT, ip: '224.0.0.251', bind: '224.0.0.251' });
    await new Promise((r) => m.once('ready', r));
    const good = encodeTxt({ host: { cpu: 'x64', accelerators: [], runtimes: [] }, packages: [id], free: 1 });
    const bad = (name: string, txt: (Buffer | string)[], port = 9) => [
      { name: '_xpkg._tcp.local', type: 'PTR' as const, ttl: 5, data: `${name}._xpkg._tcp.local` },
      { name: `${name}._xpkg._tcp.local`, type: 'SRV' as const, ttl: 5, data: { port, target: `${name}.local` } },
      { name: `${name}._xpkg._tcp.local`, type: 'TXT' as const, ttl: 5, data: txt },
      { name: `${name}.local`, type: 'A' as const, ttl: 5, data: '127.0.0.1' },
    ];
    m.respond({ answers: bad('bad-version', ['v=99', 'cpu=x64']) });
    m.respond({
      answers: bad(
        'bad-id',
        good.map((s) => (String(s).startsWith('p0=') ? 'p0=zz' : s)),
      ),
    });
    m.respond({
      answers: bad(
        'bad-free',
        good.map((s) => (String(s).startsWith('free=') ? 'free=-3' : s)),
      ),
    });
    // well-formed, but nothing answers at its address: the document fetch fails and it is never listed
    m.respond({ answers: bad('nobody-home', good, 1) });
    // bytes that are no DNS message at all, straight to the group
    const raw = createSocket('udp4');
    await new Promise<void>((r) => raw.bind(0, '127.0.0.1', () => r()));
    raw.setMulticastInterface('127.0.0.1');
    await new Promise<void>((r) => raw.send(Buffer.from([1, 2, 3, 0xff, 0xff]), MDNS_PORT, '224.0.0.251', () => r()));
    raw.close();
    const reasons = () =>
      Object.fromEntries(
        logged.filter((l) => l.msg === 'ignored a peer announcement').map((l) => [l.obj.peer, String(l.obj.reason)]),
      );
    await until(() => Object.keys(reasons()).length >= 4, 15_000, 'four ignored announcements');
    expect(reasons()['bad-version']).toMatch(/version/);
    expect(reasons()['bad-id']).toMatch(/p0/);
    expect(reasons()['bad-free']).toMatch(/free/);
    expect(reasons()['nobody-home']).toMatch(/\/v2\/xpkg\/peer/);
    expect(logged.some((l) => l.msg === 'mDNS warning')).toBe(true);
    await new Promise<void>((r) => m.destroy(() => r()));
    // still working: peer-b (TTL 2 s) stayed listed only because its answers kept being read meanwhile
    expect(dir.list().map((p) => p.id)).toEqual(['peer-a', 'peer-b']);
  }, 30_000);

  it('forgets a peer that says goodbye at once, and a SIGKILLed one when its TTL runs out', async () => {
    // peer-a's TTL is 120 s: gone within seconds means the goodbye did it
    a.child.kill('SIGTERM');
    await until(() => byId('peer-a') === undefined, 10_000, 'peer-a gone');
    expect(logged.find((l) => l.msg === 'peer gone' && l.obj.peer === 'peer-a')?.obj.reason).toBe('goodbye');
    await until(() => a.child.exitCode !== null, 20_000, 'peer-a stopped');
    expect(a.lines.some((l) => l.msg === 'announcement withdrawn')).toBe(true);
    expect(byId('peer-b')).toBeDefined();
    // the daemon itself (its launcher, cli/relaunch.ts, would stop it gracefully, with a goodbye)
    killDaemon(b);
    const t0 = Date.now();
    await until(() => byId('peer-b') === undefined, 15_000, 'peer-b forgotten');
    expect(logged.find((l) => l.msg === 'peer gone' && l.obj.peer === 'peer-b')?.obj.reason).toBe('TTL ran out');
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(dir.list()).toEqual([]);
  }, 45_000);

  it('refuses an announce name that is not one DNS label with E_FABRIC_CONFIG', async () => {
    const r = await xpkgAsync(['serve', '--repo', tempDir(), '--announce', '--announce-name', 'a.b', '--json']);
    expect(r.status).toBe(EXIT.fabric);
    expect(r.json?.error?.code).toBe('E_FABRIC_CONFIG');
  }, 20_000);
});

describe('announcer', () => {
  it('re-announces a changed TXT (capacity) at most once per minIntervalMs, ending on the latest value', async () => {
    const port = MDNS_PORT + 1;
    const heard: number[] = [];
    const m = makeMdns({ interface: '127.0.0.1', port, ip: '224.0.0.251', bind: '224.0.0.251' });
    m.on('response', (p) => {
      for (const r of p.answers)
        if (r.type === 'TXT' && r.name === 'rl._xpkg._tcp.local' && r.ttl) {
          const free = ([] as Buffer[]).concat(r.data as Buffer[]).find((b) => String(b).startsWith('free='));
          heard.push(Number(String(free).slice(5)));
        }
    });
    await new Promise((r) => m.once('ready', r));
    const host = { cpu: 'x64', accelerators: [], runtimes: [] };
    const txt = (free: number) => encodeTxt({ host, packages: [], free });
    const a = await Announcer.start(
      { name: 'rl', port: 1, addresses: ['127.0.0.1'], interface: '127.0.0.1', mdnsPort: port, minIntervalMs: 400 },
      txt(0),
    );
    try {
      // 40 capacity changes over ~1.2 s
      for (let free = 1; free <= 40; free++) {
        a.update(txt(free));
        await new Promise((r) => setTimeout(r, 30));
      }
      await until(() => heard.at(-1) === 40, 5_000, 'the last capacity announced');
      // start (free 0, twice: RFC 6762 §8.3) plus rate-limited updates: a handful, never one per change
      expect(heard.length).toBeLessThanOrEqual(10);
      expect(heard.filter((f) => f > 0).length).toBeGreaterThanOrEqual(2);
      const before = heard.length;
      a.update(txt(40)); // unchanged: nothing sent
      await new Promise((r) => setTimeout(r, 600));
      expect(heard.length).toBe(before);
    } finally {
      await a.close();
      await new Promise<void>((r) => m.destroy(() => r()));
    }
  }, 20_000);
});
