/**
 * How one reader reads each payload byte once when a model load and a full verification overlap
 * (the drop page verifies while the models load): the reader remembers the files it has read whole
 * and checked against the manifest (a load's verified read), and a full verification awaits that
 * check instead of reading the file again; and bytes read ahead of their use (`prefetch`, started
 * while a runtime starts) are handed over once to the read that wants them. Nothing here decides
 * what is valid: the digests are the reader's own, on exactly the bytes handed over.
 */
import { FormatError } from '../spec/errors.js';

export class SharedReads {
  /** Per file: resolves true once a verified read of all of it passed, false if one stopped for another reason. */
  private readonly checked = new Map<string, Promise<boolean>>();
  private readonly ahead = new Map<string, Promise<Buffer>>();
  /** Files a verified read of all of them passed at least once. */
  private readonly passed = new Set<string>();

  /**
   * Records a verified read of `path`. A digest or archive error is kept (a verification awaiting
   * it reports that code); any other failure (a sink that gave up, a network error) leaves the file
   * to be checked again, unless an earlier read already did.
   */
  track<T>(path: string, read: Promise<T>): Promise<T> {
    const done = read.then(
      () => {
        this.passed.add(path);
        return true;
      },
      (e: unknown) => (e instanceof FormatError ? Promise.reject(e) : this.passed.has(path)),
    );
    done.catch(() => {}); // awaited by a verification, if one comes
    this.checked.set(path, done);
    return read;
  }

  /** Whether `path` was (or is being) read whole and checked: null when no read was tracked. */
  covered(path: string): Promise<boolean> | null {
    return this.checked.get(path) ?? null;
  }

  /** Starts `read` of `path` now, unless one is already waiting to be taken; resolves when it settles. */
  prefetch(path: string, read: () => Promise<Buffer>): Promise<void> {
    let p = this.ahead.get(path);
    if (!p) this.ahead.set(path, (p = this.track(path, read())));
    return p.then(
      () => {},
      () => {}, // the taker sees the failure
    );
  }

  /** The bytes of a prefetch of `path`, once; null when none is waiting. */
  take(path: string): Promise<Buffer> | null {
    const p = this.ahead.get(path) ?? null;
    this.ahead.delete(path);
    return p;
  }

  /** Forgets prefetched bytes nobody took (their check still counts). */
  drop(paths: Iterable<string> = [...this.ahead.keys()]): void {
    for (const p of paths) this.ahead.delete(p);
  }
}
