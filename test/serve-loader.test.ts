/**
 * The daemon's loader on a real daemon over loopback, with real signed packages: a load that never
 * finishes is abandoned at its deadline (E_SERVE_TIMEOUT) and the next load goes on; a file replaced
 * while a version with two workers warms up is set aside as superseded, not refused; a version
 * draining after an unload holds up no other load, and counts against the memory budget until it is
 * gone. A worker that never answers is made with SIGSTOP (as one stuck in native code would be).
 */
import { execFileSync } from 'node:child_process';
import { copyFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ModelWorker } from '../serve/worker-handle.js';
import { childPids } from './helpers/proc.js';
import {
  dropIn,
  http,
  inferVersioned,
  postJson,
  serverPool,
  type TestServer,
  TRUST,
  testServer,
  until,
  VERSIONED,
  versionedPackage,
  versions,
} from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

const NAME = VERSIONED;
const BOUND = 20_000;
const pkgs: Record<number, string> = {};
const ids: Record<number, string> = {};
let second: string;

beforeAll(async () => {
  const v = await versions([1, 2, 3]);
  Object.assign(pkgs, v.pkgs);
  Object.assign(ids, v.ids);
  second = await versionedPackage({ sequence: 1, k: 5, name: 'second-model' });
});

const pool = serverPool();
/** Stopped workers are let go again whatever happens, so that a failed test still stops its daemon. */
let stopped: number[] = [];
afterEach(async () => {
  for (const pid of stopped) resume(pid);
  stopped = [];
  await pool.closeAll();
});
const serve = pool.serve;
function pause(pid: number): void {
  process.kill(pid, 'SIGSTOP');
  stopped.push(pid);
}
function resume(pid: number): void {
  try {
    process.kill(pid, 'SIGCONT');
  } catch {
    // gone already
  }
}

const infer = inferVersioned;

type Entry = { file: string; name: string; state: string; version?: string; reason?: string; error?: { code: string } };
const index = async (s: TestServer) => (await postJson(`${s.url}/v2/repository/index`, {})).body as Entry[];
const entry = async (s: TestServer, file: string) => (await index(s)).find((x) => x.file === file);

async function metric(s: TestServer, re: RegExp): Promise<number | undefined> {
  const m = re.exec((await http(`${s.url}/metrics`)).raw.toString());
  return m ? Number(m[1]) : undefined;
}
const swapEvents = (s: TestServer, event: string, model = NAME) =>
  metric(s, new RegExp(`xpkg_serve_swap_events_total\\{model="${model}",event="${event}"\\} (\\d+)`));
const loadedVersions = (s: TestServer, model = NAME) =>
  metric(s, new RegExp(`xpkg_serve_loaded_versions\\{model="${model}"\\} (\\d+)`));
const workers = (s: TestServer) =>
  [...s.repository.models.values()].flatMap((e) => [...e.versions.values()].flatMap((v) => v.pids()));
const refusals = (s: TestServer) => s.lines.filter((l) => l.msg === 'package refused; what was serving keeps serving');

/** The next worker process started, other than `known`: found as soon as it exists. */
async function nextWorker(s: TestServer, known: number[], what: string): Promise<number> {
  let pid: number | undefined;
  await until(
    () => {
      pid = childPids().find((p) => !known.includes(p));
      return pid !== undefined;
    },
    BOUND,
    what,
    s,
  );
  return pid!;
}

describe('the load deadline', () => {
  it('a load that never finishes is abandoned: refused E_SERVE_TIMEOUT, its worker killed, the old version serves, the next load goes on', async () => {
    const repo = tempDir('xpkg-loader-');
    await copyFile(pkgs[1], join(repo, 'a.xpkg'));
    // loads at the workers' niceness from the start (no patience at 19): on a busy machine a load
    // held at 19 could outlast the deadline, and v3's load below must not (a fresh-clone CI run
    // beside other work refused it too with a 3 s deadline)
    const s = await serve(repo, { loadTimeoutMs: 8000, loadPatienceMs: 0 });
    const refused = new Promise<{ reason: { code: string } }>((r) => s.repository.once('refused', r));
    const before = childPids();
    await dropIn(pkgs[2], repo, 'a.xpkg');
    // the incoming version's worker never answers again
    const stuck = await nextWorker(s, before, 'the incoming worker');
    pause(stuck);
    const why = await Promise.race([
      refused,
      new Promise<never>((_, no) => setTimeout(() => no(new Error('no refusal within the bound')), BOUND)),
    ]);
    expect(why.reason.code).toBe('E_SERVE_TIMEOUT');
    expect(refusals(s).at(-1)).toMatchObject({ file: 'a.xpkg', code: 'E_SERVE_TIMEOUT' });
    expect(await entry(s, 'a.xpkg')).toMatchObject({ state: 'UNAVAILABLE', error: { code: 'E_SERVE_TIMEOUT' } });
    await until(() => !childPids().includes(stuck), BOUND, 'the stuck worker killed', s);
    const r = await infer(s.url, 1);
    expect([r.status, r.body.model_version, r.body.outputs[0].data]).toEqual([200, ids[1], [2]]);
    // the queue is free: the next file loads and swaps in
    await dropIn(pkgs[3], repo, 'a.xpkg');
    await until(async () => (await entry(s, 'a.xpkg'))?.state === 'READY', BOUND, 'v3 serving', s);
    expect((await infer(s.url, 1)).body.model_version).toBe(ids[3]);
    expect(await swapEvents(s, 'swapped')).toBe(1);
    await until(async () => (await loadedVersions(s)) === 1, BOUND, 'v1 unloaded', s);
  });

  it('a FIFO where a worker opens a package is refused at once (E_ARCHIVE_SPECIAL_FILE), never waited on', async () => {
    const fifo = join(tempDir('xpkg-loader-'), 'fifo.xpkg');
    execFileSync('mkfifo', [fifo]);
    const w = ModelWorker.spawn('process');
    try {
      const got = await Promise.race([
        w.open(fifo, { trust: TRUST, stateDir: tempDir() }).then(
          () => 'opened',
          (e: { code?: string }) => e.code ?? 'failed',
        ),
        new Promise((r) => setTimeout(() => r('pending'), 15_000)),
      ]);
      expect(got).toBe('E_ARCHIVE_SPECIAL_FILE');
    } finally {
      await w.close();
    }
  });
});

describe('a file replaced while it loads', () => {
  it('with two workers per version: superseded, not refused (logs, metrics, index); the newest file serves', async () => {
    const repo = tempDir('xpkg-loader-');
    await copyFile(pkgs[1], join(repo, 'a.xpkg'));
    const s = await serve(repo, { workers: 2 });
    const events: string[] = [];
    for (const ev of ['refused', 'superseded', 'swapped'])
      s.repository.on(ev, (x: { id?: string; to?: string }) => events.push(`${ev} ${x.id ?? x.to}`));
    const before = childPids();
    await dropIn(pkgs[2], repo, 'a.xpkg');
    // v2's second worker starts in the warm-up, after the first one opened the file: stopped before it
    // opens it in turn, the file is replaced meanwhile, so it finds v3 there
    const first = await nextWorker(s, before, "v2's first worker");
    const other = await nextWorker(s, [...before, first], "v2's second worker");
    pause(other);
    await dropIn(pkgs[3], repo, 'a.xpkg');
    resume(other);
    await until(async () => (await entry(s, 'a.xpkg'))?.version === ids[3], BOUND, 'v3 in the index', s);
    await until(async () => (await entry(s, 'a.xpkg'))?.state === 'READY', BOUND, 'v3 serving', s);
    expect(events).toEqual([`superseded ${ids[2]}`, `swapped ${ids[3]}`]);
    expect(refusals(s)).toEqual([]);
    expect(
      s.lines.find((l) => l.msg === 'package superseded while it loaded; the newer file loads next'),
    ).toMatchObject({ file: 'a.xpkg', id: ids[2], sequence: 2 });
    expect(await swapEvents(s, 'refused')).toBeUndefined();
    expect(await swapEvents(s, 'superseded')).toBe(1);
    const e = await entry(s, 'a.xpkg');
    expect(e?.error).toBeUndefined();
    expect((await infer(s.url, 1)).body.model_version).toBe(ids[3]);
    await until(async () => (await loadedVersions(s)) === 1, BOUND, 'v1 unloaded', s);
    await until(() => workers(s).length === 2, BOUND, "only v3's two workers left", s);
  });
});

describe('draining after an unload', () => {
  it('holds up no load (the same package put back serves at once), and counts against the memory budget until it is gone', async () => {
    const repo = tempDir('xpkg-loader-');
    await copyFile(pkgs[1], join(repo, 'a.xpkg'));
    const probe = await testServer({ repo });
    const one = [...probe.repository.models.get(NAME)!.versions.values()][0].memory;
    await probe.close();
    // room for two loaded versions, not three
    const s = await serve(repo, { drainMs: 90_000, inferTimeoutMs: 120_000, memoryBudget: Math.round(one * 2.5) });
    const [pid] = workers(s);
    pause(pid);
    const held = infer(s.url, 1); // in flight on the stopped worker: the drain waits for it
    await until(() => s.repository.models.get(NAME)?.current?.inflight === 1, BOUND, 'a request in flight', s);
    const unloaded = new Promise((r) => s.repository.once('unloaded', r));
    await rm(join(repo, 'a.xpkg'));
    await unloaded;
    // the same package put back loads beside its draining copy, long before the drain deadline
    await dropIn(pkgs[1], repo, 'a.xpkg');
    await until(async () => (await entry(s, 'a.xpkg'))?.state === 'READY', BOUND, 'v1 serving again', s);
    expect(await loadedVersions(s)).toBe(2);
    expect(childPids()).toContain(pid);
    // the draining copy still counts: a third version does not fit
    const refused = new Promise<{ reason: { code: string } }>((r) => s.repository.once('refused', r));
    await dropIn(second, repo, 'b.xpkg');
    expect((await refused).reason.code).toBe('E_SERVE_MEMORY');
    // drained: the request answers from the old copy, which is then gone
    resume(pid);
    const r = await held;
    expect([r.status, r.body.model_version, r.body.outputs[0].data]).toEqual([200, ids[1], [2]]);
    await until(async () => (await loadedVersions(s)) === 1, BOUND, 'the draining copy unloaded', s);
    await until(() => !childPids().includes(pid), BOUND, "the draining copy's worker gone", s);
    // the copy put back serves on, and the budget has room again
    expect((await infer(s.url, 1)).body.model_version).toBe(ids[1]);
    expect(s.repository.models.get(NAME)!.versions.size).toBe(1);
    await dropIn(second, repo, 'b.xpkg');
    await until(async () => (await entry(s, 'b.xpkg'))?.state === 'READY', BOUND, 'the second model serving', s);
  }, 120_000);
});
