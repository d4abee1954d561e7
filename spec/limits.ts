/** Numeric limits of format xpkg/1 (spec/FORMAT.md §8). Readers enforce every one of them. */
export const FORMAT_ID = 'xpkg/1';
export const MANIFEST_PATH = 'xpkg/manifest.json';
export const SIGNATURES_PATH = 'xpkg/signatures.json';
/** Names under this prefix are reserved for the format itself. */
export const RESERVED_PREFIX = 'xpkg/';

export const LIMITS = {
  /** Canonical manifest bytes. */
  manifestBytes: 8 * 1024 * 1024,
  /** Signature envelope bytes. */
  signaturesBytes: 256 * 1024,
  /** Entries in one archive, metadata entries included. */
  entries: 20_000,
  /** UTF-8 bytes of one entry name. */
  pathBytes: 512,
  /** UTF-8 bytes of one path segment. */
  segmentBytes: 255,
  /** Path segments. */
  pathDepth: 32,
  /** Largest uncompressed size of one deflated entry; bigger payloads must be stored. */
  deflatedEntryBytes: 256 * 1024 * 1024,
  /** Largest uncompressed:compressed ratio of a deflated entry bigger than `ratioFreeBytes`. */
  compressionRatio: 100,
  ratioFreeBytes: 1024 * 1024,
  /**
   * A deflated entry's stream is at most its size plus a quarter plus this many bytes: more than any
   * encoder writes (zlib's worst case is about an eighth), so padding the stream (e.g. with empty
   * stored blocks) cannot make a reader buffer gigabytes for a small file.
   */
  deflateSlackBytes: 64,
  /** Central directory bytes. */
  centralDirectoryBytes: 16 * 1024 * 1024,
} as const;

/** Block size for per-block digests: fixed for format xpkg/1. */
export const BLOCK_SIZE = 4 * 1024 * 1024;
/** Data of every model (variant) file starts at a multiple of this. */
export const ALIGNMENT = 64 * 1024;
/** Extra-field id of the alignment padding record ("xp" little-endian). */
export const PADDING_EXTRA_ID = 0x7078;
