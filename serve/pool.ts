/**
 * Reused memory for big request bodies. A fresh 1.2 MB buffer per request costs more than copying
 * the bytes into it (page faults and zeroing by the kernel, then unmapping: ~2 ms of CPU against
 * 0.07 ms for the copy, measured here), and on the daemon's main thread that is event-loop time.
 * So bodies are read straight into buffers taken from a bounded pool and given back once their
 * request is done with them: by the daemon after a process worker answered (it has read the bytes from
 * its bulk file by then), or by a thread worker that hands the memory back with its result.
 */
import type { Readable } from 'node:stream';
import { ServeError } from '../spec/errors.js';

/** Smaller buffers are cheap to allocate: they are neither pooled nor read specially. */
export const POOL_MIN = 64 * 1024;

export class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  private bytes = 0;
  /** Every buffer this pool made: only those come back to it (and may be handed to a thread whole). */
  private readonly mine = new WeakSet<ArrayBuffer>();

  constructor(
    private readonly maxBytes = 64 * 1024 * 1024,
    private readonly maxBuffers = 32,
  ) {}

  /** A buffer of `n` bytes over memory of its own (offset 0: any typed array fits it). */
  take(n: number): Buffer {
    if (n < POOL_MIN) return Buffer.allocUnsafe(n);
    // the smallest free one that fits without wasting more than half of it
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const s = this.free[i].byteLength;
      if (s >= n && s <= 2 * n && (best < 0 || s < this.free[best].byteLength)) best = i;
    }
    if (best >= 0) {
      const ab = this.free.splice(best, 1)[0];
      this.bytes -= ab.byteLength;
      return Buffer.from(ab, 0, n);
    }
    const b = Buffer.allocUnsafeSlow(n);
    this.mine.add(b.buffer as ArrayBuffer);
    return b;
  }

  owns(ab: ArrayBufferLike): ab is ArrayBuffer {
    return this.mine.has(ab as ArrayBuffer);
  }

  /**
   * Back to the pool, when it is one of ours (or `adopt`: memory nobody else holds, such as what a
   * thread transferred back: a transfer makes a new ArrayBuffer object), still attached, and there is room.
   */
  give(ab: ArrayBufferLike | undefined, adopt = false): void {
    // a detached buffer (handed to a thread) has byteLength 0, so the size test refuses it too, and
    // without isDetached's throw and catch (~35 µs a request, profiled on the daemon's main thread)
    if (!(ab instanceof ArrayBuffer) || ab.byteLength < POOL_MIN || !(adopt || this.owns(ab))) return;
    if (this.free.includes(ab) || this.free.length >= this.maxBuffers || this.bytes + ab.byteLength > this.maxBytes)
      return;
    this.mine.add(ab);
    this.free.push(ab);
    this.bytes += ab.byteLength;
  }
}

/**
 * A request body read into `pad` bytes of nothing and then the body, in a buffer from the pool when
 * the length is declared (else gathered and joined once), with the route's body limit and the
 * declared length enforced as fastify's own reader does. The pad lets the caller align what follows
 * a header of known length.
 */
export function readBody(payload: Readable, o: { limit: number; length?: string; pool: BufferPool; pad?: number }) {
  const pad = o.pad ?? 0;
  const declared = o.length === undefined ? Number.NaN : Number(o.length);
  const tooLarge = () => new ServeError('E_SERVE_BODY_TOO_LARGE', 'the request body is larger than the server accepts');
  if (declared > o.limit) return Promise.reject(tooLarge());
  const into = Number.isSafeInteger(declared) ? o.pool.take(pad + declared) : undefined;
  const chunks: Buffer[] = [];
  let got = 0;
  return new Promise<Buffer>((resolve, reject) => {
    const stop = (e?: Error) => {
      payload.removeListener('data', onData).removeListener('end', onEnd).removeListener('error', stop);
      if (e) reject(e);
    };
    const onData = (c: Buffer) => {
      if (got + c.length > (into ? declared : o.limit))
        return stop(
          into ? new ServeError('E_SERVE_REQUEST', 'the request body is longer than its content-length') : tooLarge(),
        );
      if (into) c.copy(into, pad + got);
      else chunks.push(c);
      got += c.length;
    };
    const onEnd = () => {
      stop();
      if (into && got !== declared)
        return reject(new ServeError('E_SERVE_REQUEST', 'the request body is shorter than its content-length'));
      resolve(into ? into.subarray(pad, pad + got) : Buffer.concat(chunks, got));
    };
    payload.on('data', onData).on('end', onEnd).on('error', stop);
    payload.resume();
  });
}
