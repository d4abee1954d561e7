/**
 * The model repository: a plain folder of signed `.xpkg` files, watched (fs.watch plus a poll).
 *
 * A new or changed file (settled: unchanged for `settleMs`) is opened in a worker, which verifies it
 * through Runner.open; its package id is the version and its manifest name the model it serves as.
 * A higher `sequence` than the version serving that name is loaded and warmed in the background,
 * then requests move to it in one assignment and the old version drains (deadline `drainMs`) and
 * unloads in the background (retirement.ts). Anything else is refused with a logged reason while the
 * old version keeps serving: a failed verification or load, a lower or equal sequence
 * (E_SERVE_ROLLBACK), a memory budget that cannot hold both copies (E_SERVE_MEMORY), a load past its
 * deadline (E_SERVE_TIMEOUT). A file replaced while it loaded is set aside as superseded, not
 * refused: its newer contents load next. A deleted file unloads its version, unless another file
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
import { type ModelEntry, newModelEntry, pickVersion } from './model-entry.js';
import { type FileState, type FileStatus, type IndexEntry, repositoryIndex } from './repository-index.js';
import { Retirements } from './retirement.js';
import type { SchedulerConfig } from './scheduler.js';
import { LoadedVersion, type VersionConfig } from './version.js';

export interface RepositoryConfig {
  dir: string;
  pollMs: number;
  settleMs: number;
  drainMs: number;
  /** A load (open, verify, load, warm up) still running after this long is abandoned (E_SERVE_TIMEOUT). */
  loadTimeoutMs: number;
  /** Bytes all loaded versions may hold together, a swap's two copies included (unbounded when absent). */
  memoryBudget?: number;
  version: VersionConfig;
  scheduler: Omit<SchedulerConfig, 'batch'> & { batch?: { max: number; delayMs: number } };
  metrics: ServeMetrics;
  log: Logger;
}

export type { ModelEntry } from './model-entry.js';

export class Repository extends EventEmitter {
  private readonly files = new Map<string, FileState>();
  readonly models = new Map<string, ModelEntry>();
  private chain: Promise<void> = Promise.resolve();
  private readonly queued = new Map<string, Promise<void>>();
  private readonly folder: FolderWatch;
  private closed = false;
  /** Ends the load in progress (its workers), so a stop does not wait for a swap to finish warming up. */
  private loading: AbortController | undefined;
  private readonly retiring: Retirements;
  ready = false;

  constructor(private readonly config: RepositoryConfig) {
    super();
    this.retiring = new Retirements(config);
    this.folder = new FolderWatch(config.dir, config, {
      known: () => new Map([...this.files].map(([f, st]) => [f, st.key])),
      changed: (f) => void this.enqueue(f, () => this.load(f)),
      removed: (f) => void this.enqueue(f, () => this.remove(f)),
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

  /** Queues a task (once per key while it waits); resolves when that key's queued task has run. */
  private enqueue(file: string, task: () => Promise<unknown>): Promise<void> {
    const waiting = this.queued.get(file);
    if (waiting) return waiting;
    const done = (this.chain = this.chain
      .then(async () => {
        this.queued.delete(file);
        if (!this.closed) await task();
      })
      .catch((e: unknown) => this.log.error({ file, err: (e as Error).message }, 'repository task failed')));
    this.queued.set(file, done);
    return done;
  }

  /** Lists the folder now and queues loads for new or changed files and unloads for removed ones. */
  scan(now = false): Promise<void> {
    return this.folder.scan(now);
  }

  private entry(name: string): ModelEntry {
    let e = this.models.get(name);
    if (!e)
      this.models.set(
        name,
        (e = newModelEntry(name, this.config.scheduler, this.config.metrics, (p) => this.pick(name, p))),
      );
    return e;
  }

  /** The version a request for `name` runs on: the pinned id (or a unique prefix of it) while loaded, else the current one. */
  pick(name: string, pinned?: string): LoadedVersion {
    return pickVersion(this.models.get(name), name, pinned);
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

  /** What the loaded versions hold, those still draining included: their workers are still there. */
  private used(): number {
    const all = new Set([...this.models.values()].flatMap((e) => [...e.versions.values()]));
    for (const v of this.retiring.versions()) all.add(v);
    return [...all].reduce((n, v) => n + v.memory, 0);
  }

  /** One file: open and verify, decide, warm up, switch. Resolves with why it was refused, if it was. */
  private async load(file: string, o: { api?: boolean } = {}): Promise<ErrorJson | undefined> {
    const key = await fileKey(join(this.config.dir, file));
    if (key === null) return undefined;
    this.files.set(file, { key, status: 'loading' });
    const t0 = performance.now();
    const loading = (this.loading = new AbortController());
    const seen: { who?: Who } = {};
    const ms = this.config.loadTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), ms)));
    const work = this.loadOpened(file, key, t0, o, loading.signal, seen);
    try {
      const r = await Promise.race([work, late]);
      if (r !== 'late') return r;
      // a worker that never answers (stuck in native code, a blocking open) must not hold up every
      // later load: its workers are killed, the aborted load settles by itself and changes nothing
      loading.abort();
      work.catch((e: unknown) => this.log.error({ file, err: (e as Error).message }, 'an abandoned load failed'));
      if (this.closed) return undefined;
      const why = new ServeError('E_SERVE_TIMEOUT', `loading ${file} did not finish within ${ms} ms; abandoned`, {
        file,
        loadTimeoutMs: ms,
      });
      return this.refuse(file, key, why, seen.who);
    } finally {
      clearTimeout(timer);
      if (this.loading === loading) this.loading = undefined;
    }
  }

  private async loadOpened(
    file: string,
    key: string,
    t0: number,
    o: { api?: boolean },
    signal: AbortSignal,
    seen: { who?: Who },
  ): Promise<ErrorJson | undefined> {
    const path = join(this.config.dir, file);
    let v: LoadedVersion;
    try {
      v = await LoadedVersion.open(
        path,
        { ...this.config.version, onRestart: (x) => this.config.metrics.restarts.inc({ model: x.name }) },
        signal,
      );
    } catch (e) {
      if (this.closed || signal.aborted) return undefined; // stopped, or past its deadline (refused there)
      return this.refuse(file, key, e);
    }
    const who = (seen.who = { name: v.name, id: v.id, sequence: v.sequence });
    const e = this.entry(v.name);
    const decline = async (status: FileStatus, err?: unknown) => {
      await v.close();
      if (signal.aborted) return undefined; // past its deadline: refused there already
      if (err && !this.closed) return this.refuse(file, key, err, who);
      this.files.set(file, { key, status, ...who });
      if (status === 'superseded') this.superseded(file, who);
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
      // a later worker found another package at the path (E_SERVE_VERSION_UNKNOWN), or none: the file
      // was replaced while this loaded, which is no fault of this package
      const moved = (err as { code?: string }).code === 'E_SERVE_VERSION_UNKNOWN' || (await fileKey(path)) !== key;
      return decline(moved ? 'superseded' : 'refused', moved ? undefined : err);
    }
    if (budget !== undefined && this.used() + v.memory > budget)
      return decline(
        'refused',
        overBudget(`${v.name} holds ${mib(v.memory)} MiB once loaded; the budget is ${mib(budget)} MiB`),
      );
    if ((await fileKey(path)) !== key) return decline('superseded'); // changed while loading: the next scan loads it
    // stopping, past the deadline, or unloaded through the API while this warmed up: the hold wins over a file's load
    if (this.closed || signal.aborted || (e.held && !o.api)) return decline('standby');
    this.switchTo(e, v, file, key, performance.now() - t0);
    return undefined;
  }

  /** Set aside, not refused: logged and counted apart, and the file's newer contents load next. */
  private superseded(file: string, who: Who): void {
    this.config.metrics.swaps.inc({ model: who.name, event: 'superseded' });
    this.log.info({ file, ...who }, 'package superseded while it loaded; the newer file loads next');
    this.emit('superseded', { file, ...who });
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
    m.loaded.set({ model: v.name }, this.retiring.count(e));
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
    if (old) void this.retiring.retire(e, old);
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
      } else this.unload(e, `${file} was removed`);
    }
  }

  /** Takes the model out of service now; its version drains in the background (loads do not wait for it). */
  private unload(e: ModelEntry, why: string): void {
    const v = e.current!;
    e.current = undefined;
    e.file = undefined;
    this.config.metrics.swaps.inc({ model: e.name, event: 'unloaded' });
    this.log.info({ model: e.name, version: v.id, why }, 'model unloading');
    this.emit('unloaded', { name: e.name, id: v.id });
    // another file with this name may serve now: the next scan looks at those files again (a key
    // no file has), and they stay known by name meanwhile (an API load finds them)
    for (const st of this.files.values()) if (st.name === e.name && st.status !== 'serving') st.key = '';
    void this.retiring.retire(e, v);
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
      void this.enqueue(`api:${f}`, async () => {
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
    await this.enqueue(`api:${name}`, async () => {
      if (e.current) this.unload(e, 'unloaded through the repository API');
    });
    // the answer means unloaded (workers gone), as before; the queue of loads did not wait for it
    await this.retiring.gone(name);
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
    await Promise.all([
      this.retiring.gone(),
      ...[...this.models.values()].flatMap((e) => {
        e.current = undefined;
        return [...e.versions.values()].filter((v) => !this.retiring.has(v)).map((v) => v.drain(this.config.drainMs));
      }),
    ]);
  }
}

type Who = { name: string; id: string; sequence: number };

const mib = (n: number) => Math.round(n / 1048576);
