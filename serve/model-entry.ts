/**
 * One model the repository serves: its loaded versions, the file the current one came from, its
 * request scheduler, and which version a request runs on.
 */
import { ServeError } from '../spec/errors.js';
import type { ServeMetrics } from './metrics.js';
import { ModelScheduler, type SchedulerConfig } from './scheduler.js';
import type { LoadedVersion } from './version.js';

export interface ModelEntry {
  name: string;
  current?: LoadedVersion;
  /** The versions requests may reach: the current one and any still draining (unless the same package loaded again). */
  versions: Map<string, LoadedVersion>;
  scheduler: ModelScheduler;
  /** Unloaded through the repository API: files of this name wait for an API load. */
  held: boolean;
  /** The file the current version came from: deleting it unloads the model, even if it has since been
   * replaced by a package that was refused (the version in memory kept serving meanwhile). */
  file?: string;
}

export function newModelEntry(
  name: string,
  c: Pick<SchedulerConfig, 'concurrency' | 'queue' | 'timeoutMs'>,
  metrics: ServeMetrics,
  pick: (pinned?: string) => LoadedVersion,
): ModelEntry {
  return {
    name,
    versions: new Map(),
    held: false,
    scheduler: new ModelScheduler(
      name,
      { concurrency: c.concurrency, queue: c.queue, timeoutMs: c.timeoutMs },
      {
        pick,
        depth: (queued, active) => {
          metrics.queueDepth.set({ model: name }, queued);
          metrics.inflight.set({ model: name }, active);
        },
      },
    ),
  };
}

/** The version a request for `name` runs on: the pinned id (or a unique prefix of it) while loaded, else the current one. */
export function pickVersion(e: ModelEntry | undefined, name: string, pinned?: string): LoadedVersion {
  if (!e || (!e.current && e.versions.size === 0))
    throw new ServeError('E_SERVE_MODEL_UNKNOWN', `no model named ${JSON.stringify(name)} is loaded`, {
      model: name,
    });
  if (pinned !== undefined) {
    const hits = [...e.versions.values()].filter((v) => v.state !== 'closed' && v.id.startsWith(pinned));
    if (pinned.length < 8 || hits.length !== 1)
      throw new ServeError('E_SERVE_VERSION_UNKNOWN', `model ${name} has no loaded version ${JSON.stringify(pinned)}`, {
        model: name,
        version: pinned,
        loaded: [...e.versions.keys()],
      });
    return hits[0];
  }
  if (!e.current) throw new ServeError('E_SERVE_UNAVAILABLE', `model ${name} has no version ready`, { model: name });
  return e.current;
}
