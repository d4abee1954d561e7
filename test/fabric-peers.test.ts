/**
 * Split inference: what a peer `xpkg serve` (the built CLI) refuses, and what a device refuses. A
 * peer holding another version of the package refuses the id; callers without the token are refused,
 * and a device refuses a peer that cannot prove it holds it; malformed cut tensors are a 400 that
 * leaves the peer's model as it was; a device with no variant of the tail fails with the code.
 */
import { createServer } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callAuthorization, newNonce } from '../fabric/auth.js';
import { HttpOffloader } from '../fabric/client.js';
import { StaticPeers } from '../fabric/peers.js';
import { encodeV2, HEADER_LENGTH } from '../fabric/v2-binary.js';
import { CUT } from '../fixtures/detector-split/build.js';
import { Runner } from '../runner/runner.js';
import type { Tensor } from '../runner/types.js';
import {
  DEVICE,
  device,
  HIGH,
  LOW,
  otherVersion,
  PEER_HOST,
  type Peer,
  PKG,
  placement,
  repoWith,
  startPeer,
  TOKEN,
} from './helpers/fabric.js';
import { http } from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

const peers: Peer[] = [];
let peer: Peer; // holds the fixture's version
let stranger: Peer; // holds another version of the same package
let local: Runner;

beforeAll(async () => {
  [peer, stranger] = await Promise.all([
    repoWith(PKG).then((repo) => startPeer({ repo, hostProfile: PEER_HOST })),
    otherVersion()
      .then(repoWith)
      .then((repo) => startPeer({ repo, hostProfile: PEER_HOST })),
  ]);
  peers.push(peer, stranger);
  local = await Runner.open(PKG, { trust: ['fixtures/keys/test.pub'], stateDir: tempDir(), host: DEVICE });
});

afterAll(async () => {
  await local?.close();
  await Promise.all(peers.map((p) => p.stop()));
});

describe('split inference: refusals', () => {
  it('a peer holding another version of the package refuses it (the device runs the tail itself)', async () => {
    await using d = await device([stranger.url]);
    const p = placement(await d.run({ image: LOW }));
    expect(p.decision.fallback?.code).toBe('E_FABRIC_PACKAGE_UNKNOWN');
    expect(p.tail.where).toBe('local');
    // asked directly: 404 with the code, for the exact id the device holds
    const off = new HttpOffloader({ peers: new StaticPeers([stranger.url]), token: TOKEN });
    await expect(
      off.run({ packageId: local.id, model: 'detector-head', inputs: {}, deadline: Date.now() + 5000 }),
    ).rejects.toMatchObject({ code: 'E_FABRIC_PACKAGE_UNKNOWN' });
  });

  it('refuses a caller without the token, and a device refuses a peer that cannot prove it holds it', async () => {
    const path = `/v2/fabric/packages/${local.id}/models/detector-head/tail/infer`;
    const { body, headerLength } = encodeV2({}, 'inputs', {});
    const send = (auth?: string) =>
      http(peer.url + path, {
        method: 'POST',
        headers: {
          'content-type': 'application/octet-stream',
          [HEADER_LENGTH]: String(headerLength),
          ...(auth ? { authorization: auth } : {}),
        },
        body: new Uint8Array(body),
      });
    for (const auth of [
      undefined,
      `Bearer ${TOKEN}`,
      'Bearer wrong-token-0123456789abcdef',
      `Basic ${TOKEN}`,
      callAuthorization('wrong-token-0123456789abcdef', newNonce(), 'POST', path),
      callAuthorization(TOKEN, newNonce(), 'POST', path.replace('detector-head', 'other')),
    ]) {
      const r = await send(auth);
      expect(r.status).toBe(401);
      expect(r.body.code).toBe('E_FABRIC_AUTH');
    }
    // a device with the wrong token: refused, so it runs the tail itself
    await using wrong = await device([peer.url], 'another-token-0123456789abcdef');
    expect(placement(await wrong.run({ image: LOW })).decision.fallback?.code).toBe('E_FABRIC_AUTH');

    // a stranger on the peer's address answering well-formed tensors without the proof
    const impostor = createServer((req, res) => {
      req.resume().on('end', () => {
        const out = encodeV2({ parameters: { variant: 'x', provider: 'cpu' } }, 'outputs', {
          output: { type: 'float32', dims: [1, 2100, 8], data: new Float32Array(2100 * 8) },
        });
        res.writeHead(200, { 'content-type': 'application/octet-stream', [HEADER_LENGTH]: String(out.headerLength) });
        res.end(out.body);
      });
    });
    await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(impostor.address() as { port: number }).port}`;
      await using d = await device([url]);
      const p = placement(await d.run({ image: LOW }));
      expect(p.decision.fallback?.code).toBe('E_FABRIC_AUTH');
      expect(p.tail.where).toBe('local');
    } finally {
      await new Promise((r) => impostor.close(r));
    }
  });

  it('refuses a replayed call, a call for another path and one signed outside the clock window', async () => {
    const path = `/v2/fabric/packages/${local.id}/models/detector-head/tail/infer`;
    const { body, headerLength } = encodeV2({}, 'inputs', {});
    const send = (authorization: string) =>
      http(peer.url + path, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream', [HEADER_LENGTH]: String(headerLength), authorization },
        body: new Uint8Array(body),
      });
    const once = callAuthorization(TOKEN, newNonce(), 'POST', path);
    expect((await send(once)).status).not.toBe(401); // past the check (the empty tensors are then refused)
    const again = await send(once);
    expect([again.status, again.body.code]).toEqual([401, 'E_FABRIC_AUTH']);
    for (const skew of [-10 * 60_000, 10 * 60_000]) {
      const r = await send(callAuthorization(TOKEN, newNonce(), 'POST', path, Date.now() + skew));
      expect([r.status, r.body.code]).toEqual([401, 'E_FABRIC_AUTH']);
    }
    // 30 s of drift between hosts is fine
    expect((await send(callAuthorization(TOKEN, newNonce(), 'POST', path, Date.now() - 30_000))).status).not.toBe(401);
  });

  it('refuses malformed cut tensors with 400 before they reach the runtime, and keeps serving', async () => {
    const path = `/v2/fabric/packages/${local.id}/models/detector-head/tail/infer`;
    const post = (tensors: Record<string, Tensor>) => {
      const { body, headerLength } = encodeV2({}, 'inputs', tensors);
      return http(peer.url + path, {
        method: 'POST',
        headers: {
          authorization: callAuthorization(TOKEN, newNonce(), 'POST', path),
          'content-type': 'application/octet-stream',
          [HEADER_LENGTH]: String(headerLength),
        },
        body: new Uint8Array(body),
      });
    };
    const f32 = (dims: number[]): Tensor => ({
      type: 'float32',
      dims,
      data: new Float32Array(dims.reduce((a, b) => a * b, 1)),
    });
    const right = { [CUT[0]]: f32([1, 64, 40, 40]), [CUT[1]]: f32([1, 96, 20, 20]), [CUT[2]]: f32([1, 128, 10, 10]) };
    for (const wrong of [
      { ...right, [CUT[0]]: f32([1, 64, 20, 20]) }, // a dim
      { ...right, [CUT[2]]: f32([128, 10, 10]) }, // the rank
      { ...right, [CUT[1]]: { type: 'int32', dims: [1, 96, 20, 20], data: new Int32Array(96 * 400) } as Tensor },
      { [CUT[0]]: right[CUT[0]], [CUT[1]]: right[CUT[1]] }, // one missing
    ]) {
      const r = await post(wrong);
      expect(r.status).toBe(400);
      expect(r.body.code).toBe('E_RUN_INPUT');
    }
    const ok = await post(right);
    expect(ok.status).toBe(200);
    // the right tensors after the wrong ones still run on the same variant (nothing fell back)
    await using d = await device([peer.url]);
    expect(placement(await d.run({ image: LOW })).tail).toMatchObject({
      where: new URL(peer.url).host,
      variant: 'tail-cpu-fp32',
    });
  });

  it('a device without a variant of the tail must offload, and fails with the code when no peer can', async () => {
    // the package with only the tail's GPU variant: this CPU-only device cannot run the tail itself
    const pkg = await otherVersion((m) => {
      m.models[1].variants = m.models[1].variants.filter((v) => v.id === 'tail-cuda-fp32');
    });
    await using d = await Runner.open(pkg, {
      trust: ['fixtures/keys/test.pub'],
      host: DEVICE,
      stateDir: tempDir(),
      offloader: new HttpOffloader({ peers: new StaticPeers([peer.url]), token: TOKEN }),
    });
    // a confident image too: the condition does not matter, the peer is the only way; it holds another id
    const err = await d.run({ image: HIGH }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_FABRIC_PACKAGE_UNKNOWN' });
  });
});
