/**
 * SHA-256 of large buffers on another thread, once a thread serves them (`serveHashes` there,
 * `hashOn` here, over one MessageChannel).
 *
 * Why: a cold `xpkg run` of the OCR package hashes ~33 MB (its models, and the cached optimised
 * models) on the main thread, ~40 ms there, while onnxruntime also creates sessions on that thread
 * and the second core idles. The buffer is moved to the thread and back (an ArrayBuffer transfer,
 * no copy): the caller gets the same bytes back with their digest and must use those, as `data` is
 * detached meanwhile. Small buffers, views into a larger buffer and buffers that cannot be moved are
 * hashed here, as is everything while no thread serves (or after it died). No thread of its own:
 * starting one cost ~100 ms of CPU, more than the hashing it took; the image decoder's worker
 * serves these requests too (runner/pipeline/image-decoder.ts).
 */
import { createHash } from 'node:crypto';
import type { MessagePort } from 'node:worker_threads';

/** Below this a message round trip costs more than hashing here. */
const MIN_BYTES = 1 << 20;

export interface Hashed {
  /** The bytes that were hashed (`data` itself, or its memory moved back from the thread). */
  bytes: Buffer;
  /** Lower-case hex SHA-256. */
  hex: string;
}

interface Request {
  id: number;
  buffer: ArrayBuffer;
  offset: number;
  length: number;
}

const hashHere = (data: Buffer): Hashed => ({ bytes: data, hex: createHash('sha256').update(data).digest('hex') });

let port: MessagePort | null = null;
/** Set once the serving side said it is ready: a buffer moved to a thread that failed to start would be lost. */
let ready = false;
let nextId = 0;
const pending = new Map<number, { resolve: (h: Hashed) => void; reject: (e: unknown) => void }>();

/** The serving side is gone: what was moved to it is lost with it, so those reads fail; later ones hash here. */
function lost(p: MessagePort): void {
  if (port !== p) return;
  port = null;
  ready = false;
  const owed = [...pending.values()];
  pending.clear();
  for (const o of owed) o.reject(new Error('the thread hashing this buffer stopped'));
}

/** This thread's large buffers are hashed by the thread at the other end of `p` (which calls `serveHashes`). */
export function hashOn(p: MessagePort): void {
  port = p;
  ready = false;
  p.on('message', (m: 'ready' | (Request & { hex: string })) => {
    if (m === 'ready') return void (ready = port === p);
    const o = pending.get(m.id);
    if (!o) return;
    pending.delete(m.id);
    if (!pending.size) p.unref();
    o.resolve({ bytes: Buffer.from(m.buffer, m.offset, m.length), hex: m.hex });
  });
  p.on('close', () => lost(p));
  // after the listeners: adding a 'message' listener refs a port again, and an idle port must not
  // keep the process alive
  p.unref();
}

/** Whether a thread serves hashes now (it said it is ready and has not gone). */
export function hashesServed(): boolean {
  return ready && port !== null;
}

/** The serving side: hashes each buffer that arrives on `p` and hands it back with its digest. */
export function serveHashes(p: MessagePort): void {
  p.on('message', (m: Request) => {
    const hex = createHash('sha256')
      .update(new Uint8Array(m.buffer, m.offset, m.length))
      .digest('hex');
    p.postMessage({ ...m, hex }, [m.buffer]);
  });
  p.postMessage('ready');
}

/**
 * SHA-256 of `data`, on the serving thread when there is one and `data` is large and movable. Use
 * the returned `bytes` afterwards: `data` may be detached.
 */
export function sha256Moving(data: Buffer): Promise<Hashed> {
  const p = ready ? port : null;
  const buffer = data.buffer;
  if (
    !p ||
    data.byteLength < MIN_BYTES ||
    !(buffer instanceof ArrayBuffer) ||
    data.byteOffset !== 0 ||
    data.byteLength !== buffer.byteLength
  )
    return Promise.resolve(hashHere(data));
  const id = nextId++;
  return new Promise<Hashed>((resolve, reject) => {
    try {
      p.postMessage({ id, buffer, offset: data.byteOffset, length: data.byteLength }, [buffer]);
    } catch {
      // not transferable (memory owned outside V8): hashed here, still attached
      return resolve(hashHere(data));
    }
    pending.set(id, { resolve, reject });
    if (pending.size === 1) p.ref();
  });
}
