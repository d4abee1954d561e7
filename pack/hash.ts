/**
 * Parallel hashing of archive regions with worker threads reading the same file descriptor.
 *
 * Why not a stream: a ZIP library's entry stream hashes at ~0.15 GB/s; positional reads of a few
 * MiB straight into node:crypto run near the SHA-256 speed of the CPU, and blocks hash independently
 * on every core. The whole-file SHA-256 (and the ZIP CRC-32) is inherently sequential, so it runs as
 * one job beside the block jobs.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

// Eval'd worker: works the same from the TypeScript sources (tests) and from dist/, and whether
// the eval is treated as CommonJS or as a module (--input-type=module is inherited by workers).
const WORKER_SOURCE = `
const { parentPort } = process.getBuiltinModule('node:worker_threads');
const fs = process.getBuiltinModule('node:fs');
const crypto = process.getBuiltinModule('node:crypto');
const zlib = process.getBuiltinModule('node:zlib');
const CHUNK = 4 * 1024 * 1024;
const buf = Buffer.allocUnsafe(CHUNK);
function readFully(fd, n, pos) {
  let got = 0;
  while (got < n) {
    const r = fs.readSync(fd, buf, got, n - got, pos + got);
    if (r === 0) throw Object.assign(new Error('unexpected end of file'), { code: 'EOF' });
    got += r;
  }
  return buf.subarray(0, n);
}
parentPort.on('message', (job) => {
  try {
    if (job.kind === 'blocks') {
      const digests = [];
      for (let p = 0; p < job.length; p += job.blockSize) {
        const n = Math.min(job.blockSize, job.length - p);
        digests.push(crypto.createHash('sha256').update(readFully(job.fd, n, job.offset + p)).digest('hex'));
      }
      parentPort.postMessage({ id: job.id, digests });
    } else {
      const h = crypto.createHash('sha256');
      let crc = 0;
      for (let p = 0; p < job.length; p += CHUNK) {
        const chunk = readFully(job.fd, Math.min(CHUNK, job.length - p), job.offset + p);
        h.update(chunk);
        crc = zlib.crc32(chunk, crc);
      }
      parentPort.postMessage({ id: job.id, sha256: h.digest('hex'), crc32: crc >>> 0 });
    }
  } catch (e) {
    parentPort.postMessage({ id: job.id, error: String(e && e.message || e) });
  }
});
`;

export interface BlocksJob {
  kind: 'blocks';
  offset: number;
  length: number;
  blockSize: number;
}
export interface WholeJob {
  kind: 'whole';
  offset: number;
  length: number;
}
export type HashJob = BlocksJob | WholeJob;
export type HashResult<J extends HashJob> = J extends BlocksJob
  ? { digests: string[] }
  : { sha256: string; crc32: number };

/** A bounded pool of hashing workers over one open file descriptor. Dispose to stop the workers. */
export class HashPool implements Disposable {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: { job: HashJob; resolve: (r: unknown) => void; reject: (e: Error) => void }[] = [];
  private readonly pending = new Map<
    number,
    { resolve: (r: unknown) => void; reject: (e: Error) => void; worker: Worker }
  >();
  private nextId = 1;
  private closed = false;

  constructor(
    private readonly fd: number,
    size = Math.max(1, Math.min(availableParallelism(), 8)),
  ) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(WORKER_SOURCE, { eval: true });
      w.unref();
      w.on('message', (m: { id: number; error?: string }) => {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if (m.error) p.reject(new Error(m.error));
        else p.resolve(m);
        this.release(w);
      });
      w.on('error', (e) => this.failAll(e));
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  run<J extends HashJob>(job: J): Promise<HashResult<J>> {
    if (this.closed) return Promise.reject(new Error('hash pool closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ job, resolve: resolve as (r: unknown) => void, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.idle.length && this.queue.length) {
      const w = this.idle.pop()!;
      const { job, resolve, reject } = this.queue.shift()!;
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject, worker: w });
      w.ref();
      w.postMessage({ ...job, id, fd: this.fd });
    }
  }

  private release(w: Worker): void {
    w.unref();
    this.idle.push(w);
    this.pump();
  }

  private failAll(e: Error): void {
    for (const [, p] of this.pending) p.reject(e);
    this.pending.clear();
    for (const q of this.queue.splice(0)) q.reject(e);
  }

  [Symbol.dispose](): void {
    if (this.closed) return;
    this.closed = true;
    this.failAll(new Error('hash pool closed'));
    for (const w of this.workers) void w.terminate();
  }
}
