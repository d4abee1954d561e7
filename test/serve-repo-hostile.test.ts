/**
 * The model repository under hostile filesystem events and timing, on a real daemon over loopback:
 * copies and hard links of the serving package, renames, a file deleted and written back within the
 * settle time, things that are not regular files (FIFO, folder, dangling link) and odd names, a
 * replacement while the previous swap is still loading, the repository API's unload racing a
 * watcher's load, a stop during a swap, and a worker closed during a step. After each: requests are
 * answered by one whole version or a documented code, the index and metrics tell the truth, and no
 * worker process is left behind.
 */
import { execFileSync } from 'node:child_process';
import { copyFile, link, mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ModelWorker } from '../serve/worker-handle.js';
import { childPids, fdCount } from './helpers/proc.js';
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
/** Package id → k (its model adds k). */
const kOf: Record<string, number> = {};
const ids: Record<number, string> = {};

beforeAll(async () => {
  const v = await versions([1, 2, 3]);
  Object.assign(pkgs, v.pkgs);
  Object.assign(ids, v.ids);
  for (const k of [1, 2, 3]) kOf[ids[k]] = k;
});

const pool = serverPool();
afterEach(() => pool.closeAll());
const serve = pool.serve;
const infer = inferVersioned;

/** One closed-loop client; every answer is kept as ok (200 from one whole version) or its status and code. */
function client(url: string) {
  const bad: { status: number; code?: string }[] = [];
  let ok = 0;
  let stop = false;
  const loop = (async () => {
    for (let x = 0; !stop; x = (x + 1) % 1000) {
      const r = await infer(url, x).catch((e: unknown) => ({ status: 0, body: { code: String(e) } }) as const);
      const b = r.body as { model_version?: string; outputs?: { data: number[] }[]; code?: string };
      const k = b.model_version ? kOf[b.model_version] : undefined;
      if (r.status === 200 && k !== undefined && b.outputs?.[0].data[0] === x + k) ok++;
      else bad.push({ status: r.status, code: b.code });
    }
  })();
  return {
    done: async () => {
      stop = true;
      await loop;
      return { ok, bad };
    },
  };
}

const index = async (s: TestServer) =>
  (await postJson(`${s.url}/v2/repository/index`, {})).body as {
    file: string;
    name: string;
    state: string;
    version?: string;
    sequence?: number;
    error?: { code: string };
  }[];

async function metric(s: TestServer, re: RegExp): Promise<number | undefined> {
  const m = re.exec((await http(`${s.url}/metrics`)).raw.toString());
  return m ? Number(m[1]) : undefined;
}
const unloadedEvents = (s: TestServer) =>
  metric(s, new RegExp(`xpkg_serve_swap_events_total\\{model="${NAME}",event="unloaded"\\} (\\d+)`));
const loadedVersions = (s: TestServer) =>
  metric(s, new RegExp(`xpkg_serve_loaded_versions\\{model="${NAME}"\\} (\\d+)`));

/** Waits for the folder to have been looked at after a change: settle time, then the queue. */
async function settled(s: TestServer, settleMs: number): Promise<void> {
  await new Promise((r) => setTimeout(r, settleMs * 2 + 400));
  await s.repository.idle();
}

const workers = (s: TestServer) =>
  [...s.repository.models.values()].flatMap((e) => [...e.versions.values()].flatMap((v) => v.pids()));

describe('copies, links and renames of the serving package', () => {
  it('a hard link is standby, not a second READY; deleting the serving name hands over; renaming keeps serving', async () => {
    const repo = tempDir('xpkg-hostile-');
    await copyFile(pkgs[1], join(repo, 'a.xpkg'));
    const s = await serve(repo);
    await link(join(repo, 'a.xpkg'), join(repo, 'b.xpkg'));
    await until(async () => (await index(s)).length === 2, BOUND, 'the link in the index', s);
    await settled(s, 100);
    // one file serves a version; a copy of it waits
    expect((await index(s)).map((x) => [x.file, x.state, x.version])).toEqual([
      ['a.xpkg', 'READY', ids[1]],
      ['b.xpkg', 'UNAVAILABLE', ids[1]],
    ]);
    const c = client(s.url);
    await rm(join(repo, 'a.xpkg'));
    await until(async () => (await index(s)).length === 1, BOUND, 'a.xpkg gone from the index', s);
    expect((await index(s)).map((x) => [x.file, x.state])).toEqual([['b.xpkg', 'READY']]);
    await rename(join(repo, 'b.xpkg'), join(repo, 'c.xpkg'));
    await until(async () => (await index(s))[0]?.file === 'c.xpkg', BOUND, 'c.xpkg in the index', s);
    await settled(s, 100);
    const { ok, bad } = await c.done();
    expect(bad).toEqual([]);
    expect(ok).toBeGreaterThan(0);
    expect((await index(s)).map((x) => [x.file, x.state])).toEqual([['c.xpkg', 'READY']]);
    expect(await unloadedEvents(s)).toBeUndefined();
    expect(await loadedVersions(s)).toBe(1);
    expect(workers(s)).toHaveLength(1);
  });

  it('a file deleted and written back within the settle time is a replacement, not an unload', async () => {
    const repo = tempDir('xpkg-hostile-');
    await copyFile(pkgs[1], join(repo, 'a.xpkg'));
    const settleMs = 1500;
    const s = await serve(repo, { settleMs });
    const c = client(s.url);
    await rm(join(repo, 'a.xpkg'));
    await copyFile(pkgs[1], join(repo, '.a.tmp'));
    await rename(join(repo, '.a.tmp'), join(repo, 'a.xpkg'));
    await settled(s, settleMs);
    // the same again with a newer version: a swap, with no gap in between
    await rm(join(repo, 'a.xpkg'));
    await dropIn(pkgs[2], repo, 'a.xpkg');
    await until(
      async () => (await index(s)).some((x) => x.sequence === 2 && x.state === 'READY'),
      BOUND,
      'v2 serving',
      s,
    );
    const { ok, bad } = await c.done();
    expect(bad).toEqual([]);
    expect(ok).toBeGreaterThan(0);
    expect(await unloadedEvents(s)).toBeUndefined();
  });
});

describe('what is not a regular file, and odd names', () => {
  it('FIFOs, folders and dangling links never block the watcher; a link out of the folder serves; a link gone bad unloads', async () => {
    const repo = tempDir('xpkg-hostile-');
    const outside = tempDir('xpkg-hostile-out-');
    const other = await versionedPackage({ sequence: 1, k: 7, name: 'odd-name' });
    await copyFile(pkgs[1], join(outside, 'target.xpkg'));
    execFileSync('mkfifo', [join(repo, 'fifo.xpkg')]);
    await mkdir(join(repo, 'dir.xpkg'));
    await symlink('/nonexistent/x.xpkg', join(repo, 'dangling.xpkg'));
    await symlink(join(outside, 'target.xpkg'), join(repo, 'linked.xpkg'));
    for (let i = 0; i < 2000; i++) await writeFile(join(repo, `noise-${i}.txt`), 'x');
    const s = await serve(repo);
    await dropIn(other, repo, 'sp ace ü\n.xpkg');
    await until(
      async () => (await index(s)).some((x) => x.name === 'odd-name' && x.state === 'READY'),
      BOUND,
      'the oddly named file serving',
      s,
    );
    expect((await index(s)).map((x) => [x.file, x.state]).sort()).toEqual([
      ['linked.xpkg', 'READY'],
      ['sp ace ü\n.xpkg', 'READY'],
    ]);
    expect((await infer(s.url)).status).toBe(200);
    // the link's target deleted: the file the model came from is gone
    await rm(join(outside, 'target.xpkg'));
    await until(async () => (await index(s)).length === 1, BOUND, 'linked.xpkg gone from the index', s);
    await until(async () => (await loadedVersions(s)) === 0, BOUND, 'the version unloaded', s);
    const r = await infer(s.url);
    expect([r.status, r.body.code]).toEqual([404, 'E_SERVE_MODEL_UNKNOWN']);
    // a serving file replaced by a folder of the same name is gone too
    await rm(join(repo, 'sp ace ü\n.xpkg'));
    await mkdir(join(repo, 'sp ace ü\n.xpkg'));
    await until(async () => (await index(s)).length === 0, BOUND, 'the file replaced by a folder unloaded', s);
  });
});

describe('rapid changes', () => {
  it('replaced again while the previous swap is still loading: the newest serves, the one between leaks nothing', async () => {
    const repo = tempDir('xpkg-hostile-');
    await copyFile(pkgs[1], join(repo, 'a.xpkg'));
    const before = childPids();
    const s = await serve(repo);
    const c = client(s.url);
    await dropIn(pkgs[2], repo, 'a.xpkg');
    await until(() => s.repository.index()[0]?.state === 'LOADING', BOUND, 'v2 loading', s);
    await dropIn(pkgs[3], repo, 'a.xpkg');
    await until(
      async () => (await index(s)).some((x) => x.sequence === 3 && x.state === 'READY'),
      BOUND,
      'v3 serving',
      s,
    );
    await until(async () => (await loadedVersions(s)) === 1, BOUND, 'the old versions unloaded', s);
    const { ok, bad } = await c.done();
    expect(bad).toEqual([]);
    expect(ok).toBeGreaterThan(0);
    expect((await infer(s.url)).body.model_version).toBe(ids[3]);
    await until(() => childPids().length === before.length + 1, BOUND, 'one worker left', s);
    expect(workers(s)).toHaveLength(1);
  });
});

describe('the repository API racing the watcher', () => {
  it("an unload while a file's new version warms up holds: that version does not serve, nor does a later file", async () => {
    const repo = tempDir('xpkg-hostile-');
    await copyFile(pkgs[1], join(repo, 'a.xpkg'));
    const before = childPids();
    // two workers per version: the second one starts in the warm-up, after the checks made at open
    const s = await serve(repo, { workers: 2 });
    await dropIn(pkgs[2], repo, 'a.xpkg');
    await until(() => childPids().length === before.length + 4, BOUND, 'v2 warming up', s);
    expect(s.repository.index()[0]?.state).toBe('LOADING');
    const un = await postJson(`${s.url}/v2/repository/models/${NAME}/unload`, {});
    expect(un.status).toBe(200);
    await s.repository.idle();
    expect((await http(`${s.url}/v2/models/${NAME}/ready`)).status).toBe(400);
    await dropIn(pkgs[3], repo, 'a.xpkg');
    await until(
      async () => (await index(s)).some((x) => x.sequence === 3 && x.state === 'UNAVAILABLE'),
      BOUND,
      'v3 seen and held',
      s,
    );
    expect((await http(`${s.url}/v2/models/${NAME}/ready`)).status).toBe(400);
    expect(await loadedVersions(s)).toBe(0);
    // an API load releases the hold
    const loaded = await postJson(`${s.url}/v2/repository/models/${NAME}/load`, {});
    expect([loaded.status, loaded.body.version]).toEqual([200, ids[3]]);
  });
});

describe('stopping', () => {
  it('a stop during a swap ends the load: no swap, no refusal, no worker or descriptor left', async () => {
    const repo = tempDir('xpkg-hostile-');
    await copyFile(pkgs[1], join(repo, 'a.xpkg'));
    const children = childPids();
    const fds = fdCount();
    const s = await testServer({ repo });
    const events: string[] = [];
    s.repository.on('swapped', () => events.push('swapped'));
    s.repository.on('refused', () => events.push('refused'));
    await dropIn(pkgs[2], repo, 'a.xpkg');
    await until(() => s.repository.index()[0]?.state === 'LOADING', BOUND, 'v2 loading', s);
    await s.close();
    expect(events).toEqual([]);
    await until(() => childPids().length === children.length, BOUND, 'the workers gone');
    await until(() => fdCount() <= fds, BOUND, 'the descriptors closed');
  });

  it('a worker closed while it opens a package: the open fails instead of hanging', async () => {
    const w = ModelWorker.spawn('process');
    const opening = w.open(pkgs[1], { trust: TRUST, stateDir: tempDir() });
    const closed = w.close();
    const settledOpen = await Promise.race([
      opening.then(
        () => 'opened',
        (e: { code?: string }) => e.code ?? 'failed',
      ),
      new Promise((r) => setTimeout(() => r('pending'), 15_000)),
    ]);
    await closed;
    expect(settledOpen).not.toBe('pending');
    expect(w.exited).toBe(true);
  });
});
