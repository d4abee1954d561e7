/**
 * The host's answers to a sandbox worker's requests during a call: kernel calls (one at a time
 * or a queued batch), tensor reads and copies, disposal, assets. What the guest sends is checked
 * here; failures it may not shrug off are returned as sticky (the call fails with that code).
 */
import { SandboxError } from '../spec/errors.js';
import { CallScope, checkTensor, decodeFromGuest, encodeForGuest, looksLikeTensor, tensorFromBytes } from './codec.js';
import { MAX_QUEUED, type HostMessage, type WorkerMessage } from './protocol.js';
import type { EffectivePolicy, Kernel, KernelResults, SandboxTensor, SandboxValue } from './types.js';

/** What serving needs from the sandbox. */
export interface HostSide {
  readonly kernels: ReadonlyMap<string, Kernel>;
  readonly assets: ReadonlyMap<string, Uint8Array>;
  readonly policy: EffectivePolicy;
}

/** A kernel threw (or broke its declared results): the guest may catch this one. */
export class KernelFailure {
  constructor(
    readonly kernel: string,
    readonly message: string,
  ) {}
}

export type Reply = { msg: HostMessage; transfer?: ArrayBuffer[] };
const ok = (value: unknown, transfer?: ArrayBuffer[]): Reply => ({ msg: { t: 'reply', ok: true, value }, transfer });
const refuse = (message: string): Reply => ({ msg: { t: 'reply', ok: false, message } });

/** An async kernel's result, or E_SANDBOX_TIMEOUT at the call's deadline (the kernel itself cannot be stopped). */
function untilDeadline<T>(r: T | Promise<T>, deadline: number, name: string): T | Promise<T> {
  if (!(r instanceof Promise)) return r;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new SandboxError('E_SANDBOX_TIMEOUT', `kernel '${name}' did not finish before the call's deadline`, { kernel: name })), Math.max(0, deadline - performance.now()));
  });
  return Promise.race([r, late]).finally(() => clearTimeout(timer));
}

/**
 * Runs queued kernel calls in order, registering each result under the id the guest gave it;
 * returns their dtypes and shapes by id.
 */
export async function runBatch(h: HostSide, json: string, scope: CallScope, deadline: number): Promise<string> {
  let ops: unknown;
  try {
    ops = JSON.parse(json);
  } catch {
    ops = null;
  }
  const malformed = () => new SandboxError('E_SANDBOX_OUTPUT', 'malformed kernel batch from the sandbox');
  if (!Array.isArray(ops) || ops.length > MAX_QUEUED) throw malformed();
  const meta: Record<string, [string, number[]]> = {};
  for (const op of ops as { k?: unknown; a?: unknown; o?: unknown }[]) {
    const fn = typeof op?.k === 'string' ? h.kernels.get(op.k) : undefined;
    const returns: KernelResults | undefined = fn?.returns;
    if (!fn || !returns || typeof op.a !== 'string') throw malformed();
    const name = op.k as string;
    if (performance.now() > deadline) throw new SandboxError('E_SANDBOX_TIMEOUT', 'queued kernel calls ran past the deadline', { kernel: name });
    const args = decodeFromGuest(op.a, scope, h.policy.copyBytes);
    if (!Array.isArray(args)) throw malformed();
    let r: unknown;
    try {
      r = await untilDeadline(fn(...(args as SandboxValue[])), deadline, name);
    } catch (e) {
      if (e instanceof SandboxError) throw e;
      throw new KernelFailure(name, e instanceof Error ? e.message : String(e));
    }
    const outs: [unknown, unknown][] =
      returns === 'tensor' ? [[op.o, r]] : returns.map((key) => [(op.o as Record<string, unknown> | null)?.[key], (r as Record<string, unknown> | null)?.[key]]);
    for (const [id, x] of outs) {
      if (!looksLikeTensor(x)) throw new KernelFailure(name, 'did not return the tensors it declares');
      try {
        checkTensor(x, `kernel '${name}'`);
      } catch (e) {
        throw new KernelFailure(name, (e as Error).message);
      }
      scope.adopt(id, x as SandboxTensor);
      meta[String(id)] = [x.type, [...x.dims]];
    }
  }
  return JSON.stringify(meta);
}

/** Answers a worker's request; failures the guest may not shrug off are marked sticky. */
export async function serve(h: HostSide, m: WorkerMessage, scope: CallScope | null, deadline: number): Promise<Reply> {
  const p = h.policy;
  try {
    if (!scope) throw new SandboxError('E_SANDBOX_HANDLE', 'no tensors exist outside a call');
    switch (m.t) {
      case 'kernel': {
        const fn = h.kernels.get(m.name);
        if (!fn) return refuse(`no kernel named '${m.name}'`);
        const args = decodeFromGuest(m.args, scope, p.copyBytes);
        if (!Array.isArray(args)) return refuse('malformed kernel arguments');
        try {
          const r = await untilDeadline(fn(...(args as SandboxValue[])), deadline, m.name);
          return ok(encodeForGuest(r, (x) => scope.own(x), p.copyBytes, `kernel '${m.name}'`));
        } catch (e) {
          if (e instanceof SandboxError) throw e;
          return refuse(`kernel '${m.name}' failed: ${e instanceof Error ? e.message : String(e)}`.slice(0, 2000));
        }
      }
      case 'batch':
        try {
          return ok(await runBatch(h, m.ops, scope, deadline));
        } catch (e) {
          if (e instanceof KernelFailure) return refuse(`kernel '${e.kernel}' failed: ${e.message}`.slice(0, 2000));
          throw e;
        }
      case 'read': {
        const x = scope.get(m.id);
        if (x.data.byteLength > p.copyBytes) throw new SandboxError('E_SANDBOX_MEMORY', `reading ${x.data.byteLength} bytes exceeds the copy budget of ${p.copyBytes}`, { limitBytes: p.copyBytes });
        const copy = new Uint8Array(x.data.buffer, x.data.byteOffset, x.data.byteLength).slice();
        return ok(copy, [copy.buffer]);
      }
      case 'tensor': {
        const x = tensorFromBytes(m.dtype, m.shape, m.bytes, p.copyBytes);
        return ok(JSON.stringify({ $xpkg: 'tensor', id: scope.own(x), dtype: x.type, shape: x.dims }));
      }
      case 'dispose':
        scope.drop(m.id);
        return ok(null);
      case 'asset': {
        const bytes = h.assets.get(m.id);
        if (!bytes) return refuse(`no asset '${String(m.id).slice(0, 100)}'`);
        if (bytes.byteLength > p.copyBytes) throw new SandboxError('E_SANDBOX_MEMORY', `asset '${m.id}' (${bytes.byteLength} bytes) exceeds the copy budget of ${p.copyBytes}`, { limitBytes: p.copyBytes });
        if (m.text) return ok(new TextDecoder().decode(bytes));
        const copy = bytes.slice();
        return ok(copy, [copy.buffer]);
      }
      default:
        throw new SandboxError('E_SANDBOX_KILLED', 'sandbox protocol error', { reason: 'protocol' });
    }
  } catch (e) {
    if (e instanceof SandboxError) return { msg: { t: 'reply', ok: false, message: e.message, sticky: { code: e.code, message: e.message, ...(e.detail ? { detail: e.detail as Record<string, unknown> } : {}) } } };
    return refuse(e instanceof Error ? e.message : String(e));
  }
}
