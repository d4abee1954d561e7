/**
 * Discovery under a flood (loopback mDNS on a port of its own, a hostile sender this test controls):
 * more bogus instances than the directory holds, each with a different malformed TXT record, must
 * neither keep a real peer out nor grow the log without end; garbage packets are logged a bounded
 * number of times; a peer both announced and given by URL is asked once per call.
 */
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import makeMdns from 'multicast-dns';
import { describe, expect, it } from 'vitest';
import { HttpOffloader } from '../fabric/client.js';
import { Announcer, createPeerDirectory, encodeTxt, hostSummaryOf, packagesDigest } from '../fabric/discovery/index.js';
import { loadHostProfile } from '../runner/host-profile.js';
import type { Tensor } from '../runner/types.js';
import { until } from './helpers/serve.js';

const MDNS_PORT = 20_000 + Math.floor(Math.random() * 20_000);
const LOOPBACK = { interface: '127.0.0.1', mdnsPort: MDNS_PORT };

describe('discovery: floods and duplicates', () => {
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

  it('a peer both announced and given by URL is one peer: a failing call asks it once', async () => {
    const profile = loadHostProfile(JSON.parse(readFileSync('fixtures/hosts/x64-avx2.json', 'utf8')));
    const host = hostSummaryOf(profile, ['onnxruntime']);
    const id = 'b'.repeat(64);
    const doc = {
      format: 'xpkg-peer/1',
      name: 'twice',
      host,
      profile,
      packages: [{ id, name: 'p', sequence: 1 }],
      free: 1,
      digest: packagesDigest([id]),
    };
    let posts = 0;
    const http = createServer((q, s) => {
      if (q.method === 'POST') {
        posts++;
        q.resume();
        return s.writeHead(500).end();
      }
      s.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
    });
    await new Promise<void>((ok) => http.listen(0, '127.0.0.1', ok));
    const port = (http.address() as AddressInfo).port;
    const url = `http://127.0.0.1:${port}`;
    const dir = await createPeerDirectory({ discover: true, peers: [url], ...LOOPBACK, downMs: 60_000 });
    const announcer = await Announcer.start(
      { ...LOOPBACK, name: 'twice', port, addresses: ['127.0.0.1'], ttlSec: 60 },
      encodeTxt({ host, packages: [id], free: 1 }),
    );
    try {
      await until(() => dir.list().length === 2, 5000, 'the peer announced and given');
      // the directory cannot mark the peer down between tries: the client alone must not repeat it
      const peers = { list: () => dir.list(), onChange: () => () => {}, close: async () => {} };
      const off = new HttpOffloader({ peers, token: 'test-fabric-token-0123456789abcdef' });
      const x: Tensor = { type: 'float32', dims: [1], data: new Float32Array(1) };
      await expect(
        off.run({ packageId: id, model: 'm', inputs: { x }, deadline: Date.now() + 3000 }),
      ).rejects.toMatchObject({
        code: 'E_FABRIC_PEER',
      });
      expect(posts).toBe(1);
    } finally {
      await announcer.close();
      http.close();
      await dir.close();
    }
  });

  it("a busy peer (429, Retry-After: 1) is left out for its Retry-After, not the directory's down time", async () => {
    const profile = loadHostProfile(JSON.parse(readFileSync('fixtures/hosts/x64-avx2.json', 'utf8')));
    const host = hostSummaryOf(profile, ['onnxruntime']);
    const id = 'c'.repeat(64);
    const doc = {
      format: 'xpkg-peer/1',
      name: 'busy',
      host,
      profile,
      packages: [{ id, name: 'p', sequence: 1 }],
      free: 1,
      digest: packagesDigest([id]),
    };
    const http = createServer((q, s) => {
      q.resume();
      if (q.method === 'POST')
        return s
          .writeHead(429, { 'retry-after': '1', 'content-type': 'application/json' })
          .end('{"code":"E_SERVE_BUSY"}');
      s.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
    });
    await new Promise<void>((ok) => http.listen(0, '127.0.0.1', ok));
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    const dir = await createPeerDirectory({ peers: [url], tickMs: 100, downMs: 60_000 });
    try {
      await until(() => dir.list().length === 1, 3000, 'the static peer');
      const off = new HttpOffloader({ peers: dir, token: 'test-fabric-token-0123456789abcdef' });
      const x: Tensor = { type: 'float32', dims: [1], data: new Float32Array(1) };
      await expect(
        off.run({ packageId: id, model: 'm', inputs: { x }, deadline: Date.now() + 3000 }),
      ).rejects.toMatchObject({
        code: 'E_FABRIC_PEER',
      });
      expect(dir.list()).toEqual([]);
      await until(() => dir.list().length === 1, 3000, 'the peer back after its Retry-After');
    } finally {
      http.close();
      await dir.close();
    }
  });
});
