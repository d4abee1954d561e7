/**
 * A sandbox for one package's scripts: a worker thread with a QuickJS runtime, created once and
 * reused across calls, rebuilt when a failure leaves it unusable.
 *
 *   await using sb = await Sandbox.create({ policy, kernels, assets });
 *   await sb.load(source, 'post.js', { hooks: ['post'] });
 *   const out = await sb.call('post', { logits }, { outputs });
 *
 * Calls run one at a time. Tensors in the arguments are lent to the guest as handles; tensors in
 * the result are the host's own objects (inputs or kernel outputs), never copies made by the guest.
 */
import { SandboxError } from '../spec/errors.js';
import { CallScope, decodeFromGuest, encodeForGuest } from './codec.js';
import { validateOutputs } from './outputs.js';
import { resolvePolicy, wasmMaxPages, workerStackMb } from './policy.js';
import {
  type HostMessage,
  nudge,
  send,
  spinUntilChanged,
  TO_HOST,
  TO_WORKER,
  type WorkerConfig,
  type WorkerMessage,
} from './protocol.js';
import { type HostSide, OpStream, serve } from './serve.js';
import { compiledQuickJS, killThread, spawnThread, type Thread } from './thread.js';
import { hardwareThreads, take } from './transport.js';
import type {
  CallOptions,
  EffectivePolicy,
  Kernel,
  LoadedScript,
  LoadOptions,
  SandboxOptions,
  SandboxStats,
  SandboxValue,
} from './types.js';

type WaitAsync = (
  a: Int32Array,
  i: number,
  v: number,
  t?: number,
) => { async: false; value: string } | { async: true; value: Promise<string> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

const NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
/** Worker start-up (module compile, runtime, prelude) and replaying loaded scripts. */
const STARTUP_MS = 30_000;
/**
 * How long the host spins for the worker's answer before sleeping in Atomics.waitAsync (whose
 * wake-up goes through the event loop). Bounded, so the event loop stalls at most this long; off
 * on one core, where spinning would delay the worker it waits for.
 */
const HOST_SPIN_MS = hardwareThreads() > 1 ? 1 : 0;

class Watchdog {}
class Aborted {}
/** The worker died or gave up before it took the request: safe to send it again to a fresh one. */
class Unrun {}
export class Sandbox implements AsyncDisposable {
  readonly policy: EffectivePolicy;
  private readonly kernels = new Map<string, Kernel>();
  private readonly assets = new Map<string, Uint8Array>();
  /** What serve.ts needs to answer the worker. */
  private readonly host: HostSide;
  private readonly config: WorkerConfig;
  private readonly scripts = new Map<
    string,
    { source: string; functions: string[]; hooks: string[] | null; timeMs: number }
  >();
  private thread: Thread | null = null;
  private starting: Promise<Thread> | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private ids = 0;
  private liveTensors = 0;
  private workersStarted = 0;
  private respawns = 0;
  /**
   * Threads rebuilding their runtime after a failure (replaying every loaded module, which may
   * take long): the next request waits for their 'ready', outside its own deadline.
   */
  private readonly rebuilding = new WeakSet<Thread>();

  private constructor(options: SandboxOptions) {
    if (options === null || typeof options !== 'object') throw new TypeError('sandbox: options must be an object');
    this.policy = resolvePolicy(options.policy, options.caps);
    for (const [name, fn] of Object.entries(options.kernels ?? {})) {
      if (!NAME.test(name) || typeof fn !== 'function')
        throw new TypeError(`sandbox: kernel '${name}' must be a function with an identifier name`);
      const r: unknown = fn.returns;
      const names =
        Array.isArray(r) &&
        r.length > 0 &&
        r.every((k) => typeof k === 'string' && NAME.test(k)) &&
        new Set(r).size === r.length;
      if (r !== undefined && r !== 'tensor' && !names)
        throw new TypeError(`sandbox: kernel '${name}' declares invalid returns`);
      this.kernels.set(name, fn);
    }
    const assets = options.assets instanceof Map ? [...options.assets] : Object.entries(options.assets ?? {});
    for (const [id, bytes] of assets) {
      if (!(bytes instanceof Uint8Array)) throw new TypeError(`sandbox: asset '${id}' must be a Uint8Array`);
      this.assets.set(id, bytes);
    }
    const p = this.policy;
    this.host = { kernels: this.kernels, assets: this.assets, policy: p };
    this.config = {
      memoryBytes: p.memoryMiB * 2 ** 20,
      stackBytes: p.stackKiB * 1024,
      timeMs: p.timeMs,
      wasmMaxPages: wasmMaxPages(p),
      outputChars: p.outputBytes,
      copyBytes: p.copyBytes,
      sourceBytes: p.sourceBytes,
      clock: options.grants?.clock === true,
      kernels: [...this.kernels].map(([name, fn]) => [
        name,
        fn.returns === undefined ? null : fn.returns === 'tensor' ? 'tensor' : [...fn.returns],
      ]),
    };
  }

  /** Starts the worker (once per sandbox; again only after a failure that needs a fresh one). */
  static async create(options: SandboxOptions = {}): Promise<Sandbox> {
    const sb = new Sandbox(options);
    try {
      await sb.current();
    } catch (e) {
      await sb.close();
      throw e;
    }
    return sb;
  }

  /** Evaluates an ES module; its exported functions become callable hooks. Imports are refused. */
  async load(source: string, name: string, options: LoadOptions = {}): Promise<LoadedScript> {
    if (typeof source !== 'string') throw new TypeError('sandbox.load: source must be a string');
    if (typeof name !== 'string' || name.length === 0 || name.length > 512)
      throw new TypeError('sandbox.load: name must be a non-empty string');
    const hooks = options.hooks ? [...options.hooks] : null;
    if (hooks && !hooks.every((h) => typeof h === 'string' && NAME.test(h)))
      throw new TypeError('sandbox.load: hooks must be identifiers');
    const timeMs = Math.min(options.deadlineMs ?? this.policy.timeMs, this.policy.timeMs);
    if (!(Number.isInteger(timeMs) && timeMs > 0))
      throw new RangeError('sandbox.load: deadlineMs must be a positive integer');
    if (Buffer.byteLength(source) > this.policy.sourceBytes) {
      throw new SandboxError('E_SANDBOX_SCRIPT', `script '${name}' is larger than ${this.policy.sourceBytes} bytes`, {
        limitBytes: this.policy.sourceBytes,
      });
    }
    return this.serial(async () => {
      this.assertOpen();
      if (this.scripts.has(name)) throw new TypeError(`sandbox.load: a script named '${name}' is already loaded`);
      const t = await this.current();
      const functions = await this.scoped((scope) =>
        this.live(t, (t) => this.exchange(t, { t: 'load', name, source, timeMs, hooks }, timeMs, scope)),
      );
      if (!Array.isArray(functions) || !functions.every((f) => typeof f === 'string'))
        throw new SandboxError('E_SANDBOX_SCRIPT', `script '${name}' reported malformed exports`);
      this.scripts.set(name, { source, functions, hooks, timeMs });
      return { name, functions: [...functions] };
    });
  }

  /**
   * Runs an exported hook as `hook(input, ctx)` with a copy of `args` (tensors lent as handles).
   * Resolves to the validated result; rejects with a SandboxError whose code names the failure.
   */
  async call<T = unknown>(
    hook: string,
    args: SandboxValue | Record<string, SandboxValue> = {},
    options: CallOptions = {},
  ): Promise<T> {
    if (typeof hook !== 'string' || !NAME.test(hook)) throw new TypeError('sandbox.call: hook must be an identifier');
    const { deadlineMs, outputs, signal } = options;
    if (deadlineMs !== undefined && !(Number.isInteger(deadlineMs) && deadlineMs > 0))
      throw new RangeError('sandbox.call: deadlineMs must be a positive integer');
    if (outputs !== undefined && !Array.isArray(outputs))
      throw new TypeError('sandbox.call: outputs must be an array of IoSpec');
    // Wake the worker now: it spins while the arguments are encoded below.
    if (this.thread && !this.thread.death) nudge(this.thread.ctl, TO_WORKER);
    return this.serial(async () => {
      this.assertOpen();
      const script = this.scriptFor(hook, options.script);
      const timeMs = Math.min(deadlineMs ?? this.policy.timeMs, this.policy.timeMs);
      return this.scoped(async (scope) => {
        const json = encodeForGuest(args, (t) => scope.borrow(t), this.policy.copyBytes, 'sandbox.call arguments');
        if (json.length > this.policy.outputBytes)
          throw new RangeError(
            `sandbox.call: arguments are ${json.length} characters of JSON, over ${this.policy.outputBytes}; pass bulk data as tensors`,
          );
        const msg: HostMessage = { t: 'call', script, hook, args: json, timeMs };
        const t = this.thread && !this.thread.death ? this.thread : await this.current();
        const value = await this.live(t, (t) => this.exchange(t, msg, timeMs, scope, signal));
        if (typeof value !== 'string' || value.length > this.policy.outputBytes)
          throw new SandboxError('E_SANDBOX_OUTPUT', 'the result is too large', { limit: this.policy.outputBytes });
        const result = decodeFromGuest(value, scope, this.policy.copyBytes);
        if (outputs) validateOutputs(result, outputs);
        return result as T;
      });
    });
  }

  /** Counters for leak checks and monitoring. */
  async stats(): Promise<SandboxStats> {
    return this.serial(async () => {
      this.assertOpen();
      const t = await this.current();
      const w = (await this.live(t, (t) => this.exchange(t, { t: 'stats' }, 5000, null))) as Omit<
        SandboxStats,
        'liveTensors' | 'workersStarted' | 'respawns'
      >;
      return { ...w, liveTensors: this.liveTensors, workersStarted: this.workersStarted, respawns: this.respawns };
    });
  }

  /** Terminates the worker; a call in flight fails with E_SANDBOX_KILLED. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const why = new SandboxError('E_SANDBOX_KILLED', 'the sandbox was closed', { reason: 'disposed' });
    const t = this.thread;
    this.thread = null;
    if (t) await killThread(t, why);
    const pending = await this.starting?.catch(() => null);
    if (pending) await killThread(pending, why);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new SandboxError('E_SANDBOX_KILLED', 'the sandbox is closed', { reason: 'disposed' });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async scoped<T>(fn: (scope: CallScope) => Promise<T>): Promise<T> {
    const scope = new CallScope(
      () => ++this.ids,
      this.policy.hostTensorMiB * 2 ** 20,
      (d) => (this.liveTensors += d),
    );
    try {
      return await fn(scope);
    } finally {
      scope.clear();
    }
  }

  private scriptFor(hook: string, script: string | undefined): string {
    if (script !== undefined) {
      const s = this.scripts.get(script);
      if (!s) throw new TypeError(`sandbox.call: no script named '${script}' is loaded`);
      if (!s.functions.includes(hook))
        throw new SandboxError('E_SANDBOX_SCRIPT', `script '${script}' does not export a function '${hook}'`, {
          script,
          hook,
        });
      return script;
    }
    const found = [...this.scripts].filter(([, s]) => s.functions.includes(hook)).map(([n]) => n);
    if (found.length === 1) return found[0];
    if (found.length > 1)
      throw new TypeError(`sandbox.call: hook '${hook}' is exported by ${found.join(', ')}; name the script`);
    throw new SandboxError('E_SANDBOX_SCRIPT', `no loaded script exports a function '${hook}'`, { hook });
  }

  /** The running thread, or a fresh one with every loaded script evaluated again. */
  private current(): Thread | Promise<Thread> {
    if (this.thread && !this.thread.death) return this.thread;
    return (this.starting ??= this.start().finally(() => (this.starting = null)));
  }

  private async start(): Promise<Thread> {
    const t = spawnThread(this.config, workerStackMb(this.policy), await compiledQuickJS());
    this.workersStarted++;
    t.worker.ref();
    try {
      const first = await this.next(t, performance.now() + STARTUP_MS, undefined);
      if (first.t !== 'ready')
        throw new SandboxError(
          'E_SANDBOX_KILLED',
          `the sandbox worker failed to start: ${first.t === 'fatal' ? first.message : first.t}`,
          { reason: 'startup' },
        );
      for (const [name, s] of this.scripts) {
        await this.scoped((scope) =>
          this.exchange(t, { t: 'load', name, source: s.source, timeMs: s.timeMs, hooks: s.hooks }, s.timeMs, scope),
        );
      }
      if (this.closed) throw new SandboxError('E_SANDBOX_KILLED', 'the sandbox was closed', { reason: 'disposed' });
    } catch (e) {
      await killThread(t, e instanceof SandboxError ? e : new SandboxError('E_SANDBOX_KILLED', 'start-up failed'));
      throw e instanceof Watchdog
        ? new SandboxError('E_SANDBOX_KILLED', 'the sandbox worker did not start in time', { reason: 'startup' })
        : e;
    } finally {
      t.worker.unref();
    }
    this.thread = t;
    return t;
  }

  /**
   * Runs one exchange; when the worker turns out dead or broken before it took the request (it
   * exited between calls, or its runtime could not be rebuilt after the previous failure), sends
   * the request once more to a fresh worker: only the call that broke a worker reports it.
   */
  private async live<T>(t: Thread, exchange: (t: Thread) => Promise<T>): Promise<T> {
    try {
      return await exchange(t);
    } catch (e) {
      if (!(e instanceof Unrun) || this.closed) throw e instanceof Unrun ? t.death : e;
      this.respawns++;
      const fresh = await this.current();
      try {
        return await exchange(fresh);
      } catch (e2) {
        throw e2 instanceof Unrun ? fresh.death : e2;
      }
    }
  }

  /** Kills a thread that cannot go on, and starts its successor in the background. */
  private async retire(t: Thread, why: SandboxError): Promise<void> {
    if (this.thread === t) this.thread = null;
    await killThread(t, why);
    if (!this.closed) Promise.resolve(this.current()).catch(() => undefined);
  }

  /** Sends one request and serves the worker's requests until its answer. */
  private async exchange(
    t: Thread,
    msg: HostMessage,
    timeMs: number,
    scope: CallScope | null,
    signal?: AbortSignal,
  ): Promise<unknown> {
    if (this.rebuilding.has(t)) await this.rebuilt(t);
    const deadlineAt = performance.now() + timeMs + this.policy.graceMs;
    let onAbort: (() => void) | undefined;
    const aborted = signal
      ? new Promise<void>((resolve) => {
          if (signal.aborted) return resolve();
          onAbort = resolve;
          signal.addEventListener('abort', onAbort, { once: true });
        })
      : undefined;
    t.worker.ref();
    send(t.port, t.ctl, TO_WORKER, msg);
    const ops = scope ? new OpStream(this.host, scope, deadlineAt - this.policy.graceMs) : null;
    // Whether the worker has said anything about this request (a request, an op, an answer).
    let heard = false;
    try {
      for (;;) {
        const m = await this.next(t, deadlineAt, signal, aborted);
        heard = true;
        if (m.t === 'op') {
          // A queued kernel call, posted as the hook made it: run it now, no answer.
          if (!ops) throw new SandboxError('E_SANDBOX_KILLED', 'sandbox protocol error', { reason: 'protocol' });
          await ops.run(m.op);
          continue;
        }
        if (m.t === 'done') {
          if (m.ok) {
            if (m.recycle)
              this.retire(
                t,
                new SandboxError('E_SANDBOX_KILLED', 'the worker was replaced after its memory filled up', {
                  reason: 'recycled',
                }),
              ).catch(() => undefined);
            ops?.finish();
            return m.value;
          }
          const err = new SandboxError(m.failure.code, m.failure.message, m.failure.detail);
          if (m.reset === 'worker') await this.retire(t, err);
          else if (m.reset === 'runtime') this.rebuilding.add(t);
          if (m.unrun) throw new Unrun();
          throw err;
        }
        if (m.t === 'ready' || m.t === 'fatal')
          throw new SandboxError('E_SANDBOX_KILLED', 'sandbox protocol error', { reason: 'protocol' });
        const r = await serve(this.host, m, scope, deadlineAt - this.policy.graceMs, ops);
        send(t.port, t.ctl, TO_WORKER, r.msg, r.transfer);
      }
    } catch (e) {
      if (e instanceof Watchdog) {
        const err = new SandboxError(
          'E_SANDBOX_KILLED',
          `the script did not stop within ${this.policy.graceMs} ms after its ${timeMs} ms deadline; its worker was terminated`,
          { reason: 'deadline', timeMs, graceMs: this.policy.graceMs },
        );
        await this.retire(t, err);
        throw err;
      }
      if (e instanceof Aborted) {
        const err = new SandboxError('E_SANDBOX_KILLED', 'the call was aborted; its worker was terminated', {
          reason: 'aborted',
        });
        await this.retire(t, err);
        throw err;
      }
      if (t.death && e === t.death && !this.closed) {
        await this.retire(t, t.death);
        // Exited (not crashed, not killed by this host) before taking the request: terminated
        // from outside between calls. Nothing of the request ran, so it may go to a fresh worker.
        if (!heard && (t.death.detail as { reason?: string } | undefined)?.reason === 'exited') throw new Unrun();
      }
      throw e;
    } finally {
      if (onAbort) signal?.removeEventListener('abort', onAbort);
      t.worker.unref();
    }
  }

  /**
   * Waits until a thread that is rebuilding its runtime says it is ready. One that does not within
   * STARTUP_MS, or dies meanwhile, is replaced; the request then goes to a fresh worker.
   */
  private async rebuilt(t: Thread): Promise<void> {
    this.rebuilding.delete(t);
    t.worker.ref();
    try {
      const m = await this.next(t, performance.now() + STARTUP_MS, undefined);
      if (m.t === 'ready') return;
      await this.retire(t, new SandboxError('E_SANDBOX_KILLED', 'sandbox protocol error', { reason: 'protocol' }));
    } catch (e) {
      if (this.closed) throw e;
      const why =
        e instanceof SandboxError ? e : new SandboxError('E_SANDBOX_KILLED', 'the runtime was not rebuilt in time');
      await this.retire(t, why);
    } finally {
      t.worker.unref();
    }
    throw new Unrun();
  }

  private async next(
    t: Thread,
    deadlineAt: number,
    signal: AbortSignal | undefined,
    aborted?: Promise<void>,
  ): Promise<WorkerMessage> {
    for (;;) {
      const seen = Atomics.load(t.ctl, TO_HOST);
      const got = take(t.port);
      if (got) return got.message as WorkerMessage;
      if (t.exited || t.death)
        throw t.death ?? new SandboxError('E_SANDBOX_KILLED', 'the sandbox worker exited', { reason: 'exited' });
      if (signal?.aborted) throw new Aborted();
      const left = deadlineAt - performance.now();
      if (left <= 0) throw new Watchdog();
      if (HOST_SPIN_MS > 0 && spinUntilChanged(t.ctl, TO_HOST, seen, Math.min(HOST_SPIN_MS, left))) continue;
      // Sleeps without blocking the event loop.
      const w = waitAsync(t.ctl, TO_HOST, seen, left);
      if (w.async) await Promise.race(aborted ? [w.value, t.exit, aborted] : [w.value, t.exit]);
    }
  }
}
