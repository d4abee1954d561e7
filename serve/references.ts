/**
 * Registry references in the daemon's configuration (`xpkg serve --ref [name=]oci://host/repo:tag`):
 * each is pulled into the shared cache (what this host can run, spec/OCI.md §6) and copied into the
 * repository folder as `<name>.xpkg` (temp file + rename), where the repository loads it like any
 * dropped-in file: the one verification path, hot swap by `sequence`, refusal of a bad version
 * while the old one serves. Re-resolved every `pollMs`: a tag that moves to a newer signed version
 * swaps it in. Offline, the cached resolution is used; a failed resolution is logged and the
 * version in the folder keeps serving.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { copyOut } from '../oci/pull.js';
import { parseReference as parseOciReference } from '../oci/ref.js';
import type { RunnerOptions } from '../runner/runner.js';
import { ServeError } from '../spec/errors.js';

export interface ServeReference {
  /** The model's file name in the repository (`<name>.xpkg`), so its alias. */
  name: string;
  reference: string;
}

const NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** `[name=]reference`; without a name, the repository's last path segment (`oci://h/models/ocr:4` → `ocr`). */
export function parseReference(spec: string): ServeReference {
  const eq = spec.indexOf('=');
  const named = eq > 0 && !spec.slice(0, eq).includes('/');
  const reference = named ? spec.slice(eq + 1) : spec;
  const name = named
    ? spec.slice(0, eq)
    : (reference
        .replace(/^oci:\/\//, '')
        .replace(/@sha256:[a-f0-9]+$/, '')
        .replace(/:[^/]*$/, '')
        .split('/')
        .pop() ?? '');
  if (!NAME.test(name))
    throw new ServeError('E_SERVE_CONFIG', `--ref ${JSON.stringify(spec)}: give a model name (name=reference)`, {
      reference: spec,
    });
  // a reference that does not parse now never will (its registry comes from this process's
  // environment): refused at start, not logged as unresolved at every poll while the daemon runs
  try {
    parseOciReference(reference);
  } catch (e) {
    throw new ServeError('E_SERVE_CONFIG', `--ref ${JSON.stringify(spec)}: ${(e as Error).message}`, {
      reference: spec,
      code: (e as { code?: string }).code,
    });
  }
  return { name, reference };
}

export class ReferenceSync {
  readonly #copied = new Map<string, string>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #closed = false;

  constructor(
    private readonly refs: readonly ServeReference[],
    private readonly repo: string,
    private readonly runner: RunnerOptions,
    private readonly log: Logger,
    private readonly pollMs: number,
  ) {}

  /** Resolves every reference once (awaited before the repository's first scan), then on a timer. */
  async start(): Promise<void> {
    await this.sync();
    if (this.pollMs > 0) {
      this.#timer = setInterval(() => void this.sync(), this.pollMs);
      this.#timer.unref();
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#running;
  }

  sync(): Promise<void> {
    this.#running ??= this.#syncAll().finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #syncAll(): Promise<void> {
    const { resolveReference } = await import('../runner/reference.js');
    for (const ref of this.refs) {
      try {
        const { path } = await resolveReference(ref.reference, {
          ...(this.runner.variant !== undefined ? { variant: this.runner.variant } : {}),
          ...(this.runner.host !== undefined ? { host: this.runner.host } : {}),
        });
        // the cache names a package by its id: a new path is a new version (or a new selection)
        if (this.#closed || this.#copied.get(ref.name) === path) continue;
        await copyOut(path, join(this.repo, `${ref.name}.xpkg`));
        this.#copied.set(ref.name, path);
        this.log.info({ model: ref.name, reference: ref.reference, cached: path }, 'reference resolved');
      } catch (e) {
        const err = e as { code?: string; message?: string };
        this.log.warn(
          { model: ref.name, reference: ref.reference, code: err.code, err: err.message },
          'reference not resolved; what the repository holds keeps serving',
        );
      }
    }
  }
}
