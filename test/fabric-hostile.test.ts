/**
 * Hostile peers on loopback (plain `node:http` servers this test controls): what the device's
 * offload client and document fetch do with answers a real peer never gives — codes outside the
 * closed union, bodies without end, redirects to another origin, a 200 without the proof, odd
 * variant names, outputs under other names — that the token itself never reaches a peer, and which
 * peer URLs are refused.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { NONCE_HEADER, PROOF_HEADER, proofOf } from '../fabric/auth.js';
import { HttpOffloader } from '../fabric/client.js';
import { createPeerDirectory } from '../fabric/discovery/index.js';
import { fetchPeerDocument } from '../fabric/discovery/peer-doc.js';
import { StaticPeers } from '../fabric/peers.js';
import { encodeV2 } from '../fabric/v2-binary.js';
import type { Tensor } from '../runner/types.js';
import { FabricError } from '../spec/errors.js';
import { device, LOW, placement, TOKEN } from './helpers/fabric.js';
import { answerHeaders } from './helpers/fabric-sign.js';

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((ok) => s.close(ok) && s.closeAllConnections())));
});

async function hostile(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const s = createServer(handle);
  servers.push(s);
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

const ID = 'a'.repeat(64);
const inputs: Record<string, Tensor> = { x: { type: 'float32', dims: [1], data: new Float32Array([1]) } };

async function offload(url: string, ms = 3000, o: { maxAnswerBytes?: number } = {}) {
  const off = new HttpOffloader({ peers: new StaticPeers([url]), token: TOKEN, ...o });
  const t0 = performance.now();
  const err = await off.run({ packageId: ID, model: 'm', inputs, deadline: Date.now() + ms }).then(
    () => undefined,
    (e: unknown) => e,
  );
  return { err: err as FabricError, ms: performance.now() - t0 };
}

describe('hostile peers: the offload call', () => {
  it('a code outside the fabric codes a peer may send is E_FABRIC_PEER', async () => {
    for (const code of ['E_FABRIC_BOGUS', 'E_FABRIC_CONFIG', 'E_INTERNAL']) {
      const url = await hostile((req, res) => {
        req.resume();
        res
          .writeHead(500, { 'content-type': 'application/json' })
          .end(JSON.stringify({ code, error: 'x\n'.repeat(1e4) }));
      });
      const { err } = await offload(url);
      expect(err).toBeInstanceOf(FabricError);
      expect(err.code).toBe('E_FABRIC_PEER');
      expect(err.message.length).toBeLessThan(1000);
    }
  });

  it('an answer larger than the cap is E_FABRIC_MESSAGE at once, not read to the deadline', async () => {
    const url = await hostile((req, res) => {
      req.resume();
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        [PROOF_HEADER]: proofOf(TOKEN, String(req.headers[NONCE_HEADER])),
      });
      const chunk = Buffer.alloc(64 * 1024);
      let sent = 0;
      // 8 MiB, then the connection stays open: a client without a cap waits for the rest
      const more = () => {
        while (sent < 8 << 20 && res.write(chunk)) sent += chunk.length;
        if (sent < 8 << 20) res.once('drain', more);
      };
      more();
    });
    const { err, ms } = await offload(url, 4000, { maxAnswerBytes: 1 << 20 });
    expect(err.code).toBe('E_FABRIC_MESSAGE');
    expect(ms).toBeLessThan(2000);
  });

  it('a 200 without the proof is E_FABRIC_AUTH before its body is read', async () => {
    const url = await hostile((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write(Buffer.alloc(1024)); // then nothing: a client reading the body waits for the deadline
    });
    const { err, ms } = await offload(url, 3000);
    expect(err.code).toBe('E_FABRIC_AUTH');
    expect(ms).toBeLessThan(1500);
  });

  it("a peer's variant and provider names reach the result only as short printable ids", async () => {
    const url = await hostile((req, res) => {
      req.resume();
      const params = { variant: `v\n${'x'.repeat(100_000)}`, provider: { nested: true } };
      const { body, headerLength } = encodeV2({ parameters: params }, 'outputs', inputs);
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        ...answerHeaders(req, TOKEN, headerLength, body),
      });
      res.end(body);
    });
    const off = new HttpOffloader({ peers: new StaticPeers([url]), token: TOKEN });
    const a = await off.run({ packageId: ID, model: 'm', inputs, deadline: Date.now() + 3000 });
    expect([a.variant, a.provider]).toEqual(['', '']);
  });

  it('a redirect is a failed call: the request never goes to the other origin', async () => {
    const seen: string[] = [];
    const other = await hostile((req, res) => {
      seen.push(req.url ?? '');
      req.resume();
      res.writeHead(500).end();
    });
    const url = await hostile((req, res) => {
      req.resume();
      res.writeHead(307, { location: `${other}/steal` }).end();
    });
    const { err } = await offload(url);
    expect(err.code).toBe('E_FABRIC_PEER');
    expect(seen).toEqual([]);
  });
});

describe('hostile peers: the token', () => {
  it('a peer that is not one (anyone who announced) never receives the fabric token', async () => {
    const seen: string[] = [];
    const url = await hostile((req, res) => {
      seen.push(JSON.stringify(req.headers));
      req.resume();
      res.writeHead(500).end();
    });
    await offload(url);
    expect(seen.length).toBe(1);
    expect(seen[0]).not.toContain(TOKEN);
  });
});

describe('hostile peers: the peer document', () => {
  it('a document without end is refused at the size cap, not read to the timeout', async () => {
    const url = await hostile((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"format":"xpkg-peer/1","name":"');
      const chunk = Buffer.alloc(64 * 1024, 'a');
      let sent = 0;
      const more = () => {
        while (sent < 8 << 20 && res.write(chunk)) sent += chunk.length;
        if (sent < 8 << 20) res.once('drain', more);
      };
      more();
    });
    const t0 = performance.now();
    const doc = await fetchPeerDocument(url, { timeoutMs: 4000 });
    expect('reason' in doc).toBe(true);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('a document redirected to another origin is refused, and the headers never go there', async () => {
    const seen: (string | undefined)[] = [];
    const other = await hostile((req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(404).end();
    });
    const url = await hostile((_req, res) => {
      res.writeHead(302, { location: `${other}/v2/xpkg/peer` }).end();
    });
    const doc = await fetchPeerDocument(url, { timeoutMs: 2000, headers: { authorization: `Bearer ${TOKEN}` } });
    expect('reason' in doc).toBe(true);
    expect(seen).toEqual([]);
  });
});

describe('hostile peers: answers that hold the token but not the tail', () => {
  it('outputs under other names are E_FABRIC_MESSAGE and the device runs the tail itself', async () => {
    const url = await hostile((req, res) => {
      req.resume();
      const t: Tensor = { type: 'float32', dims: [1, 2], data: new Float32Array([1, 2]) };
      const { body, headerLength } = encodeV2({ parameters: {} }, 'outputs', { not_the_output: t });
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        ...answerHeaders(req, TOKEN, headerLength, body),
      });
      res.end(body);
    });
    await using d = await device([url]);
    const p = placement(await d.run({ image: LOW }));
    expect(p.decision.offload).toBe(true);
    expect(p.decision.fallback?.code).toBe('E_FABRIC_MESSAGE');
    expect(p.tail.where).toBe('local');
  });
});

describe('peer URLs', () => {
  const code = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return e as FabricError;
    }
  };

  it('credentials, a query or a fragment in a peer URL are E_FABRIC_CONFIG, and a password is never echoed', async () => {
    for (const raw of [
      'http://user:s3cretpw@127.0.0.1:1',
      'http://127.0.0.1:1?x=1',
      'http://127.0.0.1:1#x',
      'ftp://127.0.0.1:1',
    ]) {
      const e = code(() => new StaticPeers([raw]));
      expect(e?.code, raw).toBe('E_FABRIC_CONFIG');
      expect(JSON.stringify({ m: e?.message, d: e?.detail })).not.toContain('s3cretpw');
      const d = await createPeerDirectory({ peers: [raw] }).then(
        (dir) => dir.close().then(() => undefined),
        (x: FabricError) => x,
      );
      expect(d?.code, raw).toBe('E_FABRIC_CONFIG');
      expect(JSON.stringify({ m: d?.message, d: d?.detail })).not.toContain('s3cretpw');
    }
  });

  it('an IPv6 literal and a trailing slash are kept as the base URL', () => {
    expect(new StaticPeers(['http://[::1]:8080/']).list()[0]).toMatchObject({
      id: '[::1]:8080',
      url: 'http://[::1]:8080',
    });
  });
});
