/**
 * Discovery under a flood (loopback mDNS on a port of its own, a hostile sender this test controls):
 * more bogus instances than the directory holds, each with a different malformed TXT record, must
 * neither keep a real peer out nor grow the log without end.
 */
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import makeMdns from 'multicast-dns';
import { describe, expect, it } from 'vitest';
import { Announcer, createPeerDirectory, encodeTxt, hostSummaryOf, packagesDigest } from '../fabric/discovery/index.js';
import { loadHostProfile } from '../runner/host-profile.js';
import { until } from './helpers/serve.js';

const MDNS_PORT = 20_000 + Math.floor(Math.random() * 20_000);
const LOOPBACK = { interface: '127.0.0.1', mdnsPort: MDNS_PORT };

describe('discovery: a flood of bogus instances', () => {
  it('a real peer is still found after more bogus instances than the directory holds, and the log stays bounded', async () => {
    let warns = 0;
    const dir = await createPeerDirectory({
      discover: true,
      ...LOOPBACK,
      log: { info: () => {}, warn: () => void warns++ },
    });
    const m = makeMdns({ interface: '127.0.0.1', port: MDNS_PORT, ip: '224.0.0.251', bind: '224.0.0.251' });
    await new Promise((r) => m.once('ready', r));
    // a document server for the real peer
    const profile = loadHostProfile(JSON.parse(readFileSync('fixtures/hosts/x64-avx2.json', 'utf8')));
    const host = hostSummaryOf(profile, []);
    const doc = {
      format: 'xpkg-peer/1',
      name: 'real-peer',
      host,
      profile,
      packages: [],
      free: 1,
      digest: packagesDigest([]),
    };
    const http = createServer((_q, s) =>
      s.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc)),
    );
    await new Promise<void>((ok) => http.listen(0, '127.0.0.1', ok));
    let announcer: Announcer | undefined;
    try {
      for (let i = 0; i < 1200; i++) {
        const n = `bogus-${i}`;
        m.respond({
          answers: [
            { name: '_xpkg._tcp.local', type: 'PTR', ttl: 4500, data: `${n}._xpkg._tcp.local` },
            { name: `${n}._xpkg._tcp.local`, type: 'TXT', ttl: 4500, data: ['v=1', `cpu=bad cpu ${i}`] },
          ],
        });
        // paced: loopback drops datagrams that outrun the receiver
        if (i % 50 === 49) await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 300));
      const port = (http.address() as AddressInfo).port;
      announcer = await Announcer.start(
        { ...LOOPBACK, name: 'real-peer', port, addresses: ['127.0.0.1'], ttlSec: 60 },
        encodeTxt({ host, packages: [], free: 1 }),
      );
      await until(() => dir.list().some((p) => p.id === 'real-peer'), 5000, 'the real peer');
      expect(warns).toBeLessThan(300);
    } finally {
      await announcer?.close();
      await new Promise<void>((r) => m.destroy(() => r()));
      http.close();
      await dir.close();
    }
  });

  it('undecodable packets without end are logged a bounded number of times', async () => {
    let warns = 0;
    const dir = await createPeerDirectory({
      discover: true,
      ...LOOPBACK,
      log: { info: () => {}, warn: () => void warns++ },
    });
    const sock = createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    sock.setMulticastInterface('127.0.0.1');
    sock.setMulticastLoopback(true);
    try {
      for (let i = 0; i < 300; i++) {
        await new Promise((r) =>
          sock.send(Buffer.from([0, 0, 0x84, 0, 0, 1, 0, 0, 0xff, i & 0xff]), MDNS_PORT, '224.0.0.251', r),
        );
        if (i % 50 === 49) await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 300));
      expect(warns).toBeGreaterThan(0);
      expect(warns).toBeLessThan(30);
    } finally {
      sock.close();
      await dir.close();
    }
  });
});
