/**
 * Split inference over a simulated link (loopback only): a throttling TCP proxy (token bucket per
 * direction, default 20 Mbit/s, plus 20 ms one-way delay) between the device and a peer `xpkg serve`.
 * Per image, bytes sent and end-to-end latency of
 *   (a) all local on a CPU-only device profile (one intra-op thread: the small device),
 *   (b) the image sent to the peer's image route (the peer runs everything),
 *   (c) the head here, its cut tensors sent to the peer, which runs the tail,
 * side by side, with the device process's CPU time per image (the peer is its own `xpkg serve`
 * process, so its work is not counted; the proxy's is), and the link bandwidths at which (c) beats
 * (a) and (b), from the measured parts.
 *
 *   npm run build && npm run build:tools && node dist-tools/bench/offload.js [--mbit 20] [--delay 20] [--images 10] [--reps 3]
 */

import { mkdtempSync } from 'node:fs';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpOffloader } from '../fabric/client.js';
import { StaticPeers } from '../fabric/peers.js';
import { prepare } from '../fixtures/detector-split/build.js';
import { packFolder } from '../pack/pack.js';
import { Runner } from '../runner/runner.js';
import { sign } from '../signing/sign.js';
import { startPeer } from '../test/helpers/fabric.js';
import { arg, median } from './util.js';

const MBIT = Number(arg('mbit') ?? 20);
const DELAY = Number(arg('delay') ?? 20);
const IMAGES = Number(arg('images') ?? 10);
const REPS = Number(arg('reps') ?? 3);
const TOKEN = 'bench-fabric-token-0123456789abcdef';
const tmp = (p: string) => mkdtempSync(join(tmpdir(), p));

/** One direction of the link: bytes leave at `MBIT` (token bucket, no burst) and arrive `DELAY` ms later, in order. */
function pipe(from: Socket, to: Socket, counter: { bytes: number }): void {
  let free = 0; // when the link is next idle (ms, performance.now())
  from.on('data', (chunk) => {
    counter.bytes += chunk.length;
    const start = Math.max(performance.now(), free);
    free = start + (chunk.length * 8) / (MBIT * 1000);
    setTimeout(() => to.writable && to.write(chunk), free + DELAY - performance.now());
  });
}

async function link(port: number) {
  const sent = { bytes: 0 };
  const received = { bytes: 0 };
  const server = createServer((device) => {
    const peer = connect(port, '127.0.0.1');
    // the link's delay is the simulated one: no Nagle waits on top
    device.setNoDelay(true);
    peer.setNoDelay(true);
    pipe(device, peer, sent);
    pipe(peer, device, received);
    const end = () => {
      setTimeout(() => (device.destroy(), peer.destroy()), DELAY + 50);
    };
    device.on('close', end).on('error', end);
    peer.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, sent, received, server };
}

/** The detector-split fixture with a condition that always holds, so (c) offloads every image. */
async function alwaysOffload(): Promise<string> {
  const src = tmp('xpkg-bench-src-');
  await prepare(src);
  const m = JSON.parse(await readFile(join(src, 'xpkg.json'), 'utf8'));
  for (const s of m.pipeline.steps) if (s.op === 'split') s.params.when.below = 2;
  await writeFile(join(src, 'xpkg.json'), JSON.stringify(m));
  const out = join(tmp('xpkg-bench-pkg-'), 'detector-split.xpkg');
  await packFolder(src, out, { sourceDateEpoch: '' });
  await sign(out, { key: 'fixtures/keys/test.key', out, passphrase: '', force: true });
  return out;
}

const pkg = await alwaysOffload();
const repo = tmp('xpkg-bench-repo-');
await copyFile(pkg, join(repo, 'detector-split.xpkg'));
const trust = { trust: ['fixtures/keys/test.pub'] };
const peer = await startPeer({ repo, hostProfile: 'fixtures/hosts/x64-avx512-vnni.json', token: TOKEN });
const l = await link(Number(new URL(peer.url).port));
const device = { ...trust, host: 'fixtures/hosts/x64-avx2.json', threads: 1 };
const alone = await Runner.open(pkg, { ...device, stateDir: tmp('xpkg-bench-a-') });
const split = await Runner.open(pkg, {
  ...device,
  stateDir: tmp('xpkg-bench-c-'),
  offloader: new HttpOffloader({ peers: new StaticPeers([l.url]), token: TOKEN }),
});

type Row = { ms: number[]; cpu: number[]; bytes: number[]; extra: number[] };
const row = (): Row => ({ ms: [], cpu: [], bytes: [], extra: [] });
const rows: Record<'a' | 'b' | 'c', Row> = { a: row(), b: row(), c: row() };
const cpuMs = (since: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1000;
};
const images = await Promise.all(
  Array.from({ length: IMAGES }, (_, i) => readFile(`fixtures/detector/eval/${String(i).padStart(3, '0')}.png`)),
);
// warm: every path once
await alone.run({ image: images[0] });
await split.run({ image: images[0] });
await fetch(`${l.url}/xpkg/models/detector-split/run`, {
  method: 'POST',
  headers: { 'content-type': 'image/png' },
  body: new Uint8Array(images[0]),
});
for (let rep = 0; rep < REPS; rep++)
  for (const img of images) {
    let c0 = process.cpuUsage();
    let t0 = performance.now();
    const a = await alone.run({ image: img });
    rows.a.ms.push(performance.now() - t0);
    rows.a.cpu.push(cpuMs(c0));
    rows.a.bytes.push(0);
    rows.a.extra.push(a.split!['detector-head'].tail.ms);

    const before = l.sent.bytes;
    c0 = process.cpuUsage();
    t0 = performance.now();
    const r = await fetch(`${l.url}/xpkg/models/detector-split/run`, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: new Uint8Array(img),
    });
    await r.arrayBuffer();
    rows.b.ms.push(performance.now() - t0);
    rows.b.cpu.push(cpuMs(c0));
    rows.b.bytes.push(l.sent.bytes - before);

    c0 = process.cpuUsage();
    t0 = performance.now();
    const c = await split.run({ image: img });
    rows.c.ms.push(performance.now() - t0);
    rows.c.cpu.push(cpuMs(c0));
    const p = c.split!['detector-head'];
    if (p.tail.where === 'local') throw new Error(`(c) ran locally: ${JSON.stringify(p.decision)}`);
    rows.c.bytes.push(p.tail.bytesOut!);
    rows.c.extra.push(p.tail.bytesIn!);
  }

const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
const out = (k: 'a' | 'b' | 'c', what: string) =>
  `${what.padEnd(44)} ${median(rows[k].ms).toFixed(1).padStart(8)} ms ${median(rows[k].cpu).toFixed(1).padStart(8)} ms ${Math.round(mean(rows[k].bytes)).toString().padStart(9)} B`;
const la = median(rows.a.ms);
const lb = median(rows.b.ms);
const lc = median(rows.c.ms);
const bc = mean(rows.c.bytes);
const bb = mean(rows.b.bytes);
const wire = (bytes: number, mbit: number) => (bytes * 8) / (mbit * 1000);
// latency at another bandwidth: the measured one with this link's transfer time swapped out
const at = (ms: number, bytes: number, mbit: number) => ms - wire(bytes, MBIT) + wire(bytes, mbit);
/** The bandwidth (Mbit/s) above which `x` (bytes per image) gets faster than the latency `target`. */
function crossover(ms: number, bytes: number, target: number): string {
  const rest = ms - wire(bytes, MBIT);
  if (rest >= target) return `never (even at infinite bandwidth ${rest.toFixed(1)} ms ≥ ${target.toFixed(1)} ms)`;
  return `${((bytes * 8) / ((target - rest) * 1000)).toFixed(1)} Mbit/s`;
}
console.log(
  `link: ${MBIT} Mbit/s each way, ${DELAY} ms one-way delay; ${IMAGES} images × ${REPS}; load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);
console.log(
  `${'per image (medians; sent: mean)'.padEnd(44)} ${'latency'.padStart(11)} ${'device CPU'.padStart(11)} ${'sent'.padStart(11)}`,
);
console.log(out('a', '(a) all local, CPU-only device (1 thread)'));
console.log(out('b', '(b) image to the peer'));
console.log(out('c', '(c) head here, cut tensors to the peer'));
console.log(
  `(c) receives ${Math.round(mean(rows.c.extra))} B (the tail's [1, 2100, 8] f32); (a)'s tail alone: ${median(rows.a.extra).toFixed(1)} ms`,
);
console.log(
  `device CPU (c)/(a) ${(median(rows.c.cpu) / median(rows.a.cpu)).toFixed(2)}, (b)/(a) ${(median(rows.b.cpu) / median(rows.a.cpu)).toFixed(2)} (the proxy's copies count on the device)`,
);
console.log(
  `latency at ${MBIT} Mbit/s: (c)/(a) ${(lc / la).toFixed(2)}, (b)/(a) ${(lb / la).toFixed(2)}, (c)/(b) ${(lc / lb).toFixed(2)}; bytes (c)/(b) ${(bc / bb).toFixed(1)}`,
);
console.log(`crossover: (c) beats (a) above ${crossover(lc, bc, la)}; (b) beats (a) above ${crossover(lb, bb, la)}`);
// Here the device and the peer are one CPU. On a device k× slower, (a) takes k·la and (c) k·(la − T) + R
// (T: the tail here, R: everything (c) waits for beyond the device's own work), so (c) wins for k > R / T.
const T = median(rows.a.extra);
const slower = (mbit: number) => (at(lc, bc, mbit) - (la - T)) / T;
console.log(
  `(c) beats (a) on a device k× slower than this CPU for k > ${[5, 20, 100, 1000].map((m) => `${slower(m).toFixed(0)} at ${m} Mbit/s`).join(', ')}`,
);
for (const mbit of [5, 20, 100, 1000])
  console.log(
    `  at ${String(mbit).padStart(4)} Mbit/s: (a) ${la.toFixed(0)} ms, (b) ${at(lb, bb, mbit).toFixed(0)} ms, (c) ${at(lc, bc, mbit).toFixed(0)} ms`,
  );
await alone.close();
await split.close();
l.server.close();
await peer.stop();
