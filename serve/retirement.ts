/**
 * Versions on their way out. A version swapped out or unloaded drains (its runs in flight finish, up
 * to the drain deadline) in the background, so the repository's loads never wait for it; until it is
 * gone it still holds its workers, so it still counts against the memory budget and in the
 * loaded-versions gauge.
 */
import type { Logger } from 'pino';
import type { ServeMetrics } from './metrics.js';
import type { ModelEntry } from './model-entry.js';
import type { LoadedVersion } from './version.js';

export class Retirements {
  private readonly draining = new Map<LoadedVersion, Promise<void>>();

  constructor(private readonly o: { drainMs: number; metrics: ServeMetrics; log: Logger }) {}

  /** Starts draining `v`, a version of `e` no request is sent to any more; resolves once it is unloaded. */
  retire(e: ModelEntry, v: LoadedVersion): Promise<void> {
    const gone = v.drain(this.o.drainMs).then((r) => {
      this.draining.delete(v);
      // the same package may have been loaded again meanwhile (a file deleted and put back): that copy stays
      if (e.versions.get(v.id) === v) {
        e.versions.delete(v.id);
        this.o.metrics.memory.remove({ model: e.name, version: v.id });
      }
      this.o.metrics.loaded.set({ model: e.name }, this.count(e));
      this.o.log.info(
        { model: e.name, version: v.id, drained: r.drained, drainMs: Math.round(r.ms) },
        'old version unloaded',
      );
    });
    this.draining.set(v, gone);
    this.o.metrics.loaded.set({ model: e.name }, this.count(e));
    return gone;
  }

  has(v: LoadedVersion): boolean {
    return this.draining.has(v);
  }

  /** Every version still draining. */
  versions(): LoadedVersion[] {
    return [...this.draining.keys()];
  }

  /** Versions of a model loaded: the ones it may serve and the ones still draining. */
  count(e: ModelEntry): number {
    return new Set([...e.versions.values(), ...this.versions().filter((v) => v.name === e.name)]).size;
  }

  /** Resolves once every version draining now (of model `name`, or all) is unloaded. */
  async gone(name?: string): Promise<void> {
    await Promise.all([...this.draining].filter(([v]) => name === undefined || v.name === name).map(([, p]) => p));
  }
}
