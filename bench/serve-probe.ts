/**
 * What bench/serve.ts measures a daemon with, from outside: CPU and page faults of its main thread
 * and of its workers (from /proc: robust to load), and the floor any Node HTTP daemon pays — a bare
 * fastify in its own process that takes the same binary body, answers a small JSON document and
 * samples its own event-loop lag with the same 1 ms sampler as the daemon (its lag while the daemon
 * is saturated is the machine's: how late an idle process gets a CPU).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** CPU milliseconds (user, system) and minor page faults of a thread or process, from /proc (Linux). */
export function procStat(path: string): { user: number; sys: number; faults: number } {
  try {
    const f = readFileSync(path, 'utf8').split(') ')[1].split(' ');
    return { user: (Number(f[11]) * 1000) / 100, sys: (Number(f[12]) * 1000) / 100, faults: Number(f[7]) };
  } catch {
    return { user: Number.NaN, sys: Number.NaN, faults: Number.NaN };
  }
}

export interface Usage {
  /** The main thread's CPU (user, system) and page faults. */
  user: number;
  sys: number;
  faults: number;
  /** CPU of the process's other threads and of its child processes (the model workers). */
  rest: number;
}

/** The process `pid`: its main thread, and everything else it and its children spend. */
export function usage(pid: number): Usage {
  const main = procStat(`/proc/${pid}/task/${pid}/stat`);
  const whole = procStat(`/proc/${pid}/stat`);
  let all = whole.user + whole.sys;
  let kids: string[] = [];
  try {
    kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch {}
  for (const k of kids) {
    const s = procStat(`/proc/${k}/stat`);
    all += s.user + s.sys;
  }
  return { user: main.user, sys: main.sys, faults: main.faults, rest: all - main.user - main.sys };
}

export function minus(a: Usage, b: Usage): Usage {
  return { user: a.user - b.user, sys: a.sys - b.sys, faults: a.faults - b.faults, rest: a.rest - b.rest };
}

export function plus(a: Usage, b: Usage): Usage {
  return { user: a.user + b.user, sys: a.sys + b.sys, faults: a.faults + b.faults, rest: a.rest + b.rest };
}

export const ZERO: Usage = { user: 0, sys: 0, faults: 0, rest: 0 };

/**
 * The floor: `POST /echo` takes the body, `POST /v2/models/{name}/infer` takes it and answers after
 * `x-hold-ms`, `GET /lag` answers the lag p99 (ms) since the last call.
 */
export function startFloor(): Promise<{ url: string; child: ChildProcess }> {
  const code = `import Fastify from 'fastify';
import { monitorEventLoopDelay } from 'node:perf_hooks';
const loop = monitorEventLoopDelay({ resolution: 1 });
loop.enable();
const app = Fastify({ bodyLimit: 64 << 20 });
app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_r, b, done) => done(null, b));
app.post('/echo', async (req) => ({ bytes: req.body.length }));
// The same body as a V2 binary infer request, answered after x-hold-ms of idle (a timer, as the daemon's
// main thread idles while its worker runs), with the time held as the run's: a client subtracts it as
// it subtracts the daemon's run_ms. After a run's worth of idle, wake-ups and a cold cache cost more
// than back to back; this floor pays them as the daemon does.
app.post('/v2/models/:name/infer', async (req) => {
  const t = performance.now();
  await new Promise((r) => setTimeout(r, Number(req.headers['x-hold-ms'] ?? 0)));
  return { model_name: req.params.name, parameters: { run_ms: performance.now() - t, bytes: req.body.length } };
});
app.get('/lag', async () => {
  const p99 = loop.count > 0 ? Math.max(0, loop.percentile(99) / 1e6 - 1) : 0;
  loop.reset();
  return { p99 };
});
await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write('http://127.0.0.1:' + app.server.address().port + '\\n');`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((res) =>
    child.stdout!.setEncoding('utf8').once('data', (s: string) => res({ url: s.trim(), child })),
  );
}

/**
 * The transport's floor: a node:net server in its own process that reads each request to the end of
 * its content-length and answers a fixed small response: no HTTP parser, no framework, no model.
 * What moving the request's bytes over loopback costs here, beneath any HTTP daemon.
 */
export function startRawFloor(): Promise<{ url: string; child: ChildProcess }> {
  const code = `import { createServer } from 'node:net';
const reply = Buffer.from('HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\ncontent-length: 2\\r\\n\\r\\n{}');
const srv = createServer((s) => {
  s.setNoDelay(true);
  let head = Buffer.alloc(0);
  let left = -1;
  s.on('data', (d) => {
    while (d.length) {
      if (left < 0) {
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\\r\\n\\r\\n');
        if (end < 0) return;
        left = Number(/content-length: *(\\d+)/i.exec(head.subarray(0, end).toString('latin1'))?.[1] ?? 0);
        d = head.subarray(end + 4);
        head = Buffer.alloc(0);
      }
      const take = Math.min(left, d.length);
      left -= take;
      d = d.subarray(take);
      if (left === 0) {
        left = -1;
        s.write(reply);
      }
    }
  });
});
srv.listen(0, '127.0.0.1', () => process.stdout.write('http://127.0.0.1:' + srv.address().port + '\\n'));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((res) =>
    child.stdout!.setEncoding('utf8').once('data', (s: string) => res({ url: s.trim(), child })),
  );
}

export async function floorLag(url: string): Promise<number> {
  return ((await (await fetch(`${url}/lag`)).json()) as { p99: number }).p99;
}

/** A daemon's event-loop lag p99 (seconds → ms) since the last scrape (prom-client resets it per scrape). */
export async function daemonLag(url: string): Promise<number> {
  const m = await (await fetch(`${url}/metrics`)).text();
  return Number(/^xpkg_serve_event_loop_lag_p99_seconds (\S+)$/m.exec(m)?.[1]) * 1000;
}

/** How many full (mark-compact) and young-generation GCs the daemon has run (prom-client's GC histogram). */
export async function daemonGcs(url: string): Promise<{ major: number; minor: number }> {
  const m = await (await fetch(`${url}/metrics`)).text();
  const count = (kind: string) =>
    Number(
      new RegExp(`^xpkg_serve_nodejs_gc_duration_seconds_count\\{kind="${kind}"\\} (\\S+)$`, 'm').exec(m)?.[1] ?? 0,
    );
  return { major: count('major'), minor: count('minor') };
}

/**
 * Where a daemon's time went, summed over its requests to `model` so far (prom-client's histograms):
 * each request from its headers to its response, and each run's round trip to its worker.
 */
export async function daemonSums(
  url: string,
  model: string,
): Promise<{ n: number; requestMs: number; workerMs: number; receiveMs: number }> {
  const m = await (await fetch(`${url}/metrics`)).text();
  const get = (metric: string, labels: string) =>
    Number(new RegExp(`^${metric}\\{${labels}\\} (\\S+)$`, 'm').exec(m)?.[1] ?? 0);
  const route = `route="/v2/models/:name/infer",model="${model}"`;
  return {
    n: get('xpkg_serve_request_duration_seconds_count', route),
    requestMs: get('xpkg_serve_request_duration_seconds_sum', route) * 1000,
    workerMs: get('xpkg_serve_stage_duration_seconds_sum', `model="${model}",stage="worker"`) * 1000,
    // 0 from a build without the stage (--before)
    receiveMs: get('xpkg_serve_stage_duration_seconds_sum', `model="${model}",stage="receive"`) * 1000,
  };
}

/** p50 and p99 (ms) of one series that bench/serve_floor.py measured. */
type Floor = { p50: number; p99: number; n: number };

/**
 * The floors with no Node on the client (bench/serve_floor.py, Python's blocking sockets): the kernel's
 * own loopback cost for a request of `px.length` bytes plus a small header, and the daemon's wall time
 * less the run as that independent client sees it. Undefined where python3 is missing.
 */
export function pythonFloors(
  daemonUrl: string,
  model: string,
  px: Buffer,
  side: number,
  runs: number,
  /** The bare fastify floor (startFloor) and how long it holds each answer: the run's time in process. */
  held?: { url: string; ms: number },
): { kernel: Floor; daemon: Floor; daemonWall: Floor; held?: Floor } | undefined {
  // run from the repository's root, as bench/serve.ts is (its compiled copy included)
  const script = resolve('bench/serve_floor.py');
  const py = (args: string[]) => JSON.parse(execFileSync('python3', [script, ...args], { encoding: 'utf8' }));
  const dir = mkdtempSync(join(tmpdir(), 'xpkg-floor-'));
  try {
    const kernel = py(['kernel', String(px.length + 200), String(runs)]).wall as Floor;
    writeFileSync(join(dir, 'pixels'), px);
    const v2 = (url: string, hold?: number) =>
      py([
        'v2',
        new URL(url).port,
        model,
        join(dir, 'pixels'),
        String(side),
        String(runs),
        ...(hold ? [String(hold)] : []),
      ]);
    const d = v2(daemonUrl);
    return {
      kernel,
      daemon: d.wallLessRun,
      daemonWall: d.wall,
      ...(held ? { held: v2(held.url, held.ms).wallLessRun } : {}),
    };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
