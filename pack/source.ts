/**
 * What the strict reader needs from where a package's bytes live: positional reads and, where the
 * environment has one, a parallel hasher. Node reads a file handle (pack/file-source.ts); the
 * browser reads a File or Blob through `slice` or a URL through range requests (browser/sources.ts).
 * Everything else (structure, manifest, signatures, digests) is the one reader's.
 */
import { sha256Blocks } from '../platform/index.js';

/** SHA-256 of archive regions, off the reader's thread where the environment allows. */
export interface PayloadHasher extends Disposable {
  /** Lower-case hex SHA-256 of each consecutive `blockSize` bytes of [offset, offset + length). */
  blocks(offset: number, length: number, blockSize: number): Promise<string[]>;
  /**
   * SHA-256 and CRC-32 of [offset, offset + length) in one sequential pass. Absent: the hasher
   * verifies by blocks only (spec/FORMAT.md §10.1), which the manifest's signed block digests and
   * sizes make sufficient.
   */
  whole?(offset: number, length: number): Promise<{ sha256: string; crc32: number }>;
}

export interface ByteSource {
  /** Names the package in results and messages: a path, a file name or a URL. */
  readonly name: string;
  readonly size: number;
  /**
   * Reads up to `length` bytes at `position` into `buffer` at `offset` (the shape of Node's
   * FileHandle.read); `bytesRead` is 0 only past the end (the source shrank).
   */
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  /** A hasher for `jobs` independent jobs; without one the reader hashes on its own thread. */
  hasher?(jobs: number): PayloadHasher;
  /**
   * Positions the reader reads small headers at next, in order: a source where each read is a
   * round trip (a range request) may start them at once instead of one after another.
   */
  prefetch?(positions: readonly number[]): void;
  close(): Promise<void>;
}

/** Blocks hashed at once by `localHasher`: bounds its memory to this many blocks whatever the file size. */
const IN_FLIGHT = 4;

/**
 * A hasher on the reader's own thread for sources without one (the browser's): reads each block
 * through the source and hashes it with the platform's block digest (WebCrypto in the browser),
 * at most IN_FLIGHT blocks at a time. Blocks only: no whole-file pass (§10.1).
 */
export function localHasher(source: ByteSource): PayloadHasher {
  let active = 0;
  const waiting: (() => void)[] = [];
  const slot = async () => {
    while (active >= IN_FLIGHT) await new Promise<void>((r) => waiting.push(r));
    active++;
  };
  const release = () => {
    active--;
    waiting.shift()?.();
  };
  const readFully = async (offset: number, length: number) => {
    const b = new Uint8Array(length);
    for (let got = 0; got < length; ) {
      const { bytesRead } = await source.read(b, got, length - got, offset + got);
      if (bytesRead === 0) throw new Error('package shrank after it was opened');
      got += bytesRead;
    }
    return b;
  };
  return {
    async blocks(offset, length, blockSize) {
      const jobs: Promise<string>[] = [];
      for (let p = 0; p < length; p += blockSize) {
        const n = Math.min(blockSize, length - p);
        jobs.push(
          (async () => {
            await slot();
            try {
              return (await sha256Blocks(await readFully(offset + p, n), blockSize))[0];
            } finally {
              release();
            }
          })(),
        );
      }
      return Promise.all(jobs);
    },
    [Symbol.dispose]() {},
  };
}
