/**
 * Split inference between real processes on loopback: a device (a Runner in this process, CPU-only
 * host profile) runs the detector-split fixture's head and offloads the tail to `xpkg serve` peers
 * (the built CLI, other host profiles). Low score → the peer runs the tail (same boxes as a local
 * run); high score → local; the peer killed mid-request → local fallback within the deadline; a peer
 * holding another version refuses; callers and peers without the token are refused.
 */

import { readFileSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpOffloader } from '../fabric/client.js';
import { StaticPeers } from '../fabric/peers.js';
import { encodeV2, HEADER_LENGTH } from '../fabric/v2-binary.js';
import { CUT } from '../fixtures/detector-split/build.js';
import { Runner, type RunResult } from '../runner/runner.js';
import type { SplitPlacement, Tensor } from '../runner/types.js';
import { xpkgAsync } from './helpers/cli.js';
import { otherVersion, type Peer, relay, startPeer, TOKEN, tokenFile } from './helpers/fabric.js';
import { http } from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

const PKG = 'fixtures/dist/detector-split.xpkg';
const DEVICE = 'fixtures/hosts/x64-avx2.json';
const LOW = readFileSync('fixtures/detector/eval/001.png'); // the head's score ≈ 0.005
const HIGH = readFileSync('fixtures/detector/eval/000.png'); // ≈ 0.81
const DEADLINE_MS = 2000; // the fixture's split step

const peers: Peer[] = [];
let peer: Peer; // holds the fixture's version
let stranger: Peer; // holds another version of the same package
let local: Runner;

async function repoWith(pkg: string): Promise<string> {
  const repo = tempDir('xpkg-fabric-repo-');
  await copyFile(pkg, join(repo, 'detector-split.xpkg'));
  return repo;
}

function device(urls: string[], token = TOKEN): Promise<Runner> {
  return Runner.open(PKG, {
    trust: ['fixtures/keys/test.pub'],
    stateDir: tempDir('xpkg-fabric-device-'),
    host: DEVICE,
    offloader: new HttpOffloader({ peers: new StaticPeers(urls), token }),
  });
}

const placement = (r: RunResult): SplitPlacement => r.split!['detector-head'];
const boxes = (r: RunResult) => r.outputs.boxes as { box: number[]; label: string }[];

beforeAll(async () => {
  const [a, b] = await Promise.all([
    repoWith(PKG).then((repo) => startPeer({ repo, hostProfile: 'fixtures/hosts/x64-avx512-vnni.json' })),
    otherVersion()
      .then(repoWith)
      .then((repo) => startPeer({ repo, hostProfile: 'fixtures/hosts/x64-avx512-vnni.json' })),
  ]);
  peers.push(a, b);
  [peer, stranger] = [a, b];
  local = await Runner.open(PKG, { trust: ['fixtures/keys/test.pub'], stateDir: tempDir(), host: DEVICE });
});

afterAll(async () => {
  await local?.close();
  await Promise.all(peers.map((p) => p.stop()));
});

describe('split inference across processes', () => {
  it('offloads the tail of an unsure image to the peer and keeps a confident one local', async () => {
    await using d = await device([peer.url]);
    const low = await d.run({ image: LOW });
    const p = placement(low);
    expect(p.decision).toMatchObject({ offload: true });
    expect(p.decision.score).toBeLessThan(0.5);
    expect(p.decision.fallback).toBeUndefined();
    expect(p.head).toMatchObject({ where: 'local', variant: 'head-cpu-fp32', provider: 'cpu' });
    expect(p.tail).toMatchObject({ where: new URL(peer.url).host, variant: 'tail-cpu-fp32', provider: 'cpu' });
    // the three neck tensors [64×40×40 + 96×20×20 + 128×10×10] f32 and a header go out; [1, 2100, 8] f32 comes back
    expect(p.tail.bytesOut).toBeGreaterThan(614_400);
    expect(p.tail.bytesIn).toBeGreaterThan(2100 * 8 * 4);
    expect(boxes(low)).toEqual(boxes(await local.run({ image: LOW })));
    expect(boxes(low).length).toBeGreaterThan(0);

    const high = await d.run({ image: HIGH });
    expect(placement(high).decision).toMatchObject({ offload: false });
    expect(placement(high).decision.score).toBeGreaterThanOrEqual(0.5);
    expect(placement(high).tail).toMatchObject({ where: 'local', variant: 'tail-cpu-fp32' });
    expect(placement(high).tail.bytesOut).toBeUndefined();
  });

  it('falls back to the local tail within the deadline when the peer is killed mid-request', async () => {
    const victim = await startPeer({ repo: await repoWith(PKG), hostProfile: 'fixtures/hosts/x64-avx2.json' });
    peers.push(victim);
    const r = await relay(new URL(victim.url), () => victim.child.kill('SIGKILL'));
    try {
      await using d = await device([r.url]);
      const t0 = performance.now();
      const res = await d.run({ image: LOW });
      const ms = performance.now() - t0;
      const p = placement(res);
      expect(victim.child.signalCode ?? (await new Promise((ok) => victim.child.once('exit', (_c, s) => ok(s))))).toBe(
        'SIGKILL',
      );
      expect(p.decision.offload).toBe(true);
      expect(p.decision.fallback?.code).toBe('E_FABRIC_PEER');
      expect(p.tail).toMatchObject({ where: 'local', variant: 'tail-cpu-fp32' });
      // the failed offload ended well before its deadline, then the tail ran here
      expect(p.tail.ms).toBeLessThan(DEADLINE_MS + 5000);
      expect(ms).toBeLessThan(DEADLINE_MS + 10_000);
      expect(boxes(res)).toEqual(boxes(await local.run({ image: LOW })));
    } finally {
      await r.close();
    }
  });

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
    for (const auth of [undefined, 'Bearer wrong-token-0123456789abcdef', `Basic ${TOKEN}`]) {
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

  it('refuses malformed cut tensors with 400 before they reach the runtime, and keeps serving', async () => {
    const path = `/v2/fabric/packages/${local.id}/models/detector-head/tail/infer`;
    const post = (tensors: Record<string, Tensor>) => {
      const { body, headerLength } = encodeV2({}, 'inputs', tensors);
      return http(peer.url + path, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${TOKEN}`,
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

  it('xpkg run --peer offloads from the command line', async () => {
    const r = await xpkgAsync([
      'run',
      PKG,
      '--trust',
      'fixtures/keys/test.pub',
      '--state-dir',
      tempDir(),
      '--host',
      DEVICE,
      '--peer',
      peer.url,
      '--peer-token-file',
      await tokenFile(),
      '--input',
      'fixtures/detector/eval/001.png',
      '--json',
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json!.result.split['detector-head'].tail.where).toBe(new URL(peer.url).host);
    expect(r.json!.result.outputs.boxes.length).toBeGreaterThan(0);
    const missing = await xpkgAsync([
      'run',
      PKG,
      '--trust',
      'fixtures/keys/test.pub',
      '--peer',
      peer.url,
      '--input',
      'x.png',
      '--json',
    ]);
    expect(missing.json!.error!.code).toBe('E_USAGE');
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
