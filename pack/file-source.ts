/**
 * A package file on disk as a ByteSource: one handle for every read (what was checked is what is
 * read) and the worker-thread hash pool over its descriptor (pack/hash.ts). Node only: the browser
 * bundle swaps this module for browser/twins/file-source.ts.
 */
import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { FormatError } from '../spec/errors.js';
import { HashPool } from './hash.js';
import type { ByteSource, PayloadHasher } from './source.js';

export class FileSource implements ByteSource {
  private constructor(
    readonly name: string,
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  /** Opens a regular file (a FIFO, device or folder is E_ARCHIVE_SPECIAL_FILE). */
  static async open(path: string): Promise<FileSource> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it would hang before the type check).
    const fh = await open(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new FormatError('E_ARCHIVE_SPECIAL_FILE', `${path} is not a regular file`, { path });
      return new FileSource(path, fh, st.size);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  get fd(): number {
    return this.fh.fd;
  }

  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    return this.fh.read(buffer, offset, length, position);
  }

  /** Worker threads (≈50 ms to start, so at most one per job) reading this file's descriptor. */
  hasher(jobs: number): PayloadHasher {
    const pool = new HashPool(this.fh.fd, Math.max(1, Math.min(availableParallelism(), 8, jobs)));
    return {
      blocks: (offset, length, blockSize) =>
        pool.run({ kind: 'blocks', offset, length, blockSize }).then((r) => r.digests),
      whole: (offset, length) => pool.run({ kind: 'whole', offset, length }),
      [Symbol.dispose]: () => pool[Symbol.dispose](),
    };
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => {});
  }
}
