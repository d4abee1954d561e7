/**
 * SHA-256 of large buffers on a helper thread, once `startHashThread()` was called.
 *
 * Why: a cold `xpkg run` of the OCR package hashes ~33 MB (its models, and the cached optimised
 * models) on the main thread, ~40 ms there, while onnxruntime also creates sessions on that thread
 * and the second core idles. The buffer is moved to the thread and back (an ArrayBuffer transfer,
 * no copy): the caller gets the same bytes back with their digest and must use those, as `data` is
 * detached meanwhile. Small buffers, views into a larger buffer and buffers that cannot be moved are
 * hashed here, as is everything when the thread is not running or dies.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

/** Below this a message round trip costs more than hashing here. */
const MIN_BYTES = 1 << 20;

export interface Hashed {
  /** The bytes that were hashed (`data` itself, or its memory moved back from the thread). */
  bytes: Buffer;
  /** Lower-case hex SHA-256. */
  hex: string;
}

const hashHere = (data: Buffer): Hashed => ({ bytes: data, hex: createHash('sha256').update(data).digest('hex') });

let thread: Worker | null = null;
/** Set once the thread said it is ready: a buffer moved to a thread that failed to start would be lost. */
let ready = false;
let starting: Promise<boolean> | undefined;
let nextId = 0;
const pending = new Map<number, { resolve: (h: Hashed) => void; reject: (e: unknown) => void }>();

function entry(): { file: string | URL; eval: boolean } {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return { file: new URL('./hash-worker.js', here), eval: false };
  // From the TypeScript sources (tests, tsx): the worker registers tsx's loader first (as sandbox/thread.ts)
  const api = pathToFileURL(
    createRequire(here)
      .resolve('tsx/esm/api')
      .replace(/\.cjs$/, '.mjs'),
  ).href;
  const file = new URL('./hash-worker.ts', here).href;
  return {
    file: `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(file)}); });`,
    eval: true,
  };
}

/** The thread died: what was moved to it is lost with it, so those reads fail; later ones hash here. */
function lost(w: Worker, why: unknown): void {
  if (thread !== w) return;
  thread = null;
  ready = false;
  const owed = [...pending.values()];
  pending.clear();
  for (const p of owed) p.reject(new Error(`the hashing thread stopped: ${(why as Error)?.message ?? String(why)}`));
}

/**
 * Starts the hashing thread (once per process). Settles with true once it is ready, false where it
 * cannot start (hashing is then done here); nothing need wait for it.
 */
export function startHashThread(): Promise<boolean> {
  if (starting) return starting;
  try {
    const { file, eval: isEval } = entry();
    const w = new Worker(file, { eval: isEval });
    w.unref();
    starting = new Promise<boolean>((settle) => {
      w.on(
        'message',
        (m: 'ready' | { id: number; buffer: ArrayBuffer; offset: number; length: number; hex: string }) => {
          if (m === 'ready') {
            ready = thread === w;
            return settle(ready);
          }
          const p = pending.get(m.id);
          if (!p) return;
          pending.delete(m.id);
          if (!pending.size) w.unref();
          p.resolve({ bytes: Buffer.from(m.buffer, m.offset, m.length), hex: m.hex });
        },
      );
      w.on('error', (e) => {
        lost(w, e);
        settle(false);
      });
      w.on('exit', (code) => {
        lost(w, `exit ${code}`);
        settle(false);
      });
    });
    thread = w;
    return starting;
  } catch {
    return (starting = Promise.resolve(false));
  }
}

/**
 * SHA-256 of `data`, on the hashing thread when it runs and `data` is large and movable. Use the
 * returned `bytes` afterwards: `data` may be detached.
 */
export function sha256Moving(data: Buffer): Promise<Hashed> {
  const w = ready ? thread : null;
  const buffer = data.buffer;
  if (
    !w ||
    data.byteLength < MIN_BYTES ||
    !(buffer instanceof ArrayBuffer) ||
    data.byteOffset !== 0 ||
    data.byteLength !== buffer.byteLength
  )
    return Promise.resolve(hashHere(data));
  const id = nextId++;
  return new Promise<Hashed>((resolve, reject) => {
    try {
      w.postMessage({ id, buffer, offset: data.byteOffset, length: data.byteLength }, [buffer]);
    } catch {
      // not transferable (memory owned outside V8): hashed here, still attached
      return resolve(hashHere(data));
    }
    pending.set(id, { resolve, reject });
    if (pending.size === 1) w.ref();
  });
}
