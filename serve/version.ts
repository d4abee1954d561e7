/**
 * One loaded version of a model: a package id, its verified manifest and the workers that run it.
 * Runs go to the least busy worker. A worker that dies is replaced by a fresh one that must open the
 * same package id (E_SERVE_VERSION_UNKNOWN otherwise: the file changed, the repository will load it).
 * Draining waits for the runs in flight up to a deadline, then ends the workers.
 */
import type { Logger } from 'pino';
import type { RunnerOptions } from '../runner/runner.js';
import { ServeError } from '../spec/errors.js';
import type { Manifest } from '../spec/schema.js';
import type { Opened, RunReply } from './protocol.js';
import { type Isolation, ModelWorker } from './worker-handle.js';

export interface VersionConfig {
  isolation: Isolation;
  workers: number;
  runner: RunnerOptions;
  /** Niceness of the workers (0: as the daemon; higher: the event loop wins a contended core). */
  nice?: number;
  /**
   * Niceness of a worker while it opens and warms up (serve/priority.ts): higher than `nice`, so that
   * loading a version takes only what the serving workers leave; back to `nice` before it serves.
   */
  loadNice?: number;
  /**
   * A load still running after this long (default 5 s) goes on at `nice`: on a host saturated by
   * other work, a worker at 19 gets ~1.5% of a core and would starve the swap for minutes.
   */
  loadPatienceMs?: number;
  log: Logger;
  onRestart?: (v: LoadedVersion) => void;
}

/**
 * The workers one load starts (the first open, the warm-up's others, or a replacement): spawned at
 * `loadNice`, and all set to `nice` from the daemon once the load outlasts its patience (the worker
 * itself may be too busy verifying to take a message). `done` ends the clock.
 */
class LoadClock {
  private readonly workers = new Set<ModelWorker>();
  private timer: NodeJS.Timeout | undefined;
  private late = false;
  private aborted = false;
  private readonly onAbort = () => {
    this.aborted = true;
    for (const w of this.workers) w.kill();
  };

  constructor(
    private readonly config: VersionConfig,
    private readonly what: string,
    /** Aborting ends the load's workers (its steps fail as a crash); a finished load ignores it. */
    private readonly signal?: AbortSignal,
  ) {
    const { nice = 0, loadNice = nice, loadPatienceMs = 5000 } = config;
    if (loadNice !== nice) this.timer = setTimeout(() => this.hurry(), loadPatienceMs).unref();
    signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /** The niceness a worker of this load starts at, now. */
  get nice(): number {
    const { nice = 0, loadNice = nice } = this.config;
    return this.late ? nice : loadNice;
  }

  spawn(): ModelWorker {
    const w = ModelWorker.spawn(this.config.isolation, this.nice);
    this.workers.add(w);
    if (this.aborted || this.signal?.aborted) w.kill();
    return w;
  }

  /** After a step of a worker: once late, what it may have set itself meanwhile is undone. */
  stepped(w: ModelWorker): void {
    if (this.late) this.renice(w);
  }

  done(): void {
    clearTimeout(this.timer);
    this.signal?.removeEventListener('abort', this.onAbort);
    this.workers.clear();
  }

  private hurry(): void {
    this.late = true;
    const threads = [...this.workers].reduce((n, w) => n + this.renice(w), 0);
    this.config.log.info(
      { load: this.what, patienceMs: this.config.loadPatienceMs ?? 5000, threads, nice: this.nice },
      'load outlasted its patience; it goes on at the serving niceness',
    );
  }

  private renice(w: ModelWorker): number {
    try {
      return w.reniceFromHere(this.nice);
    } catch (e) {
      // ended meanwhile, or refused despite priority.ts's check: the load goes on as it was
      this.config.log.warn({ load: this.what, err: (e as Error).message }, 'a loading worker could not be reniced');
      return 0;
    }
  }
}

export class LoadedVersion {
  readonly id: string;
  readonly name: string;
  readonly sequence: number;
  readonly manifest: Manifest;
  readonly signed: boolean;
  /** The niceness its first worker verified and loaded the package at (serve/priority.ts). */
  readonly loadedAtNice: number;
  /** Resident bytes charged to the memory budget (measured per worker where it can be, else estimated). */
  memory: number;
  state: 'loading' | 'ready' | 'draining' | 'closed' = 'loading';
  private workers: ModelWorker[] = [];
  private running = 0;
  /** A replacement worker starting: runs that find no live worker wait for it instead of failing. */
  private replacing: Promise<unknown> | undefined;
  private idle: (() => void)[] = [];

  private constructor(
    readonly path: string,
    opened: Opened,
    first: ModelWorker,
    private readonly config: VersionConfig,
    private readonly loading: LoadClock,
  ) {
    this.id = opened.id;
    this.manifest = opened.manifest;
    this.name = opened.manifest.name;
    this.sequence = opened.manifest.sequence;
    this.signed = opened.signed;
    this.loadedAtNice = opened.nice;
    this.memory = LoadedVersion.estimate(opened) * config.workers;
    this.adopt(first);
  }

  /** What one worker of this package will hold: its memory after opening plus the chosen models' bytes. */
  static estimate(o: Opened): number {
    return (o.rss ?? 0) + o.variantBytes;
  }

  /** Opens (verifies) the package in one worker; nothing is loaded yet beyond the manifest. */
  static async open(path: string, config: VersionConfig, signal?: AbortSignal): Promise<LoadedVersion> {
    const loading = new LoadClock(config, path, signal);
    const w = loading.spawn();
    try {
      const opened = await w.open(path, config.runner, undefined, loading.nice);
      loading.stepped(w);
      return new LoadedVersion(path, opened, w, config, loading);
    } catch (e) {
      loading.done();
      w.kill();
      throw e;
    }
  }

  /** Starts the other workers and warms every one up (models loaded, one example run). */
  async warm(): Promise<void> {
    const more = await Promise.all(
      Array.from({ length: this.config.workers - 1 }, () => this.spawnOne(this.loading).catch((e: unknown) => e)),
    );
    const failed = more.find((x) => !(x instanceof ModelWorker));
    if (failed) throw failed;
    const warmed = await Promise.all(this.workers.map((w) => w.warm()));
    await Promise.all(this.workers.map((w) => this.serving(w)));
    // only now: an abort (a stop, the load's deadline) still kills a worker stuck going back to `nice`
    this.loading.done();
    for (const w of this.workers) w.ready = true;
    const measured = warmed.map((x) => x.rss);
    if (measured.every((x) => x !== null)) this.memory = measured.reduce((a, b) => a + b!, 0);
    this.state = 'ready';
  }

  private async spawnOne(loading: LoadClock): Promise<ModelWorker> {
    const w = loading.spawn();
    try {
      await w.open(this.path, this.config.runner, this.id, loading.nice);
      loading.stepped(w);
    } catch (e) {
      w.kill();
      throw e;
    }
    this.adopt(w);
    return w;
  }

  /** A worker that loaded at a lower priority back at the serving one, before any request reaches it. */
  private async serving(w: ModelWorker): Promise<void> {
    const { nice = 0, loadNice = nice } = this.config;
    if (loadNice === nice) return;
    // refused despite priority.ts's check (a seccomp filter, a changed limit): it serves, slower
    await w
      .renice(nice)
      .catch((e: unknown) =>
        this.config.log.warn(
          { model: this.name, version: this.id, err: (e as Error).message, nice: loadNice },
          'a loaded worker could not go back to the serving niceness',
        ),
      );
  }

  private adopt(w: ModelWorker): void {
    this.workers.push(w);
    w.on('exit', ({ unexpected, code, signal }) => {
      this.workers = this.workers.filter((x) => x !== w);
      if (!unexpected || this.state !== 'ready') return;
      this.config.log.warn({ model: this.name, version: this.id, code, signal }, 'model worker died; replacing it');
      this.config.onRestart?.(this);
      const loading = new LoadClock(this.config, `replacing a worker of ${this.path}`);
      const replacing = this.spawnOne(loading)
        .then(async (nw) => {
          await nw.warm();
          loading.done();
          await this.serving(nw);
          nw.ready = true;
        })
        .catch((e: unknown) =>
          this.config.log.error(
            { model: this.name, version: this.id, err: (e as Error).message, code: (e as { code?: string }).code },
            'replacing the model worker failed',
          ),
        )
        .finally(() => {
          loading.done();
          if (this.replacing === replacing) this.replacing = undefined;
        });
      this.replacing = replacing;
    });
  }

  get inflight(): number {
    return this.running;
  }

  /** Runs on the least busy live worker. */
  async run(inputs: Record<string, unknown>, transfer: ArrayBuffer[] = [], tail?: string): Promise<RunReply> {
    let live = this.workers.filter((w) => !w.exited && w.ready);
    if (live.length === 0 && this.replacing) {
      await this.replacing;
      live = this.workers.filter((w) => !w.exited && w.ready);
    }
    if (this.state === 'closed' || live.length === 0)
      throw new ServeError('E_SERVE_UNAVAILABLE', `version ${this.id} of ${this.name} has no live worker`, {
        model: this.name,
        version: this.id,
      });
    const w = live.reduce((a, b) => (b.busy < a.busy ? b : a));
    this.running++;
    try {
      return await w.run(inputs, transfer, tail);
    } finally {
      this.running--;
      if (this.running === 0) for (const f of this.idle.splice(0)) f();
    }
  }

  /** Waits for the runs in flight (at most `deadlineMs`), then ends the workers; runs still going fail. */
  async drain(deadlineMs: number): Promise<{ drained: boolean; ms: number }> {
    const t0 = performance.now();
    this.state = 'draining';
    let drained = true;
    if (this.running > 0) {
      let timer: NodeJS.Timeout | undefined;
      drained = await Promise.race([
        new Promise<boolean>((r) => this.idle.push(() => r(true))),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(false), deadlineMs))),
      ]);
      clearTimeout(timer);
    }
    if (!drained) {
      const why = new ServeError(
        'E_SERVE_DRAINED',
        `version ${this.id} of ${this.name} was unloaded before this request finished`,
        {
          model: this.name,
          version: this.id,
          deadlineMs,
        },
      );
      for (const w of this.workers) w.kill(why);
    }
    await this.close();
    return { drained, ms: performance.now() - t0 };
  }

  async close(): Promise<void> {
    this.state = 'closed';
    this.loading.done();
    await Promise.all(this.workers.map((w) => w.close()));
  }

  /** Process ids of the workers (for operators and fault tests). */
  pids(): number[] {
    return this.workers.map((w) => w.pid).filter((p): p is number => p !== undefined);
  }
}
