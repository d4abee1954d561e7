/**
 * Hot swap under load: a closed-loop load generator runs while a newer version is dropped into the
 * repository, then a broken one, then the file is deleted and restored. While a version is present
 * no request fails; every response comes from one whole verified version (the version it names is
 * the one whose model answered: v1 adds 1, v2 adds 2); the switch happens within a bounded time.
 * Also: the memory budget refuses a swap that cannot hold two copies.
 */
import { copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addModel,
  dropIn,
  http,
  idOf,
  postJson,
  type TestServer,
  testServer,
  until,
  versionedPackage,
} from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

const NAME = 'multi-variant-add-one';
const SWITCH_BOUND_MS = 15_000;
let v1: string;
let v2: string;
let broken: string;
const ids: Record<string, number> = {};

beforeAll(async () => {
  v1 = await versionedPackage({ sequence: 1, k: 1 });
  v2 = await versionedPackage({ sequence: 2, k: 2 });
  // sequence 3, signed, but one byte of each model file changed after signing: opens, then fails to load
  broken = await versionedPackage({ sequence: 3, k: 3 });
  const bytes = await readFile(broken);
  const model = addModel(3);
  let damaged = 0;
  for (let at = bytes.indexOf(model); at >= 0; at = bytes.indexOf(model, at + 1), damaged++) bytes[at + 20] ^= 0xff;
  expect(damaged).toBe(3);
  await writeFile(broken, bytes);
  ids[await idOf(v1)] = 1;
  ids[await idOf(v2)] = 2;
});

interface Sample {
  sent: number;
  status: number;
  code?: string;
  version?: string;
  ok: boolean;
}

/** Closed loop: `workers` clients, each sending the next request as soon as the last one answered. */
function loadGenerator(url: string, workers: number) {
  const samples: Sample[] = [];
  let stop = false;
  const loops = Array.from({ length: workers }, async (_, w) => {
    for (let i = 0; !stop; i++) {
      const x = (w * 1000 + i) % 4096;
      const sent = performance.now();
      try {
        const r = await postJson(`${url}/v2/models/${NAME}/infer`, {
          inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [x] }],
        });
        const version = r.body.model_version as string | undefined;
        const k = version ? ids[version] : undefined;
        // whole: the version named is a verified one, and its model computed the answer
        const ok = r.status === 200 && k !== undefined && r.body.outputs[0].data[0] === x + k;
        samples.push({ sent, status: r.status, code: r.body.code, version, ok });
      } catch (e) {
        samples.push({ sent, status: 0, code: String(e), ok: false });
      }
    }
  });
  return {
    samples,
    stop: async () => {
      stop = true;
      await Promise.all(loops);
    },
  };
}

describe('hot swap under a closed-loop load', () => {
  let s: TestServer;
  let repo: string;
  beforeAll(async () => {
    repo = tempDir('xpkg-serve-repo-');
    await copyFile(v1, join(repo, 'adder.xpkg'));
    s = await testServer({ repo, concurrency: 4, drainMs: 5000 });
  });
  afterAll(async () => s?.close());

  it('newer version → swapped with no failure; broken version → refused, old keeps serving; delete → unloads; restore → serves', async () => {
    const id1 = await idOf(v1);
    const id2 = await idOf(v2);
    const load = loadGenerator(s.url, 4);
    const mark = () => performance.now();
    await new Promise((r) => setTimeout(r, 500));

    // 1. a newer version
    const tSwap = mark();
    await dropIn(v2, repo, 'adder.xpkg');
    await until(
      () => load.samples.some((x) => x.sent > tSwap && x.version === id2),
      SWITCH_BOUND_MS,
      'the first v2 response',
      s,
    );
    const firstV2 = load.samples.find((x) => x.sent > tSwap && x.version === id2)!.sent - tSwap;
    await new Promise((r) => setTimeout(r, 500));
    const tSwitched = mark();

    // 2. a broken one (higher sequence, damaged model): refused, v2 keeps serving
    const refused = new Promise<{ reason: { code: string } }>((r) => s.repository.once('refused', r));
    await dropIn(broken, repo, 'adder.xpkg');
    const why = await refused;
    expect(why.reason.code).toBe('E_DIGEST_MISMATCH');
    await new Promise((r) => setTimeout(r, 300));

    // 3. deleted, then restored
    const tDelete = mark();
    const unloaded = new Promise((r) => s.repository.once('unloaded', r));
    await rm(join(repo, 'adder.xpkg'));
    await unloaded;
    const tGone = mark();
    await new Promise((r) => setTimeout(r, 300));
    const tRestore = mark();
    await dropIn(v2, repo, 'adder.xpkg');
    await until(
      () => load.samples.some((x) => x.sent > tRestore && x.ok),
      SWITCH_BOUND_MS,
      'serving again after the restore',
      s,
    );
    const back = load.samples.find((x) => x.sent > tRestore && x.ok)!.sent;
    await new Promise((r) => setTimeout(r, 500));
    await load.stop();

    const present = load.samples.filter((x) => x.sent < tDelete || x.sent > back);
    const absent = load.samples.filter((x) => x.sent > tGone && x.sent < tRestore);
    const failed = present.filter((x) => !x.ok);
    expect(failed).toEqual([]);
    expect(present.length).toBeGreaterThan(100);
    // while no version is present, requests are told so (404 or 503 with a code), nothing else
    expect(absent.length).toBeGreaterThan(0);
    for (const x of absent) expect(['E_SERVE_MODEL_UNKNOWN', 'E_SERVE_UNAVAILABLE']).toContain(x.code);
    // every response names one verified version; after the first v2 answer, v1 is never seen again for new requests
    expect(new Set(present.map((x) => x.version))).toEqual(new Set([id1, id2]));
    const lastV1 = Math.max(...present.filter((x) => x.version === id1).map((x) => x.sent));
    expect(load.samples.filter((x) => x.sent > tSwitched && x.version === id1)).toEqual([]);
    expect(lastV1 - tSwap).toBeLessThan(SWITCH_BOUND_MS);
    expect(firstV2).toBeLessThan(SWITCH_BOUND_MS);
    const m = (await http(`${s.url}/metrics`)).raw.toString();
    expect(m).toMatch(new RegExp(`xpkg_serve_swap_events_total\\{model="${NAME}",event="swapped"\\} 1`));
    expect(m).toMatch(new RegExp(`xpkg_serve_swap_events_total\\{model="${NAME}",event="refused"\\} 1`));
    expect(m).toMatch(new RegExp(`xpkg_serve_swap_events_total\\{model="${NAME}",event="unloaded"\\} 1`));
    const swapLine = s.lines.find((l) => l.msg === 'swapped to a new version');
    expect(swapLine).toMatchObject({ model: NAME, version: id2, from: id1, sequence: 2 });
    const refusedLine = s.lines.find((l) => l.msg === 'package refused; what was serving keeps serving');
    expect(refusedLine).toMatchObject({ code: 'E_DIGEST_MISMATCH', name: NAME, sequence: 3 });
    console.log(
      `swap: ${present.length} requests while present, 0 failed; first v2 answer ${firstV2.toFixed(0)} ms after the drop-in, last v1 request sent ${(lastV1 - tSwap).toFixed(0)} ms after it`,
    );
  });

  it('a lower sequence than the one serving is refused by the signer state (E_POLICY_ROLLBACK); the serving version stays', async () => {
    const refused = new Promise<{ reason: { code: string } }>((r) => s.repository.once('refused', r));
    await dropIn(v1, repo, 'older.xpkg');
    // the signer's anti-rollback state (signing/) refuses it when it is opened
    expect((await refused).reason.code).toBe('E_POLICY_ROLLBACK');
    const r = await postJson(`${s.url}/v2/models/${NAME}/infer`, {
      inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [5] }],
    });
    expect([r.body.model_version, r.body.outputs[0].data]).toEqual([await idOf(v2), [7]]);
    await rm(join(repo, 'older.xpkg'));
  });
});

describe('memory budget', () => {
  it('a swap that cannot hold two copies is refused with E_SERVE_MEMORY while the old version serves', async () => {
    const repo = tempDir('xpkg-serve-repo-');
    await copyFile(v1, join(repo, 'adder.xpkg'));
    const probe = await testServer({ repo });
    const one = [...probe.repository.models.get(NAME)!.versions.values()][0].memory;
    await probe.close();
    const s = await testServer({ repo, memoryBudget: Math.round(one * 1.5) });
    try {
      const refused = new Promise<{ reason: { code: string; detail: { budget: number } } }>((r) =>
        s.repository.once('refused', r),
      );
      await dropIn(v2, repo, 'adder.xpkg');
      const why = await refused;
      expect(why.reason.code).toBe('E_SERVE_MEMORY');
      const r = await postJson(`${s.url}/v2/models/${NAME}/infer`, {
        inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [1] }],
      });
      expect([r.status, r.body.model_version]).toEqual([200, await idOf(v1)]);
    } finally {
      await s.close();
    }
  });
});
