/**
 * The daemon's side of one model worker: spawn (child process or worker thread), one control call at
 * a time (open, warm, close) and any number of runs in flight. When the worker dies unexpectedly,
 * exactly the runs it held fail with E_SERVE_WORKER_CRASHED and 'exit' tells its owner to replace it.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { quietOnnxruntime } from '../runner/backends/ort-env.js';
import type { RunnerOptions } from '../runner/runner.js';
import { type ErrorCode, type ErrorJson, ServeError, XpkgError } from '../spec/errors.js';
import { BulkFile, detachedError, hasDetached, isDetached, splitBulk } from './bulk.js';
import { setProcessNice } from './priority.js';
import type { FromWorker, Opened, RunReply, ToWorker } from './protocol.js';

export type Isolation = 'process' | 'thread';

// each caller knows what its message answers with (call<T>)
type Pending = { resolve: (v: never) => void; reject: (e: unknown) => void };

/** The worker module: compiled JS, or from the TypeScript sources (tests, tsx) through tsx's loader. */
function entry(): { file: URL; preload: URL; ts: boolean; tsx?: string } {
  const here = import.meta.url;
  if (!here.endsWith('.ts'))
    return { file: new URL('./worker.js', here), preload: new URL('./worker-nice.js', here), ts: false };
  const tsx = pathToFileURL(createRequire(here).resolve('tsx/esm')).href;
  return { file: new URL('./worker.ts', here), preload: new URL('./worker-nice.ts', here), ts: true, tsx };
}

/** An error from the worker, with its code and detail as the worker threw it. */
function revive(e: ErrorJson): XpkgError {
  return new XpkgError(e.code as ErrorCode, e.summary, e.detail);
}

export class ModelWorker extends EventEmitter {
  private readonly inflight = new Map<number, Pending>();
  private control: Pending | undefined;
  private nextRid = 1;
  private closing = false;
  /** What the runs in flight fail with when this worker is ended on purpose. */
  private killReason: ServeError | undefined;
  exited = false;
  /** Warmed up: runs may go to it. */
  ready = false;
  readonly pid: number | undefined;
  /** The range of the bulk file each run in flight holds, released when it is answered. */
  private readonly ranges = new Map<number, number>();

  private constructor(
    private readonly child: ChildProcess | undefined,
    private readonly thread: Worker | undefined,
    /** A process worker's shared file (its fd 4): the big arrays of each run, beside the IPC message (bulk.ts). */
    private readonly bulk: BulkFile | undefined,
  ) {
    super();
    this.pid = child?.pid;
    const onMessage = (m: FromWorker) => this.onMessage(m);
    const onExit = (code: number | null, signal?: NodeJS.Signals | null) => this.onExit(code, signal ?? null);
    if (child)
      child
        .on('message', onMessage)
        .on('exit', onExit)
        .on('error', () => {});
    else
      thread!
        .on('message', onMessage)
        .on('exit', (code) => onExit(code))
        .on('error', () => {});
  }

  /** `nice`: a process worker's niceness from its first instruction on (serve/worker-nice.ts). */
  static spawn(isolation: Isolation, nice = 0): ModelWorker {
    const e = entry();
    // the worker loads onnxruntime: the variable in this process's environment first (ort-env.ts says why)
    quietOnnxruntime();
    if (isolation === 'process') {
      const bulk = BulkFile.create();
      try {
        const child = fork(e.file, [], {
          serialization: 'advanced',
          execArgv: [...(e.ts ? ['--import', e.tsx!] : []), ...(nice > 0 ? ['--import', e.preload.href] : [])],
          env: nice > 0 ? { ...process.env, XPKG_WORKER_NICE: String(nice) } : process.env,
          stdio: ['ignore', 'ignore', 'inherit', 'ipc', bulk?.fd ?? 'ignore'],
        });
        return new ModelWorker(child, undefined, bulk);
      } catch (err) {
        bulk?.close();
        throw err;
      }
    }
    const thread = e.ts
      ? new Worker(
          `import(${JSON.stringify(e.tsx!.replace(/esm\/index\.m?js$/, 'esm/api/index.mjs'))}).then((m) => { m.register(); return import(${JSON.stringify(e.file.href)}); });`,
          { eval: true },
        )
      : new Worker(e.file);
    return new ModelWorker(undefined, thread, undefined);
  }

  get busy(): number {
    return this.inflight.size;
  }

  private post(m: ToWorker, transfer: ArrayBuffer[] = []): void {
    // A worker that is going away answers nothing; its 'exit' fails what is pending.
    try {
      if (this.child) this.child.send(m, (e) => e && this.kill());
      else this.thread!.postMessage(m, transfer);
    } catch {
      this.kill();
    }
  }

  private call<T>(m: ToWorker): Promise<T> {
    if (this.exited) return Promise.reject(crashed('the worker has exited'));
    return new Promise<T>((resolve, reject) => {
      this.control = { resolve: resolve as (v: never) => void, reject };
      this.post(m);
    });
  }

  open(path: string, options: RunnerOptions, expectId?: string, nice?: number): Promise<Opened> {
    return this.call({ t: 'open', path, options, ...(expectId ? { expectId } : {}), ...(nice ? { nice } : {}) });
  }

  warm(): Promise<{ rss: number | null; ms: number; example: boolean }> {
    return this.call({ t: 'warm' });
  }

  /** Every thread of a process worker to niceness `nice` (serve/priority.ts); a thread worker stays as it is. */
  async renice(nice: number): Promise<void> {
    if (this.child) await this.call<{ threads: number }>({ t: 'nice', nice });
  }

  /**
   * The same from this process, without waiting for the worker to take a message (it may be busy
   * verifying or loading): how many of its threads were set. A thread worker: 0.
   */
  reniceFromHere(nice: number): number {
    return this.child?.pid !== undefined && !this.exited ? setProcessNice(nice, this.child.pid) : 0;
  }

  /**
   * A thread takes the `transfer` buffers as they are (they are detached here after); a process gets
   * the big arrays in its bulk file, written from the caller's memory (inline in the message when
   * that fails). `tail`: run only that split model's tail (serve/routes-fabric.ts).
   */
  run(inputs: Record<string, unknown>, transfer: ArrayBuffer[] = [], tail?: string): Promise<RunReply> {
    if (this.exited) return Promise.reject(crashed('the worker has exited'));
    // a thread would refuse to clone it (and the worker would be lost): refused here, the request only
    if (transfer.some(isDetached) || hasDetached(inputs)) return Promise.reject(detachedError());
    let split: ReturnType<typeof splitBulk> | undefined;
    try {
      if (this.bulk) split = splitBulk(inputs);
    } catch (e) {
      return Promise.reject(e);
    }
    const rid = this.nextRid++;
    return new Promise<RunReply>((resolve, reject) => {
      this.inflight.set(rid, { resolve: resolve as (v: never) => void, reject });
      const part = tail ? { tail } : {};
      if (!split?.parts.length) return this.post({ t: 'run', rid, inputs: split?.inputs ?? inputs, ...part }, transfer);
      const at = this.bulk!.write(split.parts, split.views);
      if (at === undefined) return this.post({ t: 'run', rid, inputs, ...part }, transfer);
      this.ranges.set(rid, at);
      this.post({ t: 'run', rid, inputs: split.inputs, ...part, bulk: split.parts });
    });
  }

  /** Closes the runner and ends the worker; killed when it does not finish within `ms`. */
  async close(ms = 5000): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((r) => this.once('exit', () => r()));
    if (this.closing) return gone; // already killed: wait for the exit
    this.closing = true;
    const timer = setTimeout(() => this.kill(), ms);
    // a step still pending (an open or warm-up of a load or a replacement) fails now: the close's own
    // call takes its place, and a step left pending would never settle
    this.control?.reject(new ServeError('E_SERVE_UNAVAILABLE', 'the model worker was closed during this step'));
    this.control = undefined;
    this.call({ t: 'close' }).catch(() => {});
    await gone;
    clearTimeout(timer);
  }

  kill(reason?: ServeError): void {
    if (this.exited) return;
    this.closing = true;
    this.killReason ??= reason;
    if (this.child) this.child.kill('SIGKILL');
    else void this.thread!.terminate();
  }

  private onMessage(m: FromWorker): void {
    if (m.t === 'result' || (m.t === 'error' && m.rid !== undefined)) {
      const p = this.inflight.get(m.rid!);
      this.inflight.delete(m.rid!);
      const at = this.ranges.get(m.rid!);
      if (at !== undefined) {
        this.ranges.delete(m.rid!);
        this.bulk!.release(at);
      }
      if (m.t === 'result') p?.resolve(m.result as never);
      else p?.reject(revive(m.error));
      return;
    }
    const c = this.control;
    this.control = undefined;
    if (m.t === 'error') c?.reject(revive(m.error));
    else c?.resolve(m as never);
    // a closed thread does not exit by itself while onnxruntime holds handles
    if (m.t === 'closed' && this.thread) void this.thread.terminate();
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.exited) return;
    this.exited = true;
    const why =
      this.killReason ??
      crashed(`the model worker exited (${signal ?? `code ${code}`}) while running this request`, { code, signal });
    for (const p of this.inflight.values()) p.reject(why);
    this.inflight.clear();
    this.ranges.clear();
    this.bulk?.close();
    this.control?.reject(why);
    this.control = undefined;
    this.emit('exit', { unexpected: !this.closing, code, signal });
  }
}

function crashed(summary: string, detail?: unknown): ServeError {
  return new ServeError('E_SERVE_WORKER_CRASHED', summary, detail);
}
