/**
 * The host's answers to a sandbox worker's requests during a call: kernel calls (synchronous, or
 * queued and streamed), tensor reads and copies, disposal, assets. What the guest sends is checked
 * here; failures it may not shrug off are returned as sticky (the call fails with that code).
 */
import { SandboxError } from '../spec/errors.js';
import {
  type CallScope,
  checkTensor,
  decodeFromGuest,
  encodeForGuest,
  looksLikeTensor,
  tensorFromBytes,
} from './codec.js';
import { type HostMessage, MAX_QUEUED, type WorkerMessage } from './protocol.js';
import type { EffectivePolicy, Kernel, KernelBudget, KernelResults, SandboxTensor, SandboxValue } from './types.js';

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
    timer = setTimeout(
      () =>
        reject(
          new SandboxError('E_SANDBOX_TIMEOUT', `kernel '${name}' did not finish before the call's deadline`, {
            kernel: name,
          }),
        ),
      Math.max(0, deadline - performance.now()),
    );
  });
  return Promise.race([r, late]).finally(() => clearTimeout(timer));
}

/**
 * Calls a kernel with what the call leaves it as `this` (types.ts KernelBudget); what it throws
 * (not a SandboxError) becomes a KernelFailure the guest may catch.
 */
async function callKernel(
  fn: Kernel,
  name: string,
  args: SandboxValue[],
  deadline: number,
  scope: CallScope,
): Promise<unknown> {
  try {
    const budget: KernelBudget = Object.freeze({ maxBytes: scope.bytesLeft, deadline });
    return await untilDeadline(fn.apply(budget, args), deadline, name);
  } catch (e) {
    if (e instanceof SandboxError) throw e;
    throw new KernelFailure(name, e instanceof Error ? e.message : String(e));
  }
}

const failureText = (f: KernelFailure) => `kernel '${f.kernel}' failed: ${f.message}`.slice(0, 2000);

/**
 * The queued kernel calls of one hook call. The guest posts each one as it makes it and goes on
 * without waiting; the host runs them in order as they arrive, so kernels run while the hook is
 * still executing. Results are registered under the ids the guest chose; their dtypes and shapes
 * go back when the guest syncs (it needs one, or makes another host call), or not at all.
 *
 * A failed kernel skips the calls after it up to the next sync (they would read its results):
 * the sync reports it, catchable, like a failed synchronous kernel; unsynced at the end of the
 * hook it fails the call (E_SANDBOX_SCRIPT). What the guest may not shrug off (a forged op, a
 * budget, the deadline) is sticky: it fails the call even if the script catches it.
 */
export class OpStream {
  private meta: Record<string, [string, number[]]> = {};
  private count = 0;
  private failure: KernelFailure | null = null;
  private sticky: SandboxError | null = null;

  constructor(
    private readonly h: HostSide,
    private readonly scope: CallScope,
    private readonly deadline: number,
  ) {}

  async run(json: string): Promise<void> {
    if (this.failure || this.sticky) return;
    try {
      await this.runOne(json);
    } catch (e) {
      if (e instanceof KernelFailure) this.failure = e;
      else if (e instanceof SandboxError) this.sticky = e;
      else
        this.sticky = new SandboxError(
          'E_SANDBOX_SCRIPT',
          `a queued kernel call failed: ${e instanceof Error ? e.message : String(e)}`.slice(0, 2000),
        );
    }
  }

  private async runOne(json: string): Promise<void> {
    const malformed = () => new SandboxError('E_SANDBOX_OUTPUT', 'malformed queued kernel call from the sandbox');
    if (++this.count > MAX_QUEUED) throw malformed();
    let op: { k?: unknown; a?: unknown; o?: unknown } | null;
    try {
      op = JSON.parse(json) as typeof op;
    } catch {
      op = null;
    }
    const fn = typeof op?.k === 'string' ? this.h.kernels.get(op.k) : undefined;
    const returns: KernelResults | undefined = fn?.returns;
    if (!op || !fn || !returns || typeof op.a !== 'string') throw malformed();
    const name = op.k as string;
    if (performance.now() > this.deadline)
      throw new SandboxError('E_SANDBOX_TIMEOUT', 'queued kernel calls ran past the deadline', { kernel: name });
    const args = decodeFromGuest(op.a, this.scope, this.h.policy.copyBytes);
    if (!Array.isArray(args)) throw malformed();
    const r = await callKernel(fn, name, args as SandboxValue[], this.deadline, this.scope);
    const outs: [unknown, unknown][] =
      returns === 'tensor'
        ? [[op.o, r]]
        : returns.map((key) => [
            (op.o as Record<string, unknown> | null)?.[key],
            (r as Record<string, unknown> | null)?.[key],
          ]);
    for (const [id, x] of outs) {
      if (!looksLikeTensor(x)) throw new KernelFailure(name, 'did not return the tensors it declares');
      try {
        checkTensor(x, `kernel '${name}'`);
      } catch (e) {
        throw new KernelFailure(name, (e as Error).message);
      }
      this.scope.adopt(id, x as SandboxTensor);
      this.meta[String(id)] = [x.type, [...x.dims]];
    }
  }

  /** The guest's sync: dtypes and shapes of the results since the last one, or why they are missing. */
  sync(): Reply {
    const { meta, failure, sticky } = this;
    this.meta = {};
    this.count = 0;
    this.failure = null;
    if (sticky) throw sticky;
    if (failure) return refuse(failureText(failure));
    return ok(JSON.stringify(meta));
  }

  /** At the end of the hook: a failure nobody synced fails the call. */
  finish(): void {
    if (this.sticky) throw this.sticky;
    const f = this.failure;
    if (f) throw new SandboxError('E_SANDBOX_SCRIPT', failureText(f), { kernel: f.kernel });
  }
}

/** Answers a worker's request; failures the guest may not shrug off are marked sticky. */
export async function serve(
  h: HostSide,
  m: WorkerMessage,
  scope: CallScope | null,
  deadline: number,
  ops: OpStream | null,
): Promise<Reply> {
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
          const r = await callKernel(fn, m.name, args as SandboxValue[], deadline, scope);
          return ok(encodeForGuest(r, (x) => scope.own(x), p.copyBytes, `kernel '${m.name}'`));
        } catch (e) {
          if (e instanceof SandboxError) throw e;
          return refuse(
            failureText(
              e instanceof KernelFailure ? e : new KernelFailure(m.name, e instanceof Error ? e.message : String(e)),
            ),
          );
        }
      }
      case 'sync':
        if (!ops) throw new SandboxError('E_SANDBOX_KILLED', 'sandbox protocol error', { reason: 'protocol' });
        return ops.sync();
      case 'read': {
        const x = scope.get(m.id);
        if (x.data.byteLength > p.copyBytes)
          throw new SandboxError(
            'E_SANDBOX_MEMORY',
            `reading ${x.data.byteLength} bytes exceeds the copy budget of ${p.copyBytes}`,
            { limitBytes: p.copyBytes },
          );
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
        if (bytes.byteLength > p.copyBytes)
          throw new SandboxError(
            'E_SANDBOX_MEMORY',
            `asset '${m.id}' (${bytes.byteLength} bytes) exceeds the copy budget of ${p.copyBytes}`,
            { limitBytes: p.copyBytes },
          );
        if (m.text) return ok(new TextDecoder().decode(bytes));
        const copy = bytes.slice();
        return ok(copy, [copy.buffer]);
      }
      default:
        throw new SandboxError('E_SANDBOX_KILLED', 'sandbox protocol error', { reason: 'protocol' });
    }
  } catch (e) {
    if (e instanceof SandboxError)
      return {
        msg: {
          t: 'reply',
          ok: false,
          message: e.message,
          sticky: {
            code: e.code,
            message: e.message,
            ...(e.detail ? { detail: e.detail as Record<string, unknown> } : {}),
          },
        },
      };
    return refuse(e instanceof Error ? e.message : String(e));
  }
}
