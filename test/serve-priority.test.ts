/**
 * `workerNice` (`xpkg serve --worker-nice`): the model workers run at that niceness, so the event
 * loop gets a contended core first; replacements too. A worker loads its version at niceness 19
 * where that can be undone (serve/priority.ts) and serves at `workerNice`: every one of its threads,
 * onnxruntime's (started while loading) included. Real process workers on the real fixture.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../serve/log.js';
import { LOAD_NICE, loadNiceFor, mayLowerNiceTo } from '../serve/priority.js';
import { LoadedVersion } from '../serve/version.js';
import { ModelWorker } from '../serve/worker-handle.js';
import {
  binaryRequest,
  dropIn,
  http,
  idOf,
  parseBinaryReply,
  type TestServer,
  TRUST,
  testServer,
  until,
  versionedPackage,
} from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

/** The niceness of a process's main thread, from /proc (field 19). */
const niceOf = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[16]);
/** The niceness of every thread of a process. */
const threadNices = (pid: number) =>
  readdirSync(`/proc/${pid}/task`).map((tid) =>
    Number(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1].split(' ')[16]),
  );

describe.skipIf(process.platform !== 'linux')('worker niceness', () => {
  let s: TestServer;
  beforeAll(async () => {
    const repo = tempDir('xpkg-serve-nice-');
    await copyFile('fixtures/dist/multi-variant.xpkg', join(repo, 'multi-variant.xpkg'));
    s = await testServer({ repo, workerNice: 7 });
  }, 60_000);
  afterAll(async () => s?.close());

  it('workers run at the niceness asked for, the daemon at its own; requests are answered', async () => {
    const v = s.repository.models.get('multi-variant-add-one')!.current!;
    const pids = v.pids();
    expect(pids.length).toBeGreaterThan(0);
    for (const pid of pids) expect(niceOf(pid)).toBe(7);
    expect(niceOf(process.pid)).not.toBe(7);
    const x = new Float32Array([1, 2, 3]);
    const r = await http(`${s.url}/v2/models/multi-variant-add-one/infer`, {
      method: 'POST',
      ...binaryRequest(
        {
          inputs: [{ name: 'x', shape: [3], datatype: 'FP32', parameters: { binary_data_size: 12 } }],
          outputs: [{ name: 'y', parameters: { binary_data: true } }],
        },
        [new Uint8Array(x.buffer)],
      ),
    });
    expect(r.status).toBe(200);
    const y = parseBinaryReply(r).outputs.y;
    expect(Array.from(new Float32Array(y.buffer.slice(y.byteOffset, y.byteOffset + y.length)))).toEqual([2, 3, 4]);
  });
});

describe('who may lower a niceness (from /proc/self/status and /proc/self/limits)', () => {
  const limits = (soft: string) => `Limit  Soft Limit  Hard Limit  Units\nMax nice priority  ${soft}  ${soft}\n`;
  it('CAP_SYS_NICE (bit 23 of CapEff) allows any; without it RLIMIT_NICE n allows down to 20 - n', () => {
    expect(mayLowerNiceTo(0, 'CapEff:\t0000000000800000\n', limits('0'))).toBe(true);
    expect(mayLowerNiceTo(0, 'CapEff:\t000001ffffffffff\n', limits('0'))).toBe(true);
    expect(mayLowerNiceTo(0, 'CapEff:\t0000000000000000\n', limits('0'))).toBe(false);
    expect(mayLowerNiceTo(10, 'CapEff:\t0000000000000000\n', limits('10'))).toBe(true);
    expect(mayLowerNiceTo(9, 'CapEff:\t0000000000000000\n', limits('10'))).toBe(false);
    expect(mayLowerNiceTo(0, 'CapEff:\t0000000000000000\n', limits('unlimited'))).toBe(true);
    expect(mayLowerNiceTo(0, '', '')).toBe(false);
  });
  it('thread workers and workers at 19 already load at their serving niceness', () => {
    expect(loadNiceFor('thread', 3)).toBe(3);
    expect(loadNiceFor('process', 19)).toBe(19);
  });
});

describe.skipIf(process.platform !== 'linux')('thread workers', () => {
  it('take the niceness on their own threads; the event loop keeps its own', async () => {
    const repo = tempDir('xpkg-serve-nice-thread-');
    await copyFile('fixtures/dist/multi-variant.xpkg', join(repo, 'multi-variant.xpkg'));
    const before = niceOf(process.pid);
    const t = await testServer({ repo, workerNice: 6, isolation: 'thread' });
    try {
      expect(niceOf(process.pid)).toBe(before);
      // the worker thread and the onnxruntime threads it started are this process's, at 6
      expect(threadNices(process.pid).filter((n) => n === 6).length).toBeGreaterThan(0);
    } finally {
      await t.close();
    }
  }, 60_000);
});

describe.skipIf(process.platform !== 'linux')('a process worker started at a niceness', () => {
  it('has it on every thread before it was told anything (its start runs at that priority too)', async () => {
    const w = ModelWorker.spawn('process', 13);
    try {
      // a first answer (warm before open is refused): the worker is up, its modules loaded
      await expect(w.warm()).rejects.toBeTruthy();
      const nices = threadNices(w.pid!);
      expect(nices.length).toBeGreaterThan(1);
      expect(nices).toEqual(nices.map(() => 13));
    } finally {
      w.kill();
    }
  }, 60_000);
});

describe.skipIf(process.platform !== 'linux')('a version loads at low priority and serves at the asked one', () => {
  const NAME = 'multi-variant-add-one';
  const loadNice = loadNiceFor('process', 5);
  let s: TestServer;
  let repo: string;
  beforeAll(async () => {
    repo = tempDir('xpkg-serve-loadnice-');
    await dropIn(await versionedPackage({ sequence: 1, k: 1 }), repo, 'm.xpkg');
    // patience far above any load here: on a busy machine a niceness-19 load can outlast the default
    // 5 s and go on at 5 (the patience has its own test below), which is not what this one checks
    s = await testServer({ repo, workerNice: 5, isolation: 'process', loadPatienceMs: 120_000 });
  }, 60_000);
  afterAll(async () => s?.close());

  /** The serving version's workers: every thread at 5, and answering. */
  async function servingAt5(k: number) {
    // the request first: with the only worker replaced it waits for the new one to be ready
    const r = await http(`${s.url}/v2/models/${NAME}/infer`, {
      method: 'POST',
      ...binaryRequest({ inputs: [{ name: 'x', shape: [1], datatype: 'FP32', parameters: { binary_data_size: 4 } }] }, [
        new Uint8Array(new Float32Array([1]).buffer),
      ]),
    });
    expect(r.status).toBe(200);
    expect(r.body.outputs[0].data).toEqual([1 + k]);
    const v = s.repository.models.get(NAME)!.current!;
    expect(v.loadedAtNice).toBe(loadNice);
    const pids = v.pids();
    expect(pids.length).toBe(1);
    for (const pid of pids) expect(threadNices(pid)).toEqual(threadNices(pid).map(() => 5));
  }

  it('where the niceness can be lowered again (here: CAP_SYS_NICE or RLIMIT_NICE), loading runs at 19', () => {
    const may = mayLowerNiceTo(5, readFileSync('/proc/self/status', 'utf8'), readFileSync('/proc/self/limits', 'utf8'));
    expect(loadNice).toBe(may ? LOAD_NICE : 5);
  });

  it('the first load, a hot swap and a replaced worker each serve with every thread at 5', async () => {
    await servingAt5(1);
    const v2 = await versionedPackage({ sequence: 2, k: 2 });
    const id2 = await idOf(v2);
    await dropIn(v2, repo, 'm.xpkg');
    await until(() => s.repository.models.get(NAME)?.current?.id === id2, 30_000, 'the swap');
    await servingAt5(2);
    const v = s.repository.models.get(NAME)!.current!;
    const [pid] = v.pids();
    process.kill(pid, 'SIGKILL');
    await until(() => v.pids().length === 1 && !v.pids().includes(pid), 30_000, 'the replacement');
    // ready once reniced: a request now waits for it and runs at 5
    await servingAt5(2);
  }, 90_000);
});

describe.skipIf(process.platform !== 'linux' || loadNiceFor('process', 5) !== LOAD_NICE)(
  'a load that outlasts its patience goes on at the serving niceness',
  () => {
    const config = (loadPatienceMs: number, lines: Record<string, unknown>[]) => ({
      isolation: 'process' as const,
      workers: 1,
      runner: { trust: TRUST, stateDir: tempDir('xpkg-serve-patience-') },
      nice: 5,
      loadNice: LOAD_NICE,
      loadPatienceMs,
      log: createLogger({
        format: 'json',
        level: 'info',
        destination: new Writable({
          write(chunk, _enc, cb) {
            lines.push(JSON.parse(String(chunk)));
            cb();
          },
        }),
      }),
    });

    it('within its patience the opened worker is at 19 on every thread; past it, at 5 before warming up', async () => {
      const pkg = await versionedPackage({ sequence: 1, k: 1 });
      const patient: Record<string, unknown>[] = [];
      const a = await LoadedVersion.open(pkg, config(60_000, patient));
      const late: Record<string, unknown>[] = [];
      const b = await LoadedVersion.open(pkg, config(0, late));
      try {
        const [pa] = a.pids();
        const [pb] = b.pids();
        expect(threadNices(pa)).toEqual(threadNices(pa).map(() => LOAD_NICE));
        expect(threadNices(pb)).toEqual(threadNices(pb).map(() => 5));
        expect(patient.some((l) => String(l.msg).includes('patience'))).toBe(false);
        const said = late.find((l) => String(l.msg).includes('patience'));
        expect(said).toMatchObject({ load: pkg, patienceMs: 0, nice: 5 });
        // the warm-up goes on at 5 and the version serves there
        await b.warm();
        expect(threadNices(pb)).toEqual(threadNices(pb).map(() => 5));
        const r = await b.run({ x: { type: 'float32', dims: [1], data: new Float32Array([1]) } });
        expect(Array.from((Object.values(r.outputs)[0] as { data: Float32Array }).data)).toEqual([2]);
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    }, 60_000);
  },
);
