/** Public shapes of the archive layer. Implementations: pack/reader.ts, pack/writer.ts. */
import type { Manifest } from '../spec/schema.js';

/** One entry of the archive as the central directory (checked against its local header) says. */
export interface EntryInfo {
  name: string;
  /** 0 = stored, 8 = deflate. */
  method: 0 | 8;
  crc32: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
  /** Absolute offset of the entry's (possibly compressed) data in the archive file. */
  dataOffset: number;
}

export interface OpenOptions {
  /** Called with progress of long operations (bytes done, bytes total). */
  onProgress?: (done: number, total: number) => void;
}

export interface IntegrityReport {
  /** Package id: SHA-256 of the canonical manifest bytes. */
  id: string;
  files: number;
  bytes: number;
  /** Milliseconds spent hashing. */
  ms: number;
  /** True when the pass was skipped because payloads are checked as they are read. */
  deferred?: boolean;
  /** Files a partial package leaves out (spec/OCI.md §4); absent for a whole package. */
  absent?: string[];
  /** 'blocks' when large files were verified by their signed block digests and sizes alone (spec/FORMAT.md §10.1). */
  mode?: 'blocks';
}

/**
 * A package opened for strict random access. Opening checks the whole archive structure and the
 * manifest (but not the payload digests: call `verifyIntegrity()` or read with `readVerified()`).
 * All reads go through the one source opened here, so what was checked is what is read.
 */
export interface PackageReaderLike extends AsyncDisposable {
  readonly path: string;
  readonly fileSize: number;
  readonly manifest: Manifest;
  /** Canonical manifest bytes, exactly as stored and signed. */
  readonly manifestBytes: Buffer;
  /** Package id: lower-case hex SHA-256 of `manifestBytes`. */
  readonly id: string;
  /** Raw bytes of `xpkg/signatures.json`, or null when the package is unsigned. */
  readonly signaturesBytes: Buffer | null;
  /** Entries in archive order. */
  readonly entries: readonly EntryInfo[];
  /** Payload files a partial package leaves out (spec/OCI.md §4); empty for a whole package. */
  readonly absent?: ReadonlySet<string>;
  entry(name: string): EntryInfo | undefined;
  /** Reads one payload file whole and checks its size and SHA-256 on exactly the bytes returned. */
  readVerified(path: string): Promise<Buffer>;
  /** Streams one payload file of any size in chunks; its SHA-256 is checked after the last chunk (discard what was received on error). */
  streamVerified(path: string, sink: (chunk: Buffer) => void | Promise<void>, chunkBytes?: number): Promise<void>;
  /** Hashes every payload (parallel across blocks and cores) against the manifest. Throws on the first mismatch. */
  verifyIntegrity(options?: OpenOptions): Promise<IntegrityReport>;
  close(): Promise<void>;
}
