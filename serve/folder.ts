/**
 * Watching the repository folder: fs.watch events plus a poll (events are not reliable everywhere).
 * A scan lists the `.xpkg` files (hidden ones are temporary files being written) in name order, and
 * reports a file as changed once its identity (inode, size, mtime) has stayed the same for
 * `settleMs`, and as removed once it has been gone (or not a regular file: a dangling link, a folder,
 * a FIFO) for `settleMs` too, so a file deleted and written again meanwhile is a replacement, not an
 * unload and a load. A folder that cannot be listed is logged once and reported as nothing.
 */
import { type FSWatcher, watch } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';

/** The identity of a file's current contents, or null when it is not a regular file. */
export async function fileKey(path: string): Promise<string | null> {
  const st = await stat(path).catch(() => null);
  return st?.isFile() ? `${st.ino}:${st.size}:${st.mtimeMs}` : null;
}

export interface FolderHooks {
  /** The key each file was last handled with (files the owner knows about). */
  known(): ReadonlyMap<string, string>;
  changed(file: string): void;
  removed(file: string): void;
}

export class FolderWatch {
  /** Keys seen and since when, so only settled files are reported. */
  private readonly seen = new Map<string, { key: string; since: number }>();
  /** Known files found missing, and since when. */
  private readonly missing = new Map<string, number>();
  private watcher: FSWatcher | undefined;
  private poller: NodeJS.Timeout | undefined;
  private settleTimer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private error: string | undefined;

  constructor(
    private readonly dir: string,
    private readonly o: { pollMs: number; settleMs: number; log: Logger },
    private readonly hooks: FolderHooks,
  ) {}

  start(): void {
    try {
      this.watcher = watch(this.dir, () => void this.scan());
      this.watcher.on('error', () => {});
    } catch {
      // polling alone still sees every change
    }
    this.poller = setInterval(() => void this.scan(), this.o.pollMs);
  }

  /** Forgets what was seen of a file, so it is looked at again. */
  forget(file: string): void {
    this.seen.delete(file);
    this.missing.delete(file);
  }

  /** One scan at a time; `now` reports files without waiting for them to settle (start-up). */
  scan(now = false): Promise<void> {
    this.scanning ??= this.scanOnce(now).finally(() => (this.scanning = undefined));
    return this.scanning;
  }

  private async scanOnce(now: boolean): Promise<void> {
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => n.endsWith('.xpkg') && !n.startsWith('.'));
    } catch (e) {
      const why = (e as Error).message;
      if (why !== this.error)
        this.o.log.error(
          { code: 'E_SERVE_REPO', dir: this.dir, err: why },
          'model repository unreadable; keeping what is loaded',
        );
      this.error = why;
      return;
    }
    if (this.error) this.o.log.info({ dir: this.dir }, 'model repository readable again');
    this.error = undefined;
    const known = this.hooks.known();
    const t = performance.now();
    let wait = Infinity;
    const settled = (since: number) => {
      const age = t - since;
      if (now || age >= this.o.settleMs) return true;
      wait = Math.min(wait, this.o.settleMs - age);
      return false;
    };
    const present = new Set<string>();
    // name order: of two files with the same model and sequence, the same one wins at every start
    for (const n of names.sort()) {
      const key = await fileKey(join(this.dir, n));
      if (key === null) continue;
      present.add(n);
      this.missing.delete(n);
      if (known.get(n) === key) continue;
      if (this.seen.get(n)?.key !== key) this.seen.set(n, { key, since: t });
      if (settled(this.seen.get(n)!.since)) this.hooks.changed(n);
    }
    // files seen once and gone before they settled are forgotten (a folder of churning names)
    for (const n of this.seen.keys()) if (!present.has(n)) this.seen.delete(n);
    for (const n of known.keys()) {
      if (present.has(n)) continue;
      if (!this.missing.has(n)) this.missing.set(n, t);
      if (settled(this.missing.get(n)!)) this.hooks.removed(n);
    }
    if (wait !== Infinity && !this.settleTimer)
      this.settleTimer = setTimeout(() => {
        this.settleTimer = undefined;
        void this.scan();
      }, wait + 5);
  }

  async close(): Promise<void> {
    this.watcher?.close();
    clearInterval(this.poller);
    clearTimeout(this.settleTimer);
    await this.scanning;
  }
}
