/**
 * Routing a tail (fabric/route.ts) against injected host profiles (fixtures/hosts) and the real
 * multi-variant manifest, and the announcement's TXT codec (fabric/discovery/txt.ts): size limits,
 * partial id lists, and malformed records refused with a reason rather than a throw.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { PeerInfo } from '../fabric/contract.js';
import { hostSummaryOf } from '../fabric/discovery/peer-doc.js';
import { decodeTxt, encodeTxt, packagesDigest, TXT_BUDGET } from '../fabric/discovery/txt.js';
import { pickPeer, rankPeers } from '../fabric/route.js';
import { defaultRegistry } from '../runner/backends/index.js';
import { loadHostProfile } from '../runner/host-profile.js';
import type { Model } from '../spec/schema.js';

const manifest = JSON.parse(readFileSync('fixtures/multi-variant/xpkg.json', 'utf8'));
const model: Model = manifest.models[0];
const ID = 'a'.repeat(64);
const OTHER = 'b'.repeat(64);
const backends = defaultRegistry().runtimes();

function peer(id: string, hostFile: string, free: number, packages = [ID]): PeerInfo {
  const profile = loadHostProfile(`fixtures/hosts/${hostFile}.json`);
  return {
    id,
    url: `http://127.0.0.1:1/${id}`,
    host: hostSummaryOf(profile, backends),
    packages,
    free,
    seen: 0,
    profile,
  };
}

describe('pickPeer', () => {
  it("prefers the peer whose profile gets the tail's best variant, even when it is busier", () => {
    const peers = [peer('avx2', 'x64-avx2', 8), peer('vnni', 'x64-avx512-vnni', 4), peer('gpu', 'rtx4090', 1)];
    const r = rankPeers(peers, { packageId: ID, model });
    expect(r.ranked.map((c) => [c.peer.id, c.variant])).toEqual([
      ['gpu', 'cuda-fp16'],
      ['vnni', 'cpu-int8-vnni'],
      ['avx2', 'cpu-fp32'],
    ]);
    expect(pickPeer(peers.slice(0, 2), { packageId: ID, model })?.peer.id).toBe('vnni');
  });

  it('among peers running the same variant, takes the least loaded, then the lowest id, whatever the order given', () => {
    const peers = [peer('c', 'rtx4090', 2), peer('b', 'rtx4090', 5), peer('a', 'rtx4090', 5), peer('d', 'x64-avx2', 9)];
    for (const order of [peers, [...peers].reverse(), [peers[2], peers[0], peers[3], peers[1]]]) {
      const r = rankPeers(order, { packageId: ID, model });
      expect(r.ranked.map((c) => c.peer.id)).toEqual(['a', 'b', 'c', 'd']);
    }
  });

  it('leaves out peers without the exact package id, full peers, unknown profiles, no runnable variant, and excluded ones', () => {
    const noProfile = { ...peer('no-profile', 'rtx4090', 3) };
    delete noProfile.profile;
    const peers = [
      peer('other-version', 'h100', 9, [OTHER]),
      peer('full', 'rtx4090', 0),
      noProfile,
      peer('riscv', 'riscv64-no-runtime', 9),
      peer('tried', 'rtx4090', 9),
      peer('ok', 'x64-no-avx', 1),
    ];
    const r = rankPeers(peers, { packageId: ID, model, exclude: new Set(['tried']) });
    expect(r.ranked.map((c) => [c.peer.id, c.variant])).toEqual([['ok', 'cpu-fp32']]);
    expect(Object.fromEntries(r.rejected.map((x) => [x.peer, x.reason]))).toEqual({
      'other-version': 'package',
      full: 'busy',
      'no-profile': 'no-profile',
      riscv: 'no-variant',
      tried: 'excluded',
    });
    expect(pickPeer(peers.slice(0, 5), { packageId: ID, model, exclude: new Set(['tried']) })).toBeUndefined();
    expect(pickPeer([], { packageId: ID, model })).toBeUndefined();
  });
});

describe('announcement TXT record', () => {
  const host = { cpu: 'x64', accelerators: ['nvidia-gpu:sm_89'], runtimes: ['onnxruntime'] };

  it('round-trips, with every id inline while they fit', () => {
    const ids = [OTHER, ID];
    const a = decodeTxt(encodeTxt({ host, packages: ids, free: 3 }));
    expect(a).toEqual({
      host,
      packages: [ID, OTHER],
      free: 3,
      digest: packagesDigest(ids),
      count: 2,
      complete: true,
      scheme: 'http',
    });
  });

  it('keeps each string within 255 bytes and the record within budget; many ids go as a digest and a count', () => {
    const ids = Array.from({ length: 40 }, () => randomBytes(32).toString('hex'));
    const txt = encodeTxt({ host, packages: ids, free: 1 });
    expect(Math.max(...txt.map((b) => b.length))).toBeLessThanOrEqual(255);
    expect(txt.reduce((n, b) => n + b.length + 1, 0)).toBeLessThanOrEqual(TXT_BUDGET);
    const a = decodeTxt(txt);
    if ('reason' in a) throw new Error(a.reason);
    expect(a.complete).toBe(false);
    expect(a.count).toBe(40);
    expect(a.packages.length).toBeGreaterThan(5);
    expect(a.packages.length).toBeLessThan(40);
    expect(a.digest).toBe(packagesDigest(ids));
  });

  it('refuses malformed records with a reason, never a throw', () => {
    const good = encodeTxt({ host, packages: [ID], free: 2 }).map(String);
    const cases: string[][] = [
      [],
      good.map((s) => (s.startsWith('v=') ? 'v=9' : s)),
      good.map((s) => (s.startsWith('free=') ? 'free=-1' : s)),
      good.map((s) => (s.startsWith('free=') ? 'free=lots' : s)),
      good.map((s) => (s.startsWith('cpu=') ? 'cpu=x 64' : s)),
      good.map((s) => (s.startsWith('p0=') ? 'p0=not-an-id' : s)),
      good.map((s) => (s.startsWith('pd=') ? `pd=${'0'.repeat(32)}` : s)),
      good.map((s) => (s.startsWith('pn=') ? 'pn=0' : s)),
      good.map((s) => (s.startsWith('s=') ? 's=gopher' : s)),
      [...good, 'no-equals-sign'],
      [...good, `x=${'y'.repeat(300)}`],
    ];
    for (const c of cases) expect(decodeTxt(c)).toHaveProperty('reason');
    // random bytes: a reason or (rarely) a valid record, but never an exception
    for (let i = 0; i < 200; i++)
      expect(() => decodeTxt(Array.from({ length: 1 + (i % 9) }, () => randomBytes(i % 40)))).not.toThrow();
  });
});
