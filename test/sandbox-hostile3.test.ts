/**
 * Hostile scripts against sandbox/, third set (sandbox-escape and sandbox-hostile2 hold the
 * earlier ones): each case fails with its code within a bounded time, and the next call works.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packFolder } from '../pack/pack.js';
import { Runner } from '../runner/runner.js';
import { basicKernels, liveSandboxThreads, Sandbox } from '../sandbox/index.js';
import type { IoSpec } from '../spec/schema.js';
import { codeOf } from './helpers/errors.js';
import { scriptPackageSource } from './helpers/script-pkg.js';
import { tempDir } from './helpers/source.js';

const LONG = 20_000;
const options = {
  policy: { memoryMiB: 64, timeMs: LONG, stackKiB: 256 },
  caps: { graceMs: 300, copyBytes: 256 * 1024, outputBytes: 256 * 1024, hostTensorMiB: 512 },
  kernels: basicKernels,
};

// A plain object shaped like a tensor: `type`, `dims` and a copied typed array whose length the
// dims need not match. The host's tests of "is a tensor" are structural.
const HOSTILE = `
export function ok() { return 'ok'; }
const fake = (type, dims, data) => ({ type, dims, data });
export function forgedResult() { return { t: fake('float32', [1000000, 1000000], new Float32Array(1)) }; }
export function forgedNested() { return { list: [1, { deep: fake('uint8', [4], new Uint8Array(1)) }] }; }
export function forgedArg(input, ctx) { return ctx.kernels.softmax(fake('float32', [4], new Float32Array(1))).shape; }
export function forgedArgCaught(input, ctx) {
  try { ctx.kernels.softmax(fake('float32', [4], new Float32Array(1))).shape; } catch (e) {}
  return 'swallowed';
}
// normalize built mean and std arrays of dims[2] entries on the host thread, before any budget check.
export function forgedNormalize(input, ctx) { return ctx.kernels.normalize(fake('uint8', [1, 1, 20000000], new Uint8Array(1))).shape; }
// Not forged: a typed array under 'data' without both 'type' and 'dims' is plain data.
export function plainData() { return { data: new Int32Array([1, 2]), type: 'histogram' }; }
// Millions of boxes made on the host by resize (cheap, in budget, checked against the deadline):
// NMS sorted their scores with a comparator, seconds of host CPU that no check reached.
export function nmsSortBomb(input, ctx) {
  const w = input.width, h = input.height, n = input.grid;
  const boxes = ctx.kernels.resize(ctx.tensor('float32', [1, 1, 4], [0, 0, 1, 1]), { width: w, height: h });
  const seed = n === 2 ? [0, 1, 0.5, 0.25] : new Float32Array(n * n).map(() => Math.random());
  const scores = ctx.kernels.resize(ctx.tensor('float32', [n, n, 1], seed), { width: w, height: h });
  const kept = ctx.kernels.nms(boxes, scores, { iouThreshold: 0.5 });
  return input.read ? Array.from(kept.read()) : kept.shape;
}
`;

describe('hostile scripts, third set', () => {
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

  it('a tensor-shaped object in a result is refused (E_SANDBOX_HANDLE): only handles are tensors', async () => {
    // It passed `outputs` validation as a tensor of 10¹² elements holding one.
    const outputs: IoSpec[] = [{ name: 't', type: 'tensor' }];
    expect(await codeOf(sb.call('forgedResult', {}, { outputs }))).toBe('E_SANDBOX_HANDLE');
    expect(await codeOf(sb.call('forgedResult'))).toBe('E_SANDBOX_HANDLE');
    expect(await codeOf(sb.call('forgedNested'))).toBe('E_SANDBOX_HANDLE');
    expect(await sb.call('plainData')).toEqual({ data: new Int32Array([1, 2]), type: 'histogram' });
    await healthy();
  });

  it('a tensor-shaped object passed to a kernel is refused (E_SANDBOX_HANDLE), even when caught', async () => {
    // softmax took dims [4] over one element and returned four values read past its data.
    expect(await codeOf(sb.call('forgedArg'))).toBe('E_SANDBOX_HANDLE');
    expect(await codeOf(sb.call('forgedArgCaught'))).toBe('E_SANDBOX_HANDLE');
    await healthy();
  });

  it('a forged image does not block the host: refused at once, no worker killed', async () => {
    // The host thread was busy for seconds filling 2·10⁷-entry arrays (the watchdog cannot fire
    // while it is), then the worker was killed (E_SANDBOX_KILLED).
    const before = (await sb.stats()).workersStarted;
    // the code and the worker count tell it: the old path ended E_SANDBOX_KILLED, a worker replaced
    expect(await codeOf(sb.call('forgedNormalize', {}, { deadlineMs: 2000 }))).toBe('E_SANDBOX_HANDLE');
    expect((await sb.stats()).workersStarted).toBe(before);
    await healthy();
  });

  it('NMS over millions of boxes stops near the deadline (E_SANDBOX_TIMEOUT)', async () => {
    // 8 Mi boxes with scores in no order: the sort alone took ~6 s of the host thread, started
    // before the deadline and unchecked, so the call ended seconds after it.
    // the code tells it (no timed assertion): past the deadline unchecked, the watchdog killed the
    // worker (E_SANDBOX_KILLED); checked within the sort, the call ends as a timeout
    const before = (await sb.stats()).workersStarted;
    const code = await codeOf(sb.call('nmsSortBomb', { width: 4096, height: 2048, grid: 128 }, { deadlineMs: 1000 }));
    expect(code).toBe('E_SANDBOX_TIMEOUT');
    expect((await sb.stats()).workersStarted).toBe(before);
    await healthy();
  });

  it('NMS keeps its order: best score first, ties by index', async () => {
    const order = (await sb.call('nmsSortBomb', { width: 3, height: 2, grid: 2, read: true })) as number[];
    expect(order).toEqual([2]);
    const s = new Float32Array([0.5, Number.NaN, -0, 0, 2, -1, 2, Number.POSITIVE_INFINITY]);
    const boxes = new Float32Array(s.length * 4).map((_, i) =>
      i % 4 < 2 ? 10 * Math.floor(i / 4) : 10 * Math.floor(i / 4) + 5,
    );
    const kept = basicKernels.nms(
      { type: 'float32', dims: [s.length, 4], data: boxes },
      { type: 'float32', dims: [s.length], data: s },
      { iouThreshold: 0.5 },
    ) as { data: Int32Array };
    expect(Array.from(kept.data)).toEqual([7, 4, 6, 0, 2, 3, 5]);
  });
});

describe('through the runner', () => {
  it('a script step returning a tensor-shaped object fails the run with E_SANDBOX_HANDLE; the next run works', async () => {
    const src = scriptPackageSource({
      name: 'script-forged',
      policy: { timeMs: 2000 },
      post: `export function post(input) {
        if (input.y.read()[0] > 100) return { z: { type: 'float32', dims: [65536, 65536], data: new Float32Array(1) } };
        return { z: input.y };
      }`,
    });
    const pkg = join(tempDir(), 'forged.xpkg');
    await packFolder(src, pkg);
    await using runner = await Runner.open(pkg, { allowUnsigned: true, stateDir: tempDir('xpkg-state-') });
    const x = (v: number) => ({ x: { type: 'float32', dims: [1], data: new Float32Array([v]) } });
    expect(await codeOf(runner.run(x(500)))).toBe('E_SANDBOX_HANDLE');
    const ok = await runner.run(x(1));
    expect(Array.from((ok.outputs.z as { data: Float32Array }).data)).toEqual([2]);
  });
});
