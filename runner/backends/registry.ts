/**
 * The backend registry, in the manner of onnxruntime-common: backends register with a priority,
 * each is initialised at most once (concurrent callers share the same promise), and when no
 * backend for a runtime initialises, every failure is reported together.
 */
import { RunnerError } from '../../spec/errors.js';
import type { Backend, BackendInit } from '../types.js';

export interface BackendStatus {
  name: string;
  runtimes: readonly string[];
  priority: number;
  init: BackendInit;
}

interface Entry {
  backend: Backend;
  priority: number;
  init?: Promise<BackendInit>;
}

export class BackendRegistry {
  readonly #entries: Entry[] = [];

  /**
   * Adds a backend. Registering the same object again only updates its priority; a different
   * backend under a name already taken is refused (two implementations would shadow each other).
   */
  register(backend: Backend, priority = 0): void {
    if (!Number.isFinite(priority))
      throw new RunnerError('E_RUN_BACKEND', `backend ${backend.name}: priority must be a finite number`);
    const same = this.#entries.find((e) => e.backend.name === backend.name);
    if (same && same.backend !== backend)
      throw new RunnerError(
        'E_RUN_BACKEND',
        `a different backend named ${JSON.stringify(backend.name)} is already registered`,
        { name: backend.name },
      );
    if (same) same.priority = priority;
    else this.#entries.push({ backend, priority });
    // stable: equal priorities keep registration order
    this.#entries.sort((a, b) => b.priority - a.priority);
  }

  /** Runtime names that at least one registered backend runs (whether or not it initialises). */
  runtimes(): string[] {
    return [...new Set(this.#entries.flatMap((e) => e.backend.runtimes))].sort();
  }

  /** Backends for a runtime, highest priority first. */
  backendsFor(runtime: string): Backend[] {
    return this.#entries.filter((e) => e.backend.runtimes.includes(runtime)).map((e) => e.backend);
  }

  /** Initialises a backend once; a throwing init becomes `{ ok: false, reason }`. */
  init(backend: Backend): Promise<BackendInit> {
    const entry = this.#entries.find((e) => e.backend === backend);
    if (!entry) return Promise.reject(new RunnerError('E_RUN_BACKEND', `backend ${backend.name} is not registered`));
    entry.init ??= (async () => {
      try {
        return await backend.init();
      } catch (e) {
        return { ok: false, reason: e instanceof Error ? e.message : String(e) };
      }
    })();
    return entry.init;
  }

  /**
   * The highest-priority backend for `runtime` that initialises. Throws E_RUN_BACKEND with every
   * backend's failure when none does (or when none is registered for the runtime).
   */
  async resolve(runtime: string): Promise<{ backend: Backend; init: BackendInit }> {
    const candidates = this.backendsFor(runtime);
    if (!candidates.length) {
      throw new RunnerError(
        'E_RUN_BACKEND',
        `no backend is registered for runtime ${JSON.stringify(runtime)} (registered: ${this.runtimes().join(', ') || 'none'})`,
        { runtime, registered: this.runtimes() },
      );
    }
    const failures: { backend: string; reason: string }[] = [];
    for (const backend of candidates) {
      const init = await this.init(backend);
      if (init.ok) return { backend, init };
      failures.push({ backend: backend.name, reason: init.reason ?? 'init failed' });
    }
    throw new RunnerError(
      'E_RUN_BACKEND',
      `no backend for runtime ${JSON.stringify(runtime)} initialised: ${failures.map((f) => `${f.backend}: ${f.reason}`).join('; ')}`,
      { runtime, failures },
    );
  }

  /** Initialises every backend and reports each (for `xpkg host`). */
  async status(): Promise<BackendStatus[]> {
    return Promise.all(
      this.#entries.map(async (e) => ({
        name: e.backend.name,
        runtimes: e.backend.runtimes,
        priority: e.priority,
        init: await this.init(e.backend),
      })),
    );
  }
}
