/**
 * A cross-process lock for short read-modify-write updates of a state file: an O_EXCL lock file
 * holding the owner's pid and host name. Node has no flock(), so a crashed owner's lock is broken
 * when its pid is gone (same host) or it is older than `staleMs`; breaking goes through a second
 * O_EXCL file so two waiters never both break it (one would delete the lock the other just took).
 * Waiting is bounded: after `waitMs` the caller gets an ELOCKED error.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { processAlive as alive } from '../platform/process.js';

export interface LockOptions {
  /** Longest wait for a lock held by someone else (ms). */
  waitMs?: number;
  /** Age after which a lock is taken to be abandoned whoever holds it (ms). */
  staleMs?: number;
}

export const LOCK_WAIT_MS = 15_000;
export const LOCK_STALE_MS = 10_000;

async function createExclusive(path: string, content = `${process.pid} ${hostname()}\n`): Promise<boolean> {
  try {
    const fh = await open(path, 'wx', 0o600);
    try {
      await fh.writeFile(content);
    } finally {
      await fh.close();
    }
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

/** True when the lock at `path` is gone or abandoned (owner dead on this host, or too old). */
async function abandoned(path: string, staleMs: number): Promise<boolean> {
  const st = await stat(path).catch(() => null);
  if (!st) return false;
  if (Date.now() - st.mtimeMs > staleMs) return true;
  const [pid, host] = (await readFile(path, 'utf8').catch(() => '')).trim().split(' ');
  return host === hostname() && /^[1-9][0-9]*$/.test(pid ?? '') && !alive(Number(pid));
}

/** Removes an abandoned lock, holding `<path>.break` so no two waiters do it at once. */
async function breakIfAbandoned(path: string, staleMs: number): Promise<void> {
  const guard = `${path}.break`;
  if (!(await createExclusive(guard))) {
    // A breaker that died inside this tiny section leaves the guard behind: it ages out.
    const st = await stat(guard).catch(() => null);
    if (st && Date.now() - st.mtimeMs > staleMs) await unlink(guard).catch(() => {});
    return;
  }
  try {
    if (await abandoned(path, staleMs)) await unlink(path).catch(() => {});
  } finally {
    await unlink(guard).catch(() => {});
  }
}

/** Runs `fn` while holding the lock file `path`. Errors other than "held" (ENOENT, EACCES…) are thrown as they are. */
export async function withFileLock<T>(path: string, fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
  const waitMs = options.waitMs ?? LOCK_WAIT_MS;
  const staleMs = options.staleMs ?? LOCK_STALE_MS;
  const deadline = Date.now() + waitMs;
  let delay = 2;
  // A nonce after pid and host: this holder's lock, told apart from one taken after it was broken.
  const mine = `${process.pid} ${hostname()} ${randomBytes(8).toString('hex')}\n`;
  while (!(await createExclusive(path, mine))) {
    if (Date.now() >= deadline) {
      const owner = (await readFile(path, 'utf8').catch(() => '')).trim();
      throw Object.assign(new Error(`${path} is held${owner ? ` by ${owner}` : ''}`), { code: 'ELOCKED', path, owner });
    }
    if (await abandoned(path, staleMs)) await breakIfAbandoned(path, staleMs);
    await sleep(delay + Math.random() * delay);
    delay = Math.min(delay * 2, 50);
  }
  try {
    return await fn();
  } finally {
    // A holder that overran staleMs may have had its lock broken and taken by another: removing that
    // one would let a third writer in beside the second (and lose one's records).
    if ((await readFile(path, 'utf8').catch(() => null)) === mine) await unlink(path).catch(() => {});
  }
}
