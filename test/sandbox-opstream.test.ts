/**
 * The host side of streamed queued kernel calls (sandbox/serve.ts OpStream), fed directly with
 * what a guest could post: malformed or forged calls, too many calls without a sync, calls past
 * the deadline, failing kernels. The prelude never sends most of these; the host must not rely
 * on that.
 */
import { describe, expect, it } from 'vitest';
import { CallScope } from '../sandbox/codec.js';
import { queued } from '../sandbox/kernels.js';
import { resolvePolicy } from '../sandbox/policy.js';
import { MAX_QUEUED } from '../sandbox/protocol.js';
import { type HostSide, OpStream } from '../sandbox/serve.js';
import type { Kernel } from '../sandbox/types.js';
import { SandboxError } from '../spec/errors.js';

const tensor = () => ({ type: 'int32' as const, dims: [1], data: new Int32Array(1) });
const host: HostSide = {
  kernels: new Map<string, Kernel>([
    ['make', queued(tensor, 'tensor')],
    [
      'boom',
      queued(() => {
        throw new RangeError('boom');
      }, 'tensor'),
    ],
    ['sync', () => 1],
  ]),
  assets: new Map(),
  policy: resolvePolicy(),
};
let ids = 0;
const stream = (deadline = Infinity) => {
  const scope = new CallScope(
    () => ++ids,
    2 ** 20,
    () => {},
  );
  return { scope, ops: new OpStream(host, scope, deadline) };
};
const op = (k: string, o: number, a = '[]') => JSON.stringify({ k, a, o });
const codeOf = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return e instanceof SandboxError ? e.code : `not a SandboxError: ${String(e)}`;
  }
  return 'no error';
};

describe('OpStream (host side of queued kernel calls)', () => {
  it('runs calls in order, adopts their results under the guest ids and reports shapes at the sync', async () => {
    const { scope, ops } = stream();
    await ops.run(op('make', -1));
    await ops.run(op('make', -2, JSON.stringify([{ $xpkg: 'tensor', id: -1 }])));
    expect(scope.size).toBe(2);
    const r = ops.sync();
    expect(r.msg).toEqual({
      t: 'reply',
      ok: true,
      value: JSON.stringify({ '-1': ['int32', [1]], '-2': ['int32', [1]] }),
    });
    expect(codeOf(() => ops.finish())).toBe('no error');
  });

  it.each([
    ['not JSON', '{'],
    ['no kernel name', JSON.stringify({ a: '[]', o: -1 })],
    ['an unknown kernel', op('nope', -1)],
    ['a synchronous kernel queued', op('sync', -1)],
    ['arguments that are not a list', op('make', -1, '{}')],
  ])('%s fails the call with E_SANDBOX_OUTPUT, even after a sync', async (_name, json) => {
    const { ops } = stream();
    await ops.run(json);
    expect(codeOf(() => ops.sync())).toBe('E_SANDBOX_OUTPUT');
    expect(codeOf(() => ops.finish())).toBe('E_SANDBOX_OUTPUT');
  });

  it('refuses a forged result id or an unknown argument handle (E_SANDBOX_HANDLE)', async () => {
    for (const json of [op('make', 5), op('make', -1, JSON.stringify([{ $xpkg: 'tensor', id: -9 }]))]) {
      const { ops } = stream();
      await ops.run(json);
      expect(codeOf(() => ops.finish())).toBe('E_SANDBOX_HANDLE');
    }
  });

  it(`refuses more than ${MAX_QUEUED} calls without a sync, and counts again after one`, async () => {
    const ok = stream();
    for (let i = 1; i <= MAX_QUEUED; i++) await ok.ops.run(op('make', -i));
    ok.ops.sync();
    await ok.ops.run(op('make', -(MAX_QUEUED + 1)));
    expect(codeOf(() => ok.ops.finish())).toBe('no error');
    const flood = stream();
    for (let i = 1; i <= MAX_QUEUED + 1; i++) await flood.ops.run(op('make', -i));
    expect(codeOf(() => flood.ops.finish())).toBe('E_SANDBOX_OUTPUT');
  });

  it('a call past the deadline fails with E_SANDBOX_TIMEOUT', async () => {
    const { ops } = stream(performance.now() - 1);
    await ops.run(op('make', -1));
    expect(codeOf(() => ops.finish())).toBe('E_SANDBOX_TIMEOUT');
  });

  it('a failing kernel skips the calls after it; the sync reports it (catchable), unsynced it fails the call', async () => {
    const { scope, ops } = stream();
    await ops.run(op('boom', -1));
    await ops.run(op('make', -2));
    expect(scope.size).toBe(0);
    expect(ops.sync().msg).toMatchObject({ t: 'reply', ok: false, message: "kernel 'boom' failed: boom" });
    await ops.run(op('make', -3));
    expect(scope.size).toBe(1);
    expect(codeOf(() => ops.finish())).toBe('no error');
    const late = stream();
    await late.ops.run(op('boom', -1));
    expect(codeOf(() => late.ops.finish())).toBe('E_SANDBOX_SCRIPT');
  });
});
