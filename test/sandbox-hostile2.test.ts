/**
 * More hostile scripts against sandbox/ (see sandbox-escape.test.ts for the first set): each one
 * found a weakness that is fixed now. Every case must fail with its code (or succeed) within a
 * bounded time, and the NEXT call must work. Limits are small so that runaways end fast.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CallScope, decodeFromGuest } from '../sandbox/codec.js';
import { basicKernels, liveSandboxThreads, Sandbox, type SandboxTensor } from '../sandbox/index.js';
import { codeOf } from './helpers/errors.js';

const DEADLINE = 200;
const LONG = 10_000;
const GRACE = 300;
const options = {
  policy: { memoryMiB: 32, timeMs: LONG, stackKiB: 256 },
  caps: { graceMs: GRACE, copyBytes: 256 * 1024, outputBytes: 256 * 1024, hostTensorMiB: 64 },
  kernels: basicKernels,
};
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

const HOSTILE = `
export function ok() { return 'ok'; }
// Leaves a toJSON on Object.prototype that never returns; returns a string, which never reaches it.
export function poisonToJSON() {
  Object.defineProperty(Object.prototype, 'toJSON', { value() { for (;;) {} }, configurable: true, writable: true });
  Object.defineProperty(Array.prototype, 'toJSON', { get() { for (;;) {} }, configurable: true });
  return 'poisoned';
}
// Host kernels with sizes the script chose: work and memory on the host, where nothing interrupts.
export function resizeBomb(input, ctx) { const t = ctx.tensor('float32', [1, 1, 3], [1, 2, 3]); return ctx.kernels.resize(t, { width: 8192, height: 8192 }).shape; }
export function gatherBomb(input, ctx) { const x = ctx.tensor('float32', [1, 65536], new Float32Array(65536)); return ctx.kernels.gather(x, ctx.tensor('int32', [2048], new Int32Array(2048))).shape; }
export function argmaxEmptyAxis(input, ctx) { return ctx.kernels.argmax(ctx.tensor('float32', [2 ** 31, 0], [])).values.shape; }
export function nmsBomb(input, ctx) {
  const n = 16384, b = new Float32Array(n * 4);
  for (let k = 0; k < n; k++) b.set([k * 10, 0, k * 10 + 5, 5], 4 * k);
  return ctx.kernels.nms(ctx.tensor('float32', [n, 4], b), ctx.tensor('float32', [n], new Float32Array(n).fill(0.5)), { iouThreshold: 0.5 }).shape;
}
// QuickJS seeds Math.random (xorshift64*) with the time in µs: one output gives the seed back.
export function clockFromRandom() {
  const M = (1n << 64n) - 1n, C = 0x2545f4914f6cdd1dn;
  let inv = C;
  for (let i = 0; i < 6; i++) inv = (inv * (2n - C * inv)) & M;
  const unR = (y, s) => { let x = y; for (let i = 0; i < 64; i += s) x = y ^ (x >> BigInt(s)); return x & M; };
  const unL = (y, s) => { let x = y; for (let i = 0; i < 64; i += s) x = (y ^ (x << BigInt(s))) & M; return x; };
  const f = new Float64Array([Math.random() + 1]), hi = new BigUint64Array(f.buffer)[0] & ((1n << 52n) - 1n);
  for (let lo = 0n; lo < 4096n; lo++) {
    const x = unR(unL(unR(((hi << 12n) | lo) * inv & M, 27), 25), 12);
    if (x > 1500000000000000n && x < 2500000000000000n) return Number(x / 1000n);
  }
  return null;
}
export function randoms() { return Array.from({ length: 1000 }, () => Math.random()); }
export function nonFinite(input) {
  const back = Array.from(input.arr, (x) => Object.is(x, -0) ? '-0' : String(x));
  return { back, out: new Float32Array([NaN, Infinity, -Infinity, -0, 1.5]), f64: new Float64Array([-0, NaN]) };
}
export function forgedElements() { return { $xpkg: 'array', type: 'Float32Array', data: ['1e999'] }; }
// Strings the host takes that are not JSON: they went whole to the worker thread and the host.
export function hugeStrings(input, ctx) {
  const big = 'x'.repeat(20 << 20), out = [];
  for (const f of [() => ctx.assetText(big), () => ctx.asset(big), () => ctx.tensor('float32', new Array(1 << 20).fill(1), [])])
    try { f(); out.push('no error'); } catch (e) { out.push(e.name); }
  return out;
}
// A shape whose length is 1 when the prelude checks it and 10⁶ when it copies it.
export function proxyShape(input, ctx) {
  let n = 0;
  const shape = new Proxy([1], { get(t, k) { return k === 'length' ? (n++ < 2 ? 1 : 1e6) : 1; } });
  try { ctx.tensor('float32', shape, [1]); } catch (e) {}
  return 'swallowed';
}
export function fillThenLoop() { const a = []; try { for (;;) a.push(new Uint8Array(1 << 20)); } catch (e) {} for (;;) {} }
export function fillThenThrow() { const a = []; try { for (;;) a.push(new Uint8Array(1 << 20)); } catch (e) {} throw new Error('after'); }
export function nested(input) { let a = 1; for (let i = 0; i < input.depth; i++) a = input.obj ? { a } : [a]; return a; }
export function nestedArgs(input, ctx) { let a = {}; for (let i = 0; i < input.depth; i++) a = [a]; return ctx.kernels.softmax(input.x, a).shape; }
export function bracketsInStrings() { return ['['.repeat(5000), '{"'.repeat(3000), '\\"['.repeat(2000)]; }
`;

describe('hostile scripts, second set', () => {
  let sb: Sandbox;
  const healthy = async () => expect(await sb.call('ok', {}, { deadlineMs: LONG })).toBe('ok');

  beforeAll(async () => {
    sb = await Sandbox.create(options);
    await sb.load(HOSTILE, 'hostile.js');
  });
  afterAll(async () => {
    await sb.close();
    expect(liveSandboxThreads()).toBe(0);
  });

  it('a module throwing huge strings at load fails with E_SANDBOX_SCRIPT; the strings stay in the guest', async () => {
    const big = "'x'.repeat(4 << 20)";
    for (const [name, source] of [
      ['message.js', `throw new Error(${big});`],
      ['name.js', `const e = new Error('m'); e.name = ${big}; throw e;`],
      ['stack.js', `const e = new Error('m'); e.stack = ${big}; throw e;`],
      ['rejected.js', `await null; throw new RangeError(${big});`],
    ]) {
      const err = await sb.load(source, name).catch((e: unknown) => e as { code: string; detail: unknown });
      expect((err as { code: string }).code).toBe('E_SANDBOX_SCRIPT');
      expect(JSON.stringify((err as { detail: unknown }).detail).length).toBeLessThan(10_000);
    }
    await healthy();
  });

  it('a module that fills its memory as it loads fails to load (E_SANDBOX_MEMORY); the sandbox goes on', async () => {
    // It used to load, and then every call and stats() failed with E_SANDBOX_KILLED: the full
    // worker was replaced after each answer, and each replacement filled up again loading it.
    const source = `const keep = []; try { for (;;) keep.push(new Uint8Array(1 << 20)); } catch {} export function filled() { return keep.length; }`;
    expect(await codeOf(sb.load(source, 'fills.js'))).toBe('E_SANDBOX_MEMORY');
    await healthy();
    expect((await sb.stats()).modules).toBe(1);
    expect(await codeOf(sb.call('filled'))).toBe('E_SANDBOX_SCRIPT');
  });

  it('a getter that loops on what a module throws at load ends at the deadline (E_SANDBOX_TIMEOUT)', async () => {
    const source = `const e = new Error('m'); Object.defineProperty(e, 'message', { get() { for (;;) {} } }); throw e;`;
    expect(await codeOf(sb.load(source, 'getter.js', { deadlineMs: DEADLINE }))).toBe('E_SANDBOX_TIMEOUT');
    await healthy();
  });

  it.each(['gatherBomb', 'resizeBomb', 'argmaxEmptyAxis'])(
    '%s: a kernel result over the host-tensor budget is refused before it is allocated (E_SANDBOX_MEMORY)',
    async (hook) => {
      // 512 / 768 MiB asked of a sandbox whose calls may hold 64 MiB of tensors on the host. The
      // process's peak RSS (KiB) tells whether they were allocated: the host is blocked meanwhile.
      const peak = () => process.resourceUsage().maxRSS * 1024;
      const before = peak();
      expect(await codeOf(sb.call(hook, {}, { deadlineMs: LONG }))).toBe('E_SANDBOX_MEMORY');
      expect(peak() - before).toBeLessThan(128 * 2 ** 20);
      await healthy();
    },
  );

  it('a kernel asked for seconds of work stops at the deadline (E_SANDBOX_TIMEOUT), not the watchdog', async () => {
    // 16384 disjoint boxes: greedy NMS keeps each and compares it with all (7 s here without a stop).
    const before = (await sb.stats()).workersStarted;
    expect(await codeOf(sb.call('nmsBomb', {}, { deadlineMs: DEADLINE }))).toBe('E_SANDBOX_TIMEOUT');
    expect((await sb.stats()).workersStarted).toBe(before);
    await healthy();
  });

  it('a deeply nested result or kernel argument fails with E_SANDBOX_OUTPUT, not a host stack overflow', async () => {
    // The host's JSON.parse with a reviver overflowed V8's stack at a few thousand levels, which the
    // guest's 256 KiB stack still serialises: a RangeError without a code reached the caller.
    const x: SandboxTensor = { type: 'float32', dims: [2], data: new Float32Array(2) };
    for (const depth of [3000, 6000])
      for (const obj of [false, true])
        expect(await codeOf(sb.call('nested', { depth, obj }, { deadlineMs: LONG }))).toBe('E_SANDBOX_OUTPUT');
    expect(await codeOf(sb.call('nestedArgs', { depth: 4000, x }, { deadlineMs: LONG }))).toBe('E_SANDBOX_OUTPUT');
    // Nesting up to the limit, and brackets inside strings, are fine.
    expect(await codeOf(sb.call('nested', { depth: 250 }))).toBe('OK');
    expect(((await sb.call('bracketsInStrings')) as string[]).map((s) => s.length)).toEqual([5000, 6000, 4000]);
    await healthy();
  });

  it('Math.random does not give away the clock when no clock is granted', async () => {
    const when = (await sb.call('clockFromRandom')) as number | null;
    expect(when === null || Math.abs(when - Date.now()) > 365 * 86_400_000).toBe(true);
    const r = (await sb.call('randoms')) as number[];
    expect(r.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(new Set(r).size).toBe(1000);
    expect(r.reduce((a, b) => a + b, 0) / r.length).toBeCloseTo(0.5, 1);
  });

  it('NaN, infinities and -0 in small typed arrays cross both ways (they came out 0)', async () => {
    const arr = new Float64Array([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 2]);
    const r = (await sb.call('nonFinite', { arr })) as { back: string[]; out: Float32Array; f64: Float64Array };
    expect(r.back).toEqual(['NaN', 'Infinity', '-Infinity', '-0', '2']);
    expect(Array.from(r.out)).toEqual([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 1.5]);
    expect(Object.is(r.f64[0], -0) && Number.isNaN(r.f64[1])).toBe(true);
    // A marker the script writes itself is refused; the host takes only those four strings.
    expect(await codeOf(sb.call('forgedElements'))).toBe('E_SANDBOX_HANDLE');
    const scope = new CallScope(
      () => 1,
      1 << 20,
      () => undefined,
    );
    const marker = (x: unknown) => JSON.stringify({ $xpkg: 'array', type: 'Float32Array', data: [x] });
    expect(await codeOf(Promise.resolve().then(() => decodeFromGuest(marker('1e999'), scope, 1024)))).toBe(
      'E_SANDBOX_OUTPUT',
    );
    expect(decodeFromGuest(marker('-Infinity'), scope, 1024)).toEqual(new Float32Array([Number.NEGATIVE_INFINITY]));
  });

  it('huge asset ids and shapes are refused in the guest, before they are copied to the host', async () => {
    // 20 MB ids went to the worker thread and were posted to the host (300 MB: the process's RSS
    // grew by 800 MB) before the host answered that no such asset exists.
    expect(await sb.call('hugeStrings', {}, { deadlineMs: LONG })).toEqual(['TypeError', 'TypeError', 'TypeError']);
    // Past the prelude's check, the worker reads the length before copying: sticky, even if caught.
    expect(await codeOf(sb.call('proxyShape', {}, { deadlineMs: LONG }))).toBe('E_SANDBOX_OUTPUT');
    await healthy();
  });

  it('the call after a timeout waits for the runtime to be rebuilt, outside its own deadline', async () => {
    // A timeout rebuilds the runtime and evaluates the loaded modules again, after answering. A
    // module whose top level takes longer than the next call's deadline + grace made that call,
    // of a healthy hook, fail with E_SANDBOX_KILLED: the watchdog counted the rebuild.
    // graceMs 200: the looping call's own timeout answer must come within it on a loaded machine
    // (at 50 a busy CI machine answered late and the watchdog killed the worker); the module's top
    // level still takes longer than the next call's 50 ms deadline + grace.
    await using slow = await Sandbox.create({ policy: { timeMs: LONG }, caps: { graceMs: 200 } });
    const t0 = performance.now();
    await slow.load(
      `let x = 0; for (let i = 0; i < 3.2e7; i++) x += i % 7;
      export function ok() { return x > 0; } export function loop() { for (;;) {} }`,
      'slow.js',
    );
    expect(performance.now() - t0).toBeGreaterThan(250);
    expect(await codeOf(slow.call('loop', {}, { deadlineMs: 50 }))).toBe('E_SANDBOX_TIMEOUT');
    expect(await codeOf(slow.call('ok', {}, { deadlineMs: 50 }))).toBe('OK');
    expect((await slow.stats()).workersStarted).toBe(1);
  });

  it('a failure that leaves the memory full replaces the worker; past the deadline it is E_SANDBOX_MEMORY', async () => {
    // The runtime used to be rebuilt inside the full memory (a timeout) or kept (a throw): the
    // next calls then ran out at once, or trapped ('memory access out of bounds').
    for (const [hook, code] of [
      ['fillThenLoop', 'E_SANDBOX_MEMORY'],
      ['fillThenThrow', 'E_SANDBOX_SCRIPT'],
    ]) {
      const before = (await sb.stats()).workersStarted;
      expect(await codeOf(sb.call(hook, {}, { deadlineMs: 1000 }))).toBe(code);
      const after = await sb.stats();
      expect(after.workersStarted).toBe(before + 1);
      expect(after.wasmBytes).toBe(16 * 2 ** 20);
      await healthy();
    }
  });

  it('a toJSON left on Object.prototype by a successful call does not hang the next calls', async () => {
    // Between calls the worker warms up by running a little JSON code; it used to reach the
    // script's toJSON there, so the next call (of any hook) was killed by the watchdog.
    const arg = { pad: 'p'.repeat(64 * 1024) };
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) {
      seen.push(await codeOf(sb.call('poisonToJSON', {}, { deadlineMs: DEADLINE })));
      await pause(20);
      seen.push(await codeOf(sb.call('ok', arg, { deadlineMs: DEADLINE })));
    }
    expect(seen).toEqual(new Array(12).fill('OK'));
  });
});
