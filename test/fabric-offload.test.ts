/**
 * Split inference between real processes on loopback: a device (a Runner in this process, CPU-only
 * host profile) runs the detector-split fixture's head and offloads the tail to an `xpkg serve` peer
 * (the built CLI, another host profile). Low score → the peer runs the tail (same boxes as a local
 * run); high score → local; the peer killed mid-request, or silent → local fallback within the
 * deadline; `xpkg run --peer` from the command line.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Runner } from '../runner/runner.js';
import { xpkgAsync } from './helpers/cli.js';
import {
  boxes,
  DEADLINE_MS,
  DEVICE,
  device,
  HIGH,
  LOW,
  PEER_HOST,
  type Peer,
  PKG,
  placement,
  relay,
  repoWith,
  startPeer,
  tokenFile,
} from './helpers/fabric.js';
import { tempDir } from './helpers/source.js';

const peers: Peer[] = [];
let peer: Peer;
let local: Runner;

beforeAll(async () => {
  peer = await startPeer({ repo: await repoWith(PKG), hostProfile: PEER_HOST });
  peers.push(peer);
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
    // the daemon itself dies (its launcher then dies of the same signal)
    const r = await relay(new URL(victim.url), () => process.kill(victim.pid, 'SIGKILL'));
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

  it('gives up on a peer that does not answer at the deadline and runs the tail here', async () => {
    const r = await relay(new URL(peer.url), () => {}, { stall: true });
    try {
      await using d = await device([r.url]);
      const p = placement(await d.run({ image: LOW }));
      expect(p.decision.fallback?.code).toBe('E_FABRIC_DEADLINE');
      expect(p.tail.where).toBe('local');
      // waited for the deadline, not much longer
      expect(p.tail.ms).toBeGreaterThanOrEqual(DEADLINE_MS - 50);
      expect(p.tail.ms).toBeLessThan(DEADLINE_MS + 5000);
    } finally {
      await r.close();
    }
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

  it('xpkg run --discover finds an announced peer by mDNS and sends the tail there', async () => {
    const mdns = ['--mdns-interface', '127.0.0.1', '--mdns-port', String(20_000 + Math.floor(Math.random() * 20_000))];
    const announced = await startPeer({
      repo: await repoWith(PKG),
      hostProfile: PEER_HOST,
      extra: ['--announce', '--announce-name', 'big-peer', ...mdns],
    });
    peers.push(announced);
    const r = await xpkgAsync([
      ...['run', PKG, '--trust', 'fixtures/keys/test.pub', '--state-dir', tempDir(), '--host', DEVICE],
      ...['--discover', ...mdns, '--discover-wait', '30000', '--peer-token-file', await tokenFile()],
      ...['--input', 'fixtures/detector/eval/001.png', '--json'],
    ]);
    expect(r.status, r.stderr).toBe(0);
    // the peer's announced name, not a URL: it came from discovery, not from --peer
    expect(r.json!.result.split['detector-head'].tail.where).toBe('big-peer');
    expect(r.json!.result.split['detector-head'].decision.offload).toBe(true);
  });
});
