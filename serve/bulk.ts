/**
 * Bulk bytes to a process worker beside its IPC channel. Node's 'advanced' IPC serialises a message
 * into one buffer (a copy of every tensor), writes it, and the worker gathers and deserialises it (two
 * more): for a 1.2 MB image that is most of the daemon's work per request. Instead, every large typed
 * array of the inputs is cut out of the message (its place recorded as a path) and its bytes are
 * written as they are to a pipe of their own; the worker reads them in the order the messages came
 * (one writer, so both streams keep the same order) and puts them back. One copy on the worker side,
 * none on the daemon's main thread.
 */
import { ServeError } from '../spec/errors.js';
import type { BufferPool } from './pool.js';

/** Typed arrays smaller than this stay in the message (the pipe is worth it for big ones only). */
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

/** Where one cut-out array was, what it was, and how many bytes of the pipe are its. */
export interface BulkPart {
  path: (string | number)[];
  kind: Kind;
  bytes: number;
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
      parts.push({ path, kind, bytes: v.byteLength });
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

/** Puts the arrays read from the pipe back where splitBulk took them from (Uint8Arrays as Buffers). */
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

/**
 * The worker's end of the pipe: chunks in, whole arrays out, first asked first served. Each array
 * gets memory of its own from the pool (offset 0, so any typed array fits it); give it back after the run.
 */
export class BulkReader {
  constructor(private readonly pool: BufferPool) {}
  private chunks: Buffer[] = [];
  private have = 0;
  private readonly wants: { sizes: number[]; resolve(b: Buffer[]): void }[] = [];

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.have += chunk.length;
    this.pump();
  }

  take(sizes: number[]): Promise<Buffer[]> {
    return new Promise((resolve) => {
      this.wants.push({ sizes, resolve });
      this.pump();
    });
  }

  private pump(): void {
    while (this.wants.length > 0) {
      const w = this.wants[0];
      const total = w.sizes.reduce((a, b) => a + b, 0);
      if (this.have < total) return;
      this.wants.shift();
      w.resolve(w.sizes.map((n) => this.read(n)));
    }
  }

  private read(n: number): Buffer {
    const out = this.pool.take(n);
    for (let o = 0; o < n; ) {
      const c = this.chunks[0];
      const k = Math.min(c.length, n - o);
      c.copy(out, o, 0, k);
      o += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.have -= n;
    return out;
  }
}
