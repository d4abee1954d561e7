/**
 * Atomic file creation: write a temp file beside the target, fsync, rename. Nothing half-written is
 * ever visible, and no temp file outlives its writer: every temp file is in one registry, removed
 * on error, on exit and on SIGINT / SIGTERM / SIGHUP (a Ctrl-C during a 5 GiB pack leaves nothing).
 */
import { randomBytes } from 'node:crypto';
import { type Stats, unlinkSync } from 'node:fs';
import { type FileHandle, link, lstat, open, realpath, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PackError } from '../spec/errors.js';

const temps = new Set<string>();
/** Undo steps of work that made more than one file (unpack), run after the temp files are gone. */
const undos = new Set<() => void>();
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function removeTemps(): void {
  // undos first: one may compare the file it was publishing with that file's temp (unpack.ts)
  for (const undo of [...undos].reverse()) {
    try {
      undo();
    } catch {
      // best effort: the process is ending
    }
  }
  undos.clear();
  for (const t of temps) {
    try {
      unlinkSync(t);
    } catch {
      // already gone
    }
  }
  temps.clear();
}

/** Files and folders being created in libuv's pool (createTracked): a signal waits for them. */
let creating = 0;
/** A signal came: no new file or folder is started, and the undo runs once the creates in flight land. */
let stopping = false;

/**
 * `create` (an open with O_CREAT, a mkdir), counted while libuv's pool runs it: one still in flight
 * when a signal's undo runs would land after it and leave its file or folder behind (a folder of an
 * interrupted unpack stayed, 1 run in ~10 under load). After a signal none is started.
 */
export async function createTracked<T>(create: () => Promise<T>): Promise<T> {
  if (stopping) throw Object.assign(new Error('interrupted by a signal'), { code: 'EINTR' });
  creating++;
  try {
    return await create();
  } finally {
    creating--;
  }
}

function onSignal(signal: NodeJS.Signals): void {
  if (stopping) return; // the undo is already waiting for the creates in flight
  stopping = true;
  const alone = process.listenerCount(signal) === 1;
  const finish = () => {
    removeTemps();
    unlisten();
    stopping = false;
    // Without another handler the signal's default action (terminate) is what the user asked for:
    // raise it again now that ours is gone. An application with its own handler decides itself.
    if (alone) process.kill(process.pid, signal);
  };
  // one syscall each: a millisecond at most, a second bounds a stuck file system
  const until = Date.now() + 1000;
  const settle = () => (creating === 0 || Date.now() > until ? finish() : setTimeout(settle, 1));
  settle();
}

function unlisten(): void {
  for (const s of SIGNALS) process.removeListener(s, onSignal);
  process.removeListener('exit', removeTemps);
}

function listen(): void {
  if (temps.size + undos.size > 0) return;
  for (const s of SIGNALS) process.on(s, onSignal);
  process.on('exit', removeTemps);
}

function quiet(): void {
  if (temps.size + undos.size === 0) unlisten();
}

/** Registers a temp file for removal on signals and exit. */
function track(path: string): void {
  listen();
  temps.add(path);
}

function untrack(path: string): void {
  temps.delete(path);
  quiet();
}

/**
 * Runs `undo` (synchronous) if a signal or an exit ends the process before the returned function
 * is called: work that publishes several files one by one (unpack) removes those it published, as
 * it does on an error, instead of leaving part of its output.
 */
export function undoOnInterrupt(undo: () => void): () => void {
  listen();
  undos.add(undo);
  return () => {
    undos.delete(undo);
    quiet();
  };
}

export interface AtomicOptions {
  /**
   * Mode of the file, set exactly (key files: 0600). Default: an existing target's mode is kept
   * (re-signing a 0600 package keeps it 0600); a new file gets 0644 less the umask.
   */
  mode?: number;
  /** Replace an existing target (default). When false an existing one fails with EEXIST, atomically. */
  overwrite?: boolean;
  /**
   * Called once the target is in place, before anything else is awaited: a caller that must undo
   * its writes on a signal (undoOnInterrupt) records the file here, not after writeAtomic resolves.
   */
  onPublished?: () => void;
}

/**
 * Where the bytes go: a target that is a symbolic link is written through (the temp file beside
 * the link's final target, which is replaced), so the link stays a link. Also the target's mode.
 */
async function resolveTarget(target: string): Promise<{ path: string; mode?: number }> {
  const st = await stat(target).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    throw e;
  });
  if (!st) return { path: target };
  refuseNonRegular(target, st);
  const path = (await lstat(target)).isSymbolicLink() ? await realpath(target) : target;
  return { path, mode: st.mode & 0o7777 };
}

/**
 * E_PACK_OUTPUT_EXISTS when `st` (the output's stat, null where there is none) is not a regular
 * file. An output is written to a temp file renamed over it: a folder would fail only after every
 * byte was written, and a device (/dev/null), FIFO or socket would be replaced by a regular file, not
 * written to. Commands call it up front, before their work; writeAtomic calls it again.
 */
export function refuseNonRegular(target: string, st: Stats | null): void {
  if (st && !st.isFile())
    throw new PackError('E_PACK_OUTPUT_EXISTS', `${target} exists and is not a regular file; it is never replaced`, {
      path: target,
    });
}

/**
 * The target's name cut to at most 128 UTF-8 bytes (whole characters) for its temp file: a target
 * named up to the file system's 255 bytes (a package's path segment may be) must not fail on a
 * temp name longer than that.
 */
function shortName(name: string): string {
  let out = '';
  let bytes = 0;
  for (const ch of name) {
    bytes += Buffer.byteLength(ch);
    if (bytes > 128) break;
    out += ch;
  }
  return out;
}

export async function writeAtomic<T>(
  target: string,
  fill: (fh: FileHandle, tempPath: string) => Promise<T>,
  options: AtomicOptions = {},
): Promise<T> {
  const overwrite = options.overwrite !== false;
  const dest = overwrite ? await resolveTarget(target) : { path: target };
  const mode = options.mode ?? dest.mode;
  const temp = join(
    dirname(dest.path),
    `.${shortName(basename(dest.path))}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`,
  );
  // tracked before it exists: a signal between the open and its callback must still remove it
  track(temp);
  const fh = await createTracked(() => open(temp, 'wx+', mode ?? 0o644)).catch((e: NodeJS.ErrnoException) => {
    untrack(temp);
    // the error names the file asked for (a missing or read-only folder), not the temp name beside it
    throw Object.assign(new Error(`cannot write ${target}: ${e.message.split(', ')[0]}`), {
      code: e.code,
      errno: e.errno,
      syscall: e.syscall,
      path: target,
    });
  });
  let closed = false;
  try {
    const result = await fill(fh, temp);
    if (mode !== undefined) await fh.chmod(mode);
    await fh.sync();
    await fh.close();
    closed = true;
    if (overwrite) await rename(temp, dest.path);
    else await publishNew(temp, dest.path);
    options.onPublished?.();
    return result;
  } finally {
    if (!closed) await fh.close().catch(() => {});
    await unlink(temp).catch(() => {});
    untrack(temp);
  }
}

/** link()'s failures on file systems without hard links (vfat and exFAT sticks, some network and FUSE mounts). */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);

/**
 * Publishes `temp` as `dest` without replacing a file that is there. link() fails with EEXIST
 * instead of replacing: a no-clobber publish with no check-then-write race. Where the file system
 * has no hard links, the name is claimed by an exclusive create (EEXIST as link gives it) and the
 * temp file renamed over the claim: never over another's file, empty only for that instant.
 */
async function publishNew(temp: string, dest: string): Promise<void> {
  try {
    await link(temp, dest);
  } catch (e) {
    if (!NO_HARD_LINKS.has((e as NodeJS.ErrnoException).code ?? '')) throw e;
    await (await createTracked(() => open(dest, 'wx'))).close();
    await rename(temp, dest);
  }
}

/** Writes all of `data` at `position`. */
export async function writeAllAt(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}
