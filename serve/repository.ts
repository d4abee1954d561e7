/**
 * The model repository: a plain folder of signed `.xpkg` files, watched (fs.watch plus a poll).
 *
 * A new or changed file (settled: unchanged for `settleMs`) is opened in a worker, which verifies it
 * through Runner.open; its package id is the version and its manifest name the model it serves as.
 * A higher `sequence` than the version serving that name is loaded and warmed in the background,
 * then requests move to it in one assignment and the old version drains (deadline `drainMs`) and
 * unloads. Anything else is refused with a logged reason while the old version keeps serving: a
 * failed verification or load, a lower or equal sequence (E_SERVE_ROLLBACK), a memory budget that
 * cannot hold both copies (E_SERVE_MEMORY). A deleted file unloads its version, unless another file
 * holds the same package (a rename, a copy, a hard link): that one serves on. Loads run one at a
 * time, so decisions never race; a stop ends the load in progress. A folder that cannot be read
 * changes nothing that is loaded.
 */
import { EventEmitter } from 'node:events';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { type ErrorJson, ServeError, toXpkgError, XpkgError } from '../spec/errors.js';
import { batchPlan } from './batch.js';
import { FolderWatch, fileKey } from './folder.js';
import type { ServeMetrics } from './metrics.js';
import { type FileState, type FileStatus, type IndexEntry, repositoryIndex } from './repository-index.js';
import { ModelScheduler, type SchedulerConfig } from './scheduler.js';
import { LoadedVersion, type VersionConfig } from './version.js';

export interface RepositoryConfig {
  dir: string;
  pollMs: number;
  settleMs: number;
  drainMs: number;
  /** Bytes all loaded versions may hold together, a swap's two copies included (unbounded when absent). */
  memoryBudget?: number;
  version: VersionConfig;
  scheduler: Omit<SchedulerConfig, 'batch'> & { batch?: { max: number; delayMs: number } };
  metrics: ServeMetrics;
  log: Logger;
}

export interface ModelEntry {
  name: string;
  current?: LoadedVersion;
  /** Every loaded version: the current one and any still draining. */
  versions: Map<string, LoadedVersion>;
  scheduler: ModelScheduler;
  /** Unloaded through the repository API: files of this name wait for an API load. */
  held: boolean;
  /** The file the current version came from: deleting it unloads the model, even if it has since been
   * replaced by a package that was refused (the version in memory kept serving meanwhile). */
  file?: string;
}

export class Repository extends EventEmitter {
  private readonly files = new Map<string, FileState>();
  readonly models = new Map<string, ModelEntry>();
  private chain: Promise<void> = Promise.resolve();
  private readonly queued = new Set<string>();
  private readonly folder: FolderWatch;
  private closed = false;
  /** Ends the load in progress (its workers), so a stop does not wait for a swap to finish warming up. */
  private loading: AbortController | undefined;
  ready = false;

  constructor(private readonly config: RepositoryConfig) {
    super();
    this.folder = new FolderWatch(config.dir, config, {
      known: () => new Map([...this.files].map(([f, st]) => [f, st.key])),
      changed: (f) => this.enqueue(f, () => this.load(f)),
      removed: (f) => this.enqueue(f, () => this.remove(f)),
    });
  }

  private get log(): Logger {
    return this.config.log;
  }

  /** The folder exists and is a folder (checked before the server listens). */
  async check(): Promise<void> {
    const st = await stat(this.config.dir).catch((e: unknown) => {
      throw new ServeError('E_SERVE_REPO', `model repository ${this.config.dir}: ${(e as Error).message}`, {
        path: this.config.dir,
      });
    });
    if (!st.isDirectory())
      throw new ServeError('E_SERVE_REPO', `model repository ${this.config.dir} is not a folder`, {
        path: this.config.dir,
      });
  }

  /** Loads what the folder holds (readiness waits for this), then keeps watching it. */
  async start(): Promise<void> {
    await this.scan(true);
    await this.idle();
    this.ready = true;
    this.folder.start();
  }

  /** Resolves when every queued load and unload has finished. */
  async idle(): Promise<void> {
    let c: Promise<void>;
    do {
      c = this.chain;
      await c;
    } while (c !== this.chain);
  }

  private enqueue(file: string, task: () => Promise<unknown>): void {
    if (this.queued.has(file)) return;
    this.queued.add(file);
    this.chain = this.chain
      .then(async () => {
        this.queued.delete(file);
        if (!this.closed) await task();
      })
      .catch((e: unknown) => this.log.error({ file, err: (e as Error).message }, 'repository task failed'));
  }

  /** Lists the folder now and queues loads for new or changed files and unloads for removed ones. */
  scan(now = false): Promise<void> {
    return this.folder.scan(now);
  }

  private entry(name: string): ModelEntry {
    let e = this.models.get(name);
    if (!e) {
      const c = this.config.scheduler;
      const entry: ModelEntry = {
        name,
        versions: new Map(),
        held: false,
        scheduler: new ModelScheduler(
          name,
          { concurrency: c.concurrency, queue: c.queue, timeoutMs: c.timeoutMs },
          {
            pick: (pinned) => this.pick(name, pinned),
            depth: (queued, active) => {
              this.config.metrics.queueDepth.set({ model: name }, queued);
              this.config.metrics.inflight.set({ model: name }, active);
            },
          },
        ),
      };
      this.models.set(name, (e = entry));
    }
    return e;
  }

  /** The version a request for `name` runs on: the pinned id (or a unique prefix of it) while loaded, else the current one. */
  pick(name: string, pinned?: string): LoadedVersion {
    const e = this.models.get(name);
    if (!e || (!e.current && e.versions.size === 0))
      throw new ServeError('E_SERVE_MODEL_UNKNOWN', `no model named ${JSON.stringify(name)} is loaded`, {
        model: name,
      });
    if (pinned !== undefined) {
      const hits = [...e.versions.values()].filter((v) => v.state !== 'closed' && v.id.startsWith(pinned));
      if (pinned.length < 8 || hits.length !== 1)
        throw new ServeError(
          'E_SERVE_VERSION_UNKNOWN',
          `model ${name} has no loaded version ${JSON.stringify(pinned)}`,
          {
            model: name,
            version: pinned,
            loaded: [...e.versions.keys()],
          },
        );
      return hits[0];
    }
    if (!e.current) throw new ServeError('E_SERVE_UNAVAILABLE', `model ${name} has no version ready`, { model: name });
    return e.current;
  }

  private refuse(file: string, key: string, e: unknown, extra: Partial<FileState> = {}): ErrorJson {
    const reason = toXpkgError(e).toJSON();
    this.files.set(file, { key, status: 'refused', reason, ...extra });
    if (extra.name) this.config.metrics.swaps.inc({ model: extra.name, event: 'refused' });
    this.log.warn(
      { file, ...extra, code: reason.code, reason: reason.summary },
      'package refused; what was serving keeps serving',
    );
    this.emit('refused', { file, ...extra, reason });
    return reason;
  }

  private used(): number {
    let n = 0;
    for (const e of this.models.values()) for (const v of e.versions.values()) n += v.memory;
    return n;
  }

  /** One file: open and verify, decide, warm up, switch. Resolves with why it was refused, if it was. */
  private async load(file: string, o: { api?: boolean } = {}): Promise<ErrorJson | undefined> {
    const key = await fileKey(join(this.config.dir, file));
    if (key === null) return undefined;
    this.files.set(file, { key, status: 'loading' });
    const t0 = performance.now();
    this.loading = new AbortController();
    try {
      return await this.loadOpened(file, key, t0, o, this.loading.signal);
    } finally {
      this.loading = undefined;
    }
  }

  private async loadOpened(
    file: string,
    key: string,
    t0: number,
    o: { api?: boolean },
    signal: AbortSignal,
  ): Promise<ErrorJson | undefined> {
    let v: LoadedVersion;
    try {
      v = await LoadedVersion.open(
        join(this.config.dir, file),
        { ...this.config.version, onRestart: (x) => this.config.metrics.restarts.inc({ model: x.name }) },
        signal,
      );
    } catch (e) {
      if (this.closed) return undefined; // stopped while verifying: nothing to refuse
      return this.refuse(file, key, e);
    }
    const who = { name: v.name, id: v.id, sequence: v.sequence };
    const e = this.entry(v.name);
    const decline = async (status: FileStatus, err?: unknown) => {
      await v.close();
      if (err && !this.closed) return this.refuse(file, key, err, who);
      this.files.set(file, { key, status, ...who });
      return undefined;
    };
    // the version serving, from its own file (touched) or from another (a copy, a hard link): only
    // the file it came from is serving; another holds it in standby (it serves if that one goes)
    if (e.current?.id === v.id) return decline(e.file === file ? 'serving' : 'standby');
    if (e.held && !o.api) return decline('standby');
    if (o.api && !v.signed)
      return decline(
        'refused',
        new ServeError(
          'E_SERVE_UNSIGNED',
          `the repository API loads signed packages only; ${file} has no trusted signature`,
          who,
        ),
      );
    if (e.current && v.sequence <= e.current.sequence)
      return decline(
        'refused',
        new ServeError(
          'E_SERVE_ROLLBACK',
          `${file} is ${v.name} sequence ${v.sequence}; sequence ${e.current.sequence} is serving and only a higher one replaces it`,
          { ...who, serving: e.current.id, servingSequence: e.current.sequence },
        ),
      );
    const budget = this.config.memoryBudget;
    const overBudget = (summary: string) =>
      new ServeError('E_SERVE_MEMORY', summary, { ...who, need: v.memory, used: this.used(), budget });
    if (budget !== undefined && this.used() + v.memory > budget)
      return decline(
        'refused',
        overBudget(
          `loading ${v.name} needs about ${mib(v.memory)} MiB; ${mib(this.used())} of ${mib(budget)} MiB are in use`,
        ),
      );
    try {
      await v.warm();
    } catch (err) {
      return decline('refused', err);
    }
    if (budget !== undefined && this.used() + v.memory > budget)
      return decline(
        'refused',
        overBudget(`${v.name} holds ${mib(v.memory)} MiB once loaded; the budget is ${mib(budget)} MiB`),
      );
    if ((await fileKey(join(this.config.dir, file))) !== key) return decline('standby'); // changed while loading: the next scan retries
    // stopping, or unloaded through the API while this warmed up: the hold wins over a file's load
    if (this.closed || (e.held && !o.api)) return decline('standby');
    this.switchTo(e, v, file, key, performance.now() - t0);
    return undefined;
  }

  private switchTo(e: ModelEntry, v: LoadedVersion, file: string, key: string, loadMs: number): void {
    const old = e.current;
    const plan = batchPlan(v.manifest);
    const b = this.config.scheduler.batch;
    e.scheduler.setBatch(b && plan ? { ...b, plan } : undefined);
    e.versions.set(v.id, v);
    e.current = v; // the switch: every request picked from now on runs on v
    e.file = file;
    e.held = false;
    this.files.set(file, { key, status: 'serving', name: v.name, id: v.id, sequence: v.sequence });
    for (const [f, s] of this.files)
      if (f !== file && s.status === 'serving' && s.name === v.name) s.status = 'standby';
    const m = this.config.metrics;
    m.swaps.inc({ model: v.name, event: old ? 'swapped' : 'loaded' });
    m.loaded.set({ model: v.name }, e.versions.size);
    m.memory.set({ model: v.name, version: v.id }, v.memory);
    this.log.info(
      {
        model: v.name,
        version: v.id,
        sequence: v.sequence,
        file,
        from: old?.id,
        loadMs: Math.round(loadMs),
        loadedAtNice: v.loadedAtNice,
        memory: v.memory,
      },
      old ? 'swapped to a new version' : 'model loaded',
    );
    this.emit('swapped', { name: v.name, from: old?.id, to: v.id });
    if (old) void this.retire(e, old);
  }

  private async retire(e: ModelEntry, v: LoadedVersion): Promise<void> {
    const r = await v.drain(this.config.drainMs);
    e.versions.delete(v.id);
    this.config.metrics.loaded.set({ model: e.name }, e.versions.size);
    this.config.metrics.memory.remove({ model: e.name, version: v.id });
    this.log.info(
      { model: e.name, version: v.id, drained: r.drained, drainMs: Math.round(r.ms) },
      'old version unloaded',
    );
  }

  /** A file gone: its version unloads if it was serving; other files of that name get another look. */
  private async remove(file: string): Promise<void> {
    this.files.delete(file);
    this.folder.forget(file);
    for (const e of this.models.values()) {
      if (!e.current || e.file !== file) continue;
      // renamed, or another copy of the same package is in the folder: it keeps serving from that file
      const id = e.current.id;
      const copy = [...this.files].find(([, s]) => s.status === 'standby' && s.id === id && s.key !== '');
      if (copy) {
        e.file = copy[0];
        copy[1].status = 'serving';
        this.log.info(
          { model: e.name, version: id, file: copy[0], was: file },
          'model file gone; a copy keeps serving',
        );
      } else await this.unload(e, `${file} was removed`);
    }
  }

  private async unload(e: ModelEntry, why: string): Promise<void> {
    const v = e.current!;
    e.current = undefined;
    e.file = undefined;
    this.config.metrics.swaps.inc({ model: e.name, event: 'unloaded' });
    this.log.info({ model: e.name, version: v.id, why }, 'model unloading');
    this.emit('unloaded', { name: e.name, id: v.id });
    // another file with this name may serve now: the next scan looks at those files again (a key
    // no file has), and they stay known by name meanwhile (an API load finds them)
    for (const st of this.files.values()) if (st.name === e.name && st.status !== 'serving') st.key = '';
    await this.retire(e, v);
    if (!this.closed) void this.scan(true);
  }

  /** Repository API: (re)load the files of a model; only signed packages are accepted this way. */
  async loadModel(name: string): Promise<LoadedVersion> {
    // a held model stays held until a load through the API succeeds (switchTo releases it)
    let files = [...this.files].filter(([, s]) => s.name === name).map(([f]) => f);
    if (files.length === 0) files = [`${name}.xpkg`];
    const reasons: ErrorJson[] = [];
    for (const f of files) {
      this.files.delete(f);
      // its own queue key: a watcher load of the same file already queued must not swallow the API's
      this.enqueue(`api:${f}`, async () => {
        const why = await this.load(f, { api: true });
        if (why) reasons.push(why);
      });
    }
    await this.idle();
    const now = this.models.get(name)?.current;
    if (now) return now;
    const refused = reasons[0];
    // the refusal as it was: its own code (a digest, a signature, a rollback, the budget…)
    if (refused) throw new XpkgError(refused.code, refused.summary, refused.detail);
    throw new ServeError('E_SERVE_MODEL_UNKNOWN', `no package of model ${JSON.stringify(name)} in the repository`, {
      model: name,
    });
  }

  /** Repository API: unload a model and keep it unloaded until an API load. */
  async unloadModel(name: string): Promise<void> {
    const e = this.models.get(name);
    if (!e?.current)
      throw new ServeError('E_SERVE_MODEL_UNKNOWN', `no model named ${JSON.stringify(name)} is loaded`, {
        model: name,
      });
    e.held = true;
    const task = new Promise<void>((resolve) => {
      this.enqueue(`api:${name}`, async () => {
        if (e.current) await this.unload(e, 'unloaded through the repository API');
        resolve();
      });
    });
    await task;
  }

  /** What the folder holds and the state of each file (the repository index, repository-index.ts). */
  index(): IndexEntry[] {
    return repositoryIndex(this.files);
  }

  /** Stops watching and unloads everything (runs in flight finish first, within the drain deadline). */
  async close(): Promise<void> {
    this.closed = true;
    this.loading?.abort();
    await this.folder.close();
    await this.idle();
    await Promise.all(
      [...this.models.values()].flatMap((e) => {
        e.current = undefined;
        return [...e.versions.values()].map((v) => v.drain(this.config.drainMs));
      }),
    );
  }
}

const mib = (n: number) => Math.round(n / 1048576);
