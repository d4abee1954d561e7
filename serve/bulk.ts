/**
 * Bulk bytes to a process worker beside its IPC channel. Node's 'advanced' IPC serialises a message
 * into one buffer (a copy of every tensor), writes it, and the worker gathers and deserialises it (two
 * more): for a 1.2 MB image that is most of the daemon's work per request. Instead, every large typed
 * array of the inputs is cut out of the message (its place recorded as a path) and its bytes are
 * written, from the request's own memory, to a file the daemon shares with that worker (in /dev/shm:
 * memory, unlinked at once, the worker holds it as fd 4); the message says where, and the worker
 * reads them back with one positioned read. One system call and no wake-ups on the daemon's side (a
 * pipe took ~6-19 writes, each waiting for the worker to drain it: a wake-up of both processes).
 */
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, openSync, readSync, unlinkSync, writevSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServeError, XpkgError } from '../spec/errors.js';
import type { BufferPool } from './pool.js';

/** Typed arrays smaller than this stay in the message (the file is worth it for big ones only). */
export const BULK_MIN = 64 * 1024;

const KINDS = {
  Uint8Array,
  Int8Array,
  Uint16Array,
  Int16Array,
  Uint32Array,
  Int32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
} as const;
type Kind = keyof typeof KINDS;

/** Where one cut-out array was, what it was, and where its bytes are in the shared file. */
export interface BulkPart {
  path: (string | number)[];
  kind: Kind;
  bytes: number;
  /** Offset in the shared file (set when written). */
  at: number;
}

const plain = (v: unknown): v is Record<string, unknown> =>
  !!v && typeof v === 'object' && [Object.prototype, null].includes(Object.getPrototypeOf(v));

function kindOf(v: ArrayBufferView): Kind | undefined {
  if (Buffer.isBuffer(v)) return 'Uint8Array';
  const name = v.constructor.name;
  return name in KINDS ? (name as Kind) : undefined;
}

/** A view whose memory was moved to another thread: constructing on a detached ArrayBuffer throws. */
export function isDetached(b: ArrayBufferLike): boolean {
  if (b.byteLength > 0) return false;
  try {
    new Uint8Array(b);
    return false;
  } catch {
    return true;
  }
}

/** Whether any typed array in the inputs (plain objects and arrays, a few levels deep) lost its memory. */
export function hasDetached(v: unknown, depth = 0): boolean {
  if (ArrayBuffer.isView(v)) return isDetached(v.buffer);
  if (depth > 4) return false;
  if (Array.isArray(v)) return v.some((x) => hasDetached(x, depth + 1));
  return plain(v) && Object.values(v).some((x) => hasDetached(x, depth + 1));
}

/** The request's memory is gone (handed to a worker already): it cannot be sent again. */
export function detachedError(): ServeError {
  return new ServeError(
    'E_SERVE_DETACHED',
    "the request's tensor memory was already handed to a worker; a request is sent once",
  );
}

/**
 * The inputs with every typed array of at least `min` bytes replaced by null (copied containers, the
 * caller's objects untouched), the parts' descriptions, and the views to write, in that order.
 */
export function splitBulk(
  inputs: Record<string, unknown>,
  min = BULK_MIN,
): { inputs: Record<string, unknown>; parts: BulkPart[]; views: Uint8Array[] } {
  const parts: BulkPart[] = [];
  const views: Uint8Array[] = [];
  const walk = (v: unknown, path: (string | number)[], depth: number): unknown => {
    if (ArrayBuffer.isView(v)) {
      if (isDetached(v.buffer)) throw detachedError();
      const kind = kindOf(v);
      if (!kind || v.byteLength < min) return v;
      parts.push({ path, kind, bytes: v.byteLength, at: 0 });
      views.push(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
      return null;
    }
    if (depth > 4) return v;
    if (Array.isArray(v)) return v.map((x, i) => walk(x, [...path, i], depth + 1));
    if (plain(v)) {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = walk(x, [...path, k], depth + 1);
      return out;
    }
    return v;
  };
  const out = walk(inputs, [], 0) as Record<string, unknown>;
  return { inputs: out, parts, views };
}

/** Puts the arrays read from the file back where splitBulk took them from (Uint8Arrays as Buffers). */
export function joinBulk(inputs: Record<string, unknown>, parts: BulkPart[], bufs: Buffer[]): Record<string, unknown> {
  parts.forEach((p, i) => {
    const b = bufs[i];
    const Ctor = KINDS[p.kind];
    const value =
      p.kind === 'Uint8Array'
        ? b
        : new Ctor(
            b.buffer as ArrayBuffer,
            b.byteOffset,
            b.byteLength / (Ctor as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT,
          );
    let at: Record<string | number, unknown> = inputs;
    for (const k of p.path.slice(0, -1)) at = at[k] as Record<string | number, unknown>;
    at[p.path[p.path.length - 1]] = value;
  });
  return inputs;
}

/** Ranges start on page boundaries: a freed one fits the next body of the same size as it is. */
const PAGE = 4096;

/**
 * The daemon's end of one worker's shared file: which byte ranges are in use by runs in flight.
 * First fit over the free ranges, lowest offsets first, so the file (its pages are memory in
 * /dev/shm) grows only to the most bytes ever in flight at once, at most `maxBytes`.
 */
export class BulkFile {
  private readonly free: { at: number; n: number }[] = [];
  private readonly used = new Map<number, number>();
  private end = 0;
  private closed = false;

  private constructor(
    readonly fd: number,
    private readonly maxBytes: number,
  ) {}

  /**
   * A new file, already unlinked (only the open descriptors keep it): in /dev/shm where there is
   * one, else the temp folder; undefined where neither can be written (a sandboxed service): the
   * arrays then go inline in the messages.
   */
  static create(maxBytes = 256 * 1024 * 1024): BulkFile | undefined {
    for (const dir of existsSync('/dev/shm') ? ['/dev/shm', tmpdir()] : [tmpdir()]) {
      const path = join(dir, `xpkg-serve-${process.pid}-${randomUUID()}`);
      let fd: number;
      try {
        fd = openSync(path, 'wx+', 0o600);
      } catch {
        continue;
      }
      try {
        unlinkSync(path);
      } catch {}
      return new BulkFile(fd, maxBytes);
    }
    return undefined;
  }

  /** Bytes the file spans now (its high-water mark). */
  get size(): number {
    return this.end;
  }

  private take(bytes: number): number | undefined {
    const n = Math.ceil(Math.max(bytes, 1) / PAGE) * PAGE;
    let at: number | undefined;
    const i = this.free.findIndex((f) => f.n >= n);
    if (i >= 0) {
      const f = this.free[i];
      at = f.at;
      f.at += n;
      f.n -= n;
      if (f.n === 0) this.free.splice(i, 1);
    } else if (this.end + n <= this.maxBytes) {
      at = this.end;
      this.end += n;
    }
    if (at !== undefined) this.used.set(at, n);
    return at;
  }

  /** The range at `at` is free again (the worker has read it, or never will). */
  release(at: number): void {
    const n = this.used.get(at);
    if (n === undefined) return;
    this.used.delete(at);
    let i = this.free.findIndex((f) => f.at > at);
    if (i < 0) i = this.free.length;
    this.free.splice(i, 0, { at, n });
    // merge with the next range, then with the previous one
    const next = this.free[i + 1];
    if (next && at + n === next.at) {
      this.free[i].n += next.n;
      this.free.splice(i + 1, 1);
    }
    const prev = this.free[i - 1];
    if (prev && prev.at + prev.n === at) {
      prev.n += this.free[i].n;
      this.free.splice(i, 1);
      i--;
    }
    // a free range at the end gives the end back: low offsets are reused first
    const last = this.free[this.free.length - 1];
    if (last && last.at + last.n === this.end) {
      this.end = last.at;
      this.free.pop();
    }
  }

  /**
   * Writes the views one after another, at once (one pwritev of memory the kernel already holds for
   * this file: tens of microseconds for a 1.2 MB body, less than handing it to the thread pool and
   * being woken when it is done, and no thread competing with the event loop for a core). Returns the
   * range to release once the worker has answered (the parts' offsets set), or undefined (the file is
   * full or closed, the write failed) after which the caller sends the arrays inline instead.
   */
  write(parts: BulkPart[], views: Uint8Array[]): number | undefined {
    const total = parts.reduce((a, p) => a + p.bytes, 0);
    const at = this.closed ? undefined : this.take(total);
    if (at === undefined) return undefined;
    let o = at;
    for (const p of parts) {
      p.at = o;
      o += p.bytes;
    }
    try {
      if (writevSync(this.fd, views, at) === total) return at;
    } catch {}
    this.release(at);
    return undefined;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}

/** The worker's end: the parts' bytes read from the shared file into memory from the pool (give it back after the run). */
export function readBulk(fd: number, parts: BulkPart[], pool: BufferPool): Buffer[] {
  return parts.map((p) => {
    const out = pool.take(p.bytes);
    for (let o = 0; o < p.bytes; ) {
      const k = readSync(fd, out, o, p.bytes - o, p.at + o);
      if (k === 0) throw new XpkgError('E_INTERNAL', "the bulk file ended before the request's tensor bytes", p);
      o += k;
    }
    return out;
  });
}
