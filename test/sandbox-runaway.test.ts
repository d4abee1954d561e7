/**
 * Runaways in promise jobs (issue 10, defect 7): after a hook that floods or loops in promise
 * jobs fails, the NEXT call of a healthy script on the same sandbox must succeed. Before the fix,
 * rebuilding the QuickJS runtime after such a timeout sometimes aborted the WebAssembly module
 * (`list_empty(&rt->gc_obj_list)` in JS_FreeRuntime), the worker exited, and the next call failed
 * with E_SANDBOX_KILLED: intermittent, so each shape runs in a loop.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { liveSandboxThreads, Sandbox } from '../sandbox/index.js';
import type { SandboxErrorCode } from '../spec/errors.js';
import { codeOf } from './helpers/errors.js';

const ROUNDS = 20;
const DEADLINE = 100;
const LONG = 10_000;
/** Generous, so that a loaded machine turns no interrupt into a watchdog kill. */
const GRACE = 2000;

const RUNAWAYS = `
export async function chainAwait() { const f = () => Promise.resolve().then(f); f(); await new Promise(() => {}); }
export function chainNoAwait() { const f = () => Promise.resolve().then(f); f(); return 1; }
export async function asyncGenerator() { async function* g() { for (;;) yield 1; } for await (const _ of g()) {} }
export function jobFlood() { for (;;) Promise.resolve().then(() => {}); }
export async function loopInThen() { await Promise.resolve().then(() => { for (;;) {} }); }
export async function memoryInJob() { await null; const a = []; for (;;) a.push({ k: 'v' + a.length }); }
`;
const HEALTHY = `export function ok(input) { return { sum: input.a + input.b }; }`;

/** Hook, the code it fails with, its deadline (long for memory: the heap fills first), heap MiB. */
/** Rounds: each memory failure replaces the worker, seconds on a busy machine. */
const SHAPES: [string, SandboxErrorCode, number, number, number][] = [
  ['chainAwait', 'E_SANDBOX_TIMEOUT', DEADLINE, 64, ROUNDS],
  ['chainNoAwait', 'E_SANDBOX_TIMEOUT', DEADLINE, 64, ROUNDS],
  ['asyncGenerator', 'E_SANDBOX_TIMEOUT', DEADLINE, 64, ROUNDS],
  ['loopInThen', 'E_SANDBOX_TIMEOUT', DEADLINE, 64, ROUNDS],
  // The heap fills within a second; in some heap layouts QuickJS then spins without failing until
  // the deadline, which (memory full) is reported as running out: a shorter deadline.
  ['jobFlood', 'E_SANDBOX_MEMORY', 3000, 8, 4],
  ['memoryInJob', 'E_SANDBOX_MEMORY', LONG, 8, 4],
];

describe('a runaway in promise jobs does not break the next call', () => {
  let sb: Sandbox;
  const healthy = () => sb.call('ok', { a: 2, b: 3 });
  const open = async (memoryMiB: number) => {
    const s = await Sandbox.create({ policy: { memoryMiB, timeMs: LONG }, caps: { graceMs: GRACE } });
    await s.load(RUNAWAYS + HEALTHY, 'scripts.js');
    return s;
  };

  beforeAll(async () => {
    sb = await open(64);
  });
  afterAll(async () => {
    await sb.close();
    expect(liveSandboxThreads()).toBe(0);
  });

  it.each(SHAPES)(
    '%s fails with %s and the next call succeeds, again and again',
    async (hook, code, deadlineMs, memoryMiB, rounds) => {
      // A sandbox of its own, so that no earlier shape shapes the heap this one runs in.
      await using sb = await open(memoryMiB);
      const healthy = () => sb.call('ok', { a: 2, b: 3 });
      const seen: string[] = [];
      for (let i = 0; i < rounds; i++) {
        seen.push(await codeOf(sb.call(hook, {}, { deadlineMs })));
        seen.push(await codeOf(healthy()));
      }
      const expected = Array.from({ length: rounds }, () => [code, 'OK']).flat();
      expect(seen).toEqual(expected);
      expect(await healthy()).toEqual({ sum: 5 });
      const s = await sb.stats();
      expect(s.runtimes).toBe(1);
      expect(s.contexts).toBe(1);
      expect(s.pendingJobs).toBe(false);
    },
    120_000,
  );

  it(`the issue's hook, on a sandbox with default limits, ${ROUNDS} times: each call after it succeeds`, async () => {
    // Verbatim from the report. Timing-dependent: run as a plain tsx script it failed 2–3 rounds in
    // 20 before the fix; under vitest the engine's abort did not show in the runs tried.
    await using own = await Sandbox.create();
    await own.load(
      `export async function run() { const f = () => Promise.resolve().then(f); f(); await new Promise(() => {}); }\nexport function ok() { return 'ok'; }`,
      'issue.js',
    );
    const seen: string[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      await codeOf(own.call('run', {}, { deadlineMs: DEADLINE }));
      seen.push(await codeOf(own.call('ok')));
    }
    expect(seen).toEqual(Array.from({ length: ROUNDS }, () => 'OK'));
  }, 120_000);

  it("the issue's hook in a plain process (where the engine used to print its abort): every healthy call after it succeeds", async () => {
    // Before the fix, 38 of 40 healthy calls failed here with E_SANDBOX_KILLED (the worker exited
    // after QuickJS aborted freeing the runtime); after it, none fail and the worker is replaced.
    const child = spawn(process.execPath, ['test/helpers/runaway-repro.mjs', '20'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const [status] = (await once(child, 'close')) as [number | null];
    expect(status).toBe(0);
    // the engine's abort message stays in the sandbox (the failure carries it), off the process's stderr
    expect(err).not.toMatch(/Aborted\(/);
    const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as {
      rounds: number;
      failed: string[];
      respawns: number;
    };
    expect(r.rounds).toBe(20);
    expect(r.failed).toEqual([]);
  }, 120_000);

  it('a worker terminated between calls is replaced and the next call succeeds', async () => {
    for (let i = 0; i < 5; i++) {
      const before = (await sb.stats()).workersStarted;
      // The sandbox's own thread, killed from outside (as a crash of the thread would).
      const worker = (sb as unknown as { thread: { worker: Worker } }).thread.worker;
      await worker.terminate();
      expect(await healthy()).toEqual({ sum: 5 });
      expect((await sb.stats()).workersStarted).toBe(before + 1);
    }
  });

  it('a worker told to terminate just before a call is replaced and the call succeeds', async () => {
    for (let i = 0; i < 5; i++) {
      const worker = (sb as unknown as { thread: { worker: Worker } }).thread.worker;
      const dying = worker.terminate();
      expect(await healthy()).toEqual({ sum: 5 });
      await dying;
    }
    expect(await healthy()).toEqual({ sum: 5 });
  });
});
