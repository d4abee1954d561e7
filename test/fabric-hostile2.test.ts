/**
 * A second red-team sweep of the fabric (loopback only, bounded): a stranger who announced relays a
 * device's calls to a real peer and changes the tensors either way; a peer with the token answering
 * tensors of another type or shape than the tail declares; a peer's error answer that
 * never ends; a replay once the peer's nonce memory is full; and discovery answers that are spoofed
 * (an address that is the device itself, a goodbye for a live peer) or name a peer with control
 * characters. Each ends in a code or a fallback, and the next call works.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import makeMdns from 'multicast-dns';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CallVerifier, callAuthorization, newNonce } from '../fabric/auth.js';
import { HttpOffloader } from '../fabric/client.js';
import { Announcer, createPeerDirectory, encodeTxt, hostSummaryOf, packagesDigest } from '../fabric/discovery/index.js';
import { StaticPeers } from '../fabric/peers.js';
import { encodeV2 } from '../fabric/v2-binary.js';
import { loadHostProfile } from '../runner/host-profile.js';
import type { Tensor } from '../runner/types.js';
import type { FabricError } from '../spec/errors.js';
import { device, LOW, PEER_HOST, PKG, placement, repoWith, TOKEN } from './helpers/fabric.js';
import { answerHeaders } from './helpers/fabric-sign.js';
import { type TestServer, testServer, until } from './helpers/serve.js';
import { flipNearEnd, tamperRelay } from './helpers/tamper-relay.js';

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((ok) => s.close(ok) && s.closeAllConnections())));
});

async function listen(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<number> {
  const s = createServer(handle);
  servers.push(s);
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  return (s.address() as AddressInfo).port;
}

describe('a relay between the device and a real peer', () => {
  let peer: TestServer;
  beforeAll(async () => {
    peer = await testServer({
      repo: await repoWith(PKG),
      fabricToken: TOKEN,
      isolation: 'thread',
      runner: { trust: ['fixtures/keys/test.pub'], host: PEER_HOST },
    });
  }, 60_000);
  afterAll(() => peer?.close());

  it('an answer changed on the way back is E_FABRIC_AUTH: the device runs the tail itself, then the peer directly', async () => {
    const relay = await tamperRelay(peer.url, { answer: flipNearEnd });
    try {
      await using d = await device([relay.url]);
      const p = placement(await d.run({ image: LOW }));
      expect(relay.statuses).toEqual([200]); // the real peer answered; only the relay changed it
      expect(p.decision.fallback?.code).toBe('E_FABRIC_AUTH');
      expect(p.tail.where).toBe('local');
    } finally {
      await relay.close();
    }
    await using direct = await device([peer.url]);
    expect(placement(await direct.run({ image: LOW })).tail.where).toBe(new URL(peer.url).host);
  }, 60_000);

  it('inputs changed on the way there are refused by the peer (E_FABRIC_AUTH), never run for the device', async () => {
    const relay = await tamperRelay(peer.url, { request: flipNearEnd });
    try {
      await using d = await device([relay.url]);
      const p = placement(await d.run({ image: LOW }));
      expect(relay.statuses).toEqual([401]);
      expect(p.decision.fallback?.code).toBe('E_FABRIC_AUTH');
      expect(p.tail.where).toBe('local');
    } finally {
      await relay.close();
    }
  }, 60_000);
});

describe('a peer that holds the token but answers the wrong tensors', () => {
  it.each([
    ['another element type', { type: 'int8', dims: [1, 2100, 8], data: new Int8Array(2100 * 8) }],
    ['another rank', { type: 'float32', dims: [1, 3], data: new Float32Array(3) }],
    ['another fixed dim', { type: 'float32', dims: [1, 2100, 9], data: new Float32Array(2100 * 9) }],
  ] as [string, Tensor][])(
    '%s under the right name: E_FABRIC_MESSAGE, and the tail runs here',
    async (_what, t) => {
      const port = await listen((req, res) => {
        req.resume();
        const { body, headerLength } = encodeV2({}, 'outputs', { output: t });
        res.writeHead(200, {
          'content-type': 'application/octet-stream',
          ...answerHeaders(req, TOKEN, headerLength, body),
        });
        res.end(body);
      });
      await using d = await device([`http://127.0.0.1:${port}`]);
      const p = placement(await d.run({ image: LOW }));
      expect(p.decision.fallback?.code).toBe('E_FABRIC_MESSAGE');
      expect(p.tail.where).toBe('local');
    },
    60_000,
  );
});

describe("a peer's error answer", () => {
  it('an error whose body never ends is E_FABRIC_PEER with its status, not read to the deadline', async () => {
    const port = await listen((req, res) => {
      req.resume();
      res.writeHead(500, { 'content-type': 'application/json' });
      res.write(`{"code":"E_FABRIC_AUTH","error":"${'x'.repeat(80 * 1024)}`); // then nothing, ever
    });
    const off = new HttpOffloader({ peers: new StaticPeers([`http://127.0.0.1:${port}`]), token: TOKEN });
    const x: Tensor = { type: 'float32', dims: [1], data: new Float32Array(1) };
    const err = (await off
      .run({ packageId: 'a'.repeat(64), model: 'm', inputs: { x }, deadline: Date.now() + 5000 })
      .catch((e: unknown) => e)) as FabricError;
    expect(err.code).toBe('E_FABRIC_PEER');
    expect(err.detail).toMatchObject({ status: 500 });
  });
});

describe('replayed calls', () => {
  it('a call whose nonce the peer had to forget (its memory full) is still refused as a replay', () => {
    const v = new CallVerifier(TOKEN, 2);
    const path = `/v2/fabric/packages/${'a'.repeat(64)}/models/m/tail/infer`;
    const now = Date.now();
    const calls = [0, 1, 2].map((i) => callAuthorization(TOKEN, newNonce(), 'POST', path, now - 3000 + i));
    for (const c of calls) expect(v.verify(c, 'POST', path, now)).toBe(true);
    // the first call's nonce was forgotten to make room, well inside the clock window
    expect(v.verify(calls[0], 'POST', path, now)).toBe(false);
    expect(v.verify(calls[2], 'POST', path, now)).toBe(false);
    // a fresh call still passes
    expect(v.verify(callAuthorization(TOKEN, newNonce(), 'POST', path, now), 'POST', path, now)).toBe(true);
  });
});

const MDNS_PORT = 20_000 + Math.floor(Math.random() * 20_000);
const LOOPBACK = { interface: '127.0.0.1', mdnsPort: MDNS_PORT };
const profile = loadHostProfile(JSON.parse(readFileSync('fixtures/hosts/x64-avx2.json', 'utf8')));
const host = hostSummaryOf(profile, []);
const docOf = (name: string) => ({
  format: 'xpkg-peer/1',
  name,
  host,
  profile,
  packages: [],
  free: 1,
  digest: packagesDigest([]),
});

/** A document server on loopback; `asked` counts its requests. */
async function docServer(name: string): Promise<{ port: number; asked: () => number }> {
  let n = 0;
  const port = await listen((_q, s) => {
    n++;
    s.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(docOf(name)));
  });
  return { port, asked: () => n };
}

async function hostileMdns() {
  const m = makeMdns({ interface: '127.0.0.1', port: MDNS_PORT, ip: '224.0.0.251', bind: '224.0.0.251' });
  await new Promise((r) => m.once('ready', r));
  return m;
}

function records(name: string, port: number, address: string, ttl = 60) {
  const fqdn = `${name}._xpkg._tcp.local`;
  return [
    { name: '_xpkg._tcp.local', type: 'PTR' as const, ttl, data: fqdn },
    { name: fqdn, type: 'SRV' as const, ttl, data: { port, target: `${name}.local`, priority: 0, weight: 0 } },
    { name: fqdn, type: 'TXT' as const, ttl, data: encodeTxt({ host, packages: [], free: 1 }) },
    { name: `${name}.local`, type: 'A' as const, ttl, data: address },
  ];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('discovery: spoofed and malformed answers', () => {
  it('a peer whose document names it with control or format characters is not listed', async () => {
    for (const name of ['evil\u001b[2J', 'a\u202Egpj.exe', 'line\nbreak']) {
      const doc = await docServer(name);
      const reasons: unknown[] = [];
      const dir = await createPeerDirectory({
        peers: [`http://127.0.0.1:${doc.port}`],
        tickMs: 100,
        log: { info: () => {}, warn: (o) => reasons.push(o.reason) },
      });
      try {
        await until(() => doc.asked() > 0 && reasons.length > 0, 5000, 'the document read');
        expect(dir.list()).toEqual([]);
        expect(reasons).toContain('name');
      } finally {
        await dir.close();
      }
    }
  });

  it('an announcement whose address is 0.0.0.0 (the device itself) is ignored, and its port never called', async () => {
    const doc = await docServer('zero-peer');
    const dir = await createPeerDirectory({ discover: true, ...LOOPBACK, tickMs: 100 });
    const m = await hostileMdns();
    const good = await docServer('good-peer');
    try {
      for (let i = 0; i < 3; i++) {
        m.respond({ answers: records('zero-peer', doc.port, '0.0.0.0') });
        m.respond({ answers: records('good-peer', good.port, '127.0.0.1') });
        await sleep(200);
      }
      // the good announcement, sent alongside, is how long the bad one had to be acted on
      await until(() => dir.list().some((p) => p.id === 'good-peer'), 5000, 'the good peer');
      await sleep(300);
      expect(dir.list().map((p) => p.id)).toEqual(['good-peer']);
      expect(doc.asked()).toBe(0);
    } finally {
      await new Promise<void>((r) => m.destroy(() => r()));
      await dir.close();
    }
  });

  it("the directory's headers (a bearer token) go to peers given by URL, never to an announced address", async () => {
    const seen: { port: number; auth?: string }[] = [];
    const server = async (name: string) => {
      const port: number = await listen((q, s) => {
        seen.push({ port, auth: q.headers.authorization });
        s.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(docOf(name)));
      });
      return port;
    };
    const given = await server('given-peer');
    const announced = await server('announced-peer');
    const dir = await createPeerDirectory({
      discover: true,
      ...LOOPBACK,
      peers: [`http://127.0.0.1:${given}`],
      tickMs: 100,
      headers: { authorization: 'Bearer secret' },
    });
    const m = await hostileMdns();
    try {
      for (let i = 0; i < 3; i++) {
        m.respond({ answers: records('announced-peer', announced, '127.0.0.1') });
        await sleep(200);
      }
      await until(
        () => seen.some((x) => x.port === announced) && seen.some((x) => x.port === given),
        5000,
        'both read',
      );
      expect(seen.filter((x) => x.port === given).every((x) => x.auth === 'Bearer secret')).toBe(true);
      expect(seen.filter((x) => x.port === announced).map((x) => x.auth)).not.toContain('Bearer secret');
    } finally {
      await new Promise<void>((r) => m.destroy(() => r()));
      await dir.close();
    }
  });

  it("a spoofed goodbye for a live peer does not remove it; the peer's own goodbye does", async () => {
    const doc = await docServer('live-peer');
    const dir = await createPeerDirectory({ discover: true, ...LOOPBACK, tickMs: 100 });
    const announcer = await Announcer.start(
      { ...LOOPBACK, name: 'live-peer', port: doc.port, addresses: ['127.0.0.1'], ttlSec: 60 },
      encodeTxt({ host, packages: [], free: 1 }),
    );
    const m = await hostileMdns();
    try {
      await until(() => dir.list().some((p) => p.id === 'live-peer'), 5000, 'the live peer');
      await sleep(1500); // past the directory's second question at start, which would bring the peer back anyway
      m.respond({ answers: records('live-peer', doc.port, '127.0.0.1', 0) });
      await sleep(2500); // bounded: the goodbye's grace is 1 s
      expect(dir.list().map((p) => p.id)).toEqual(['live-peer']);
      await announcer.close();
      await until(() => dir.list().length === 0, 5000, 'the peer gone after its own goodbye');
    } finally {
      await announcer.close();
      await new Promise<void>((r) => m.destroy(() => r()));
      await dir.close();
    }
  }, 20_000);
});
