/**
 * Builds the frozen test vectors in spec/vectors/: `npm run gen:vectors` (`npx tsx tools/vectors/generate.ts`).
 * Lives outside spec/ because it packs and reads through pack/: the format layer depends on nothing.
 *
 * Good vectors are `xpkg pack` output of tiny sources (SOURCE_DATE_EPOCH fixed); bad ones are the
 * basic good package re-laid-out by tools/vectors/craft.ts with exactly one lie each. The expected
 * result of every vector is declared here, not computed by the reader; after writing, the script
 * runs the reader on each vector and fails if any disagrees. The committed files are frozen:
 * test/vectors.test.ts checks them as they are, and separately that this script reproduces them.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { crc32 as zcrc } from 'node:zlib';
import { packFolder } from '../../pack/pack.js';
import { PackageReader } from '../../pack/reader.js';
import * as Z from '../../pack/zip.js';
import { type ErrorCode, XpkgError } from '../../spec/errors.js';
import { packageId } from '../../spec/manifest.js';
import {
  type CraftEntry,
  type CraftOptions,
  craftArchive,
  type DosTime,
  deflateFixed,
  fileRecord,
  manifestOf,
  parseArchive,
  withFiles,
  withManifest,
} from './craft.js';

export const VECTOR_EPOCH = '1700000000';

const LABELS = 'background\ncat\ndog\n';
const SCRIPT = 'export function post(x) {\n  return x;\n}\n';

/** The tiny source every vector starts from. The model file is empty so no 64 KiB padding is needed. */
export function vectorSource(extra: Partial<Record<string, unknown>> = {}): Record<string, unknown> {
  return {
    name: 'vector-demo',
    version: '1.0.0',
    sequence: 1,
    license: 'Apache-2.0',
    task: 'image-classification',
    inputs: [{ name: 'image', type: 'image' }],
    outputs: [{ name: 'labels', type: 'classification' }],
    models: [
      {
        id: 'net',
        variants: [{ id: 'cpu-fp32', runtime: 'onnxruntime', precision: 'fp32', files: ['models/net.onnx'] }],
      },
    ],
    pipeline: {
      steps: [
        { op: 'decode-image' },
        { op: 'infer', model: 'net' },
        { op: 'script', script: 'scripts/post.js', hook: 'post' },
      ],
      scripts: [{ path: 'scripts/post.js', hooks: ['post'] }],
    },
    assets: [{ id: 'labels', path: 'assets/labels.txt', kind: 'labels' }],
    ...extra,
  };
}

async function packSource(files: Record<string, string | Buffer>, source: Record<string, unknown>): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'xpkg-vec-'));
  try {
    const root = join(dir, 'src');
    for (const [p, data] of Object.entries({ ...files, 'xpkg.json': JSON.stringify(source, null, 2) })) {
      await mkdir(dirname(join(root, p)), { recursive: true });
      await writeFile(join(root, p), data);
    }
    const out = join(dir, 'out.xpkg');
    await packFolder(root, out, { sourceDateEpoch: VECTOR_EPOCH });
    return await readFile(out);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface Base {
  basic: Buffer;
  aligned: Buffer;
  emptyFile: Buffer;
  entries: CraftEntry[];
  ts: DosTime;
}

export async function buildBase(): Promise<Base> {
  const files = { 'models/net.onnx': Buffer.alloc(0), 'assets/labels.txt': LABELS, 'scripts/post.js': SCRIPT };
  const basic = await packSource(files, vectorSource());
  const aligned = await packSource({ ...files, 'models/net.onnx': Buffer.from('ONNX placeholder') }, vectorSource());
  const emptyFile = await packSource(
    { ...files, 'assets/empty.txt': Buffer.alloc(0) },
    vectorSource({ include: ['assets/empty.txt'] }),
  );
  const { entries, ts } = parseArchive(basic);
  return { basic, aligned, emptyFile, entries, ts };
}

export type Expectation = { ok: true; id: string; description: string } | { error: ErrorCode; description: string };

interface VectorCase {
  file: string;
  description: string;
  /** Omitted for good vectors. */
  error?: ErrorCode;
  build(b: Base): Buffer;
}

/** Returns a copy of `entries` with the entry called `name` changed by `patch`. */
export function edit(entries: CraftEntry[], name: string, patch: (e: CraftEntry) => Partial<CraftEntry>): CraftEntry[] {
  if (!entries.some((e) => e.name.toString() === name)) throw new Error(`no entry ${name}`);
  return entries.map((e) => (e.name.toString() === name ? { ...e, ...patch(e) } : e));
}

const LBL = 'assets/labels.txt';
const craft = (b: Base, entries: CraftEntry[], o: CraftOptions = {}) => craftArchive(entries, { ts: b.ts, ...o });
const extra = (b: Base, name: string | Buffer, data = 'x', more: Partial<CraftEntry> = {}, listed = false) =>
  craft(b, withFiles(b.entries, [{ name, data: Buffer.from(data), ...more }], { listInManifest: listed }));
const onLabels = (b: Base, patch: (e: CraftEntry) => Partial<CraftEntry>, o: CraftOptions = {}) =>
  craft(b, edit(b.entries, LBL, patch), o);
const onManifest = (
  b: Base,
  change: (m: Record<string, unknown> & { pipeline: { steps: Record<string, unknown>[] } }) => void,
) => {
  const m = manifestOf(b.entries) as ReturnType<typeof manifestOf> & { pipeline: { steps: Record<string, unknown>[] } };
  change(m);
  return craft(b, withManifest(b.entries, m));
};
const manifestData = (b: Base, data: Buffer) => craft(b, [{ ...b.entries[0], data }, ...b.entries.slice(1)]);
const canonical = (b: Base) => b.entries[0].data;
const u16 = (off: number, v: number) => (h: Buffer) => void h.writeUInt16LE(v, off);
const u32 = (off: number, v: number) => (h: Buffer) => void h.writeUInt32LE(v >>> 0, off);
const crc = (b: Buffer) => zcrc(b) >>> 0;
const deflate = deflateFixed;
function flip(b: Buffer, at: number): Buffer {
  const c = Buffer.from(b);
  c[at] ^= 0x20;
  return c;
}

export const CASES: VectorCase[] = [
  // --- good ---
  {
    file: 'good-basic.xpkg',
    description: 'xpkg pack output: manifest, labels, a script and an empty model file',
    build: (b) => b.basic,
  },
  {
    file: 'good-aligned-model.xpkg',
    description: 'xpkg pack output with a non-empty model file aligned to 64 KiB by a padding record',
    build: (b) => b.aligned,
  },
  {
    file: 'good-empty-file.xpkg',
    description: 'xpkg pack output carrying an extra empty payload file (include)',
    build: (b) => b.emptyFile,
  },
  {
    file: 'good-deflate.xpkg',
    description:
      'payload entries deflated (fixed Huffman) by another writer: readers must accept deflate; same id as good-basic',
    build: (b) =>
      craft(
        b,
        edit(
          edit(b.entries, LBL, () => ({ method: 8 })),
          'scripts/post.js',
          () => ({ method: 8 }),
        ),
      ),
  },
  // --- entry names ---
  {
    file: 'path-dotdot.xpkg',
    error: 'E_PATH_UNSAFE',
    description: "entry named '../evil.txt' (path traversal)",
    build: (b) => extra(b, '../evil.txt'),
  },
  {
    file: 'path-absolute.xpkg',
    error: 'E_PATH_UNSAFE',
    description: "entry named '/tmp/evil.txt' (absolute path)",
    build: (b) => extra(b, '/tmp/evil.txt'),
  },
  {
    file: 'path-backslash.xpkg',
    error: 'E_PATH_UNSAFE',
    description: "entry named 'assets\\..\\..\\evil.txt' (backslash separators)",
    build: (b) => extra(b, 'assets\\..\\..\\evil.txt'),
  },
  {
    file: 'path-drive-letter.xpkg',
    error: 'E_PATH_UNSAFE',
    description: "entry named 'C:/evil.txt' (drive letter)",
    build: (b) => extra(b, 'C:/evil.txt'),
  },
  {
    file: 'path-not-nfc.xpkg',
    error: 'E_PATH_UNSAFE',
    description: 'entry name in NFD (e + combining acute), not NFC',
    build: (b) => extra(b, 'assets/cafe\u0301.txt', 'x', {}, true),
  },
  {
    file: 'path-bom.xpkg',
    error: 'E_PATH_UNSAFE',
    description: 'entry name starting with a UTF-8 byte-order mark (a decoder that strips it sees another name)',
    build: (b) => extra(b, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('evil.txt')])),
  },
  {
    file: 'collision-unicode.xpkg',
    error: 'E_PATH_COLLISION',
    description: "'assets/\ufb01le.txt' (fi ligature) and 'assets/file.txt' collide after NFKC normalisation",
    build: (b) =>
      craft(
        b,
        withFiles(b.entries, [
          { name: 'assets/\ufb01le.txt', data: Buffer.from('a') },
          { name: 'assets/file.txt', data: Buffer.from('b') },
        ]),
      ),
  },
  {
    file: 'collision-ignorable.xpkg',
    error: 'E_PATH_COLLISION',
    description:
      "'assets/label\u200cs.txt' (zero-width non-joiner) and 'assets/labels.txt' are one file on HFS+, which ignores U+200C",
    build: (b) => extra(b, 'assets/label\u200cs.txt', 'x', {}, true),
  },
  {
    file: 'collision-case.xpkg',
    error: 'E_PATH_COLLISION',
    description: "'assets/LABELS.txt' and 'assets/labels.txt' collide after case folding",
    build: (b) => extra(b, 'assets/LABELS.txt', 'x', {}, true),
  },
  {
    file: 'collision-file-dir.xpkg',
    error: 'E_PATH_COLLISION',
    description: "'assets/labels.txt' is a file and 'assets/labels.txt/x' needs it to be a directory",
    build: (b) => extra(b, 'assets/labels.txt/x'),
  },
  {
    file: 'duplicate-name.xpkg',
    error: 'E_PATH_DUPLICATE',
    description: "two entries named 'assets/labels.txt'",
    build: (b) => extra(b, LBL, LABELS),
  },
  // --- local header vs central header ---
  {
    file: 'local-name-mismatch.xpkg',
    error: 'E_ARCHIVE_HEADER_MISMATCH',
    description: "local header names 'assets/labelz.txt', central directory 'assets/labels.txt'",
    build: (b) => onLabels(b, () => ({ patchLocal: (h) => void h.write('z', Z.LOCAL_SIZE + LBL.indexOf('s.txt')) })),
  },
  {
    file: 'local-size-mismatch.xpkg',
    error: 'E_ARCHIVE_SIZE_MISMATCH',
    description: 'local header declares sizes one byte larger than the central directory',
    build: (b) =>
      onLabels(b, (e) => ({
        patchLocal: (h) => {
          u32(18, e.data.length + 1)(h);
          u32(22, e.data.length + 1)(h);
        },
      })),
  },
  {
    file: 'local-crc-mismatch.xpkg',
    error: 'E_ARCHIVE_HEADER_MISMATCH',
    description: 'local header CRC-32 differs from the central one',
    build: (b) => onLabels(b, () => ({ patchLocal: (h) => void (h[14] ^= 1) })),
  },
  {
    file: 'local-method-mismatch.xpkg',
    error: 'E_ARCHIVE_HEADER_MISMATCH',
    description: 'local header says deflate, central directory says stored',
    build: (b) => onLabels(b, () => ({ patchLocal: u16(8, 8) })),
  },
  {
    file: 'local-flags-mismatch.xpkg',
    error: 'E_ARCHIVE_HEADER_MISMATCH',
    description: 'local header flags 0x0802, central 0x0800',
    build: (b) => onLabels(b, () => ({ patchLocal: u16(6, 0x0802) })),
  },
  {
    file: 'local-time-mismatch.xpkg',
    error: 'E_ARCHIVE_HEADER_MISMATCH',
    description: 'local header timestamp differs from the central one',
    build: (b) => onLabels(b, () => ({ patchLocal: (h) => void (h[10] ^= 2) })),
  },
  {
    file: 'timestamp-differs.xpkg',
    error: 'E_ARCHIVE_TIMESTAMP',
    description: 'one entry carries another timestamp (in both headers) than the others',
    build: (b) => onLabels(b, () => ({ patchLocal: (h) => void (h[10] ^= 2), patchCentral: (h) => void (h[12] ^= 2) })),
  },
  // --- layout ---
  {
    file: 'overlap.xpkg',
    error: 'E_ARCHIVE_OVERLAP',
    description: 'central directory puts an entry 4 bytes inside the previous entry',
    build: (b) =>
      craft(
        b,
        edit(b.entries, 'models/net.onnx', () => ({ offset: (a) => a - 4 })),
      ),
  },
  {
    file: 'gap-between-entries.xpkg',
    error: 'E_ARCHIVE_GAP',
    description: '16 unaccounted bytes between two entries',
    build: (b) =>
      craft(
        b,
        edit(b.entries, 'scripts/post.js', () => ({ gapBefore: Buffer.alloc(16) })),
      ),
  },
  {
    file: 'gap-before-central.xpkg',
    error: 'E_ARCHIVE_GAP',
    description: '16 unaccounted bytes between the last entry and the central directory',
    build: (b) => craft(b, b.entries, { gapBeforeCentral: Buffer.alloc(16) }),
  },
  {
    file: 'prefix-bytes.xpkg',
    error: 'E_ARCHIVE_PREFIX',
    description: 'a shell stub prepended to a valid package (offsets not adjusted)',
    build: (b) => Buffer.concat([Buffer.from('#!/bin/sh\nexit 0\n'), b.basic]),
  },
  {
    file: 'prefix-bytes-adjusted.xpkg',
    error: 'E_ARCHIVE_PREFIX',
    description: 'a shell stub before the first entry, offsets adjusted to match (self-extractor style)',
    build: (b) => craft(b, b.entries, { prefix: Buffer.from('#!/bin/sh\nexit 0\n'), offsetsIncludePrefix: true }),
  },
  {
    file: 'trailing-bytes.xpkg',
    error: 'E_ARCHIVE_TRAILING',
    description: '5 bytes after the end record',
    build: (b) => Buffer.concat([b.basic, Buffer.from('junk\n')]),
  },
  {
    file: 'archive-comment.xpkg',
    error: 'E_ARCHIVE_COMMENT',
    description: 'an archive comment in the end record',
    build: (b) => craft(b, b.entries, { patchEnd: u16(20, 7), suffix: Buffer.from('comment') }),
  },
  {
    file: 'entry-comment.xpkg',
    error: 'E_ARCHIVE_COMMENT',
    description: 'a comment on one central header',
    build: (b) =>
      onLabels(b, () => ({
        patchCentral: (h) => {
          h.writeUInt16LE(2, 32);
          return Buffer.concat([h, Buffer.from('hi')]);
        },
      })),
  },
  {
    file: 'two-end-records.xpkg',
    error: 'E_ARCHIVE_MULTIPLE_END',
    description: 'the end record repeated after itself',
    build: (b) => Buffer.concat([b.basic, b.basic.subarray(b.basic.length - Z.END_SIZE)]),
  },
  {
    file: 'manifest-not-first.xpkg',
    error: 'E_ARCHIVE_ORDER',
    description: 'xpkg/manifest.json is the second entry',
    build: (b) => craft(b, [b.entries[1], b.entries[0], ...b.entries.slice(2)]),
  },
  {
    file: 'central-order.xpkg',
    error: 'E_ARCHIVE_ORDER',
    description: 'central directory lists two entries in another order than they are stored',
    build: (b) => craft(b, b.entries, { centralOrder: [0, 2, 1, 3] }),
  },
  {
    file: 'zip64-end-unneeded.xpkg',
    error: 'E_ARCHIVE_UNSUPPORTED',
    description: 'ZIP64 end record and locator in a small archive',
    build: (b) => craft(b, b.entries, { forceZip64End: true }),
  },
  {
    file: 'zip64-sizes-unneeded.xpkg',
    error: 'E_ARCHIVE_EXTRA_FIELD',
    description: 'an entry carries ZIP64 size records although its sizes fit 32 bits',
    build: (b) => onLabels(b, () => ({ forceZip64Sizes: true })),
  },
  {
    file: 'truncated.xpkg',
    error: 'E_ARCHIVE_NO_END',
    description: 'the first half of a valid package',
    build: (b) => b.basic.subarray(0, b.basic.length >> 1),
  },
  { file: 'empty.xpkg', error: 'E_ARCHIVE_TRUNCATED', description: 'a zero-byte file', build: () => Buffer.alloc(0) },
  // --- entry kinds, flags and methods ---
  {
    file: 'symlink-entry.xpkg',
    error: 'E_ARCHIVE_SPECIAL_FILE',
    description: 'an entry with Unix mode 0120777 (symbolic link to ../../etc/passwd)',
    build: (b) => extra(b, 'assets/link', '../../etc/passwd', { externalAttr: 0o120777 << 16 }),
  },
  {
    file: 'directory-entry.xpkg',
    error: 'E_ARCHIVE_SPECIAL_FILE',
    description: "a directory entry 'assets/sub/' with mode 040755",
    build: (b) => extra(b, 'assets/sub/', '', { externalAttr: 0o040755 << 16 }),
  },
  {
    file: 'executable-mode.xpkg',
    error: 'E_ARCHIVE_UNSUPPORTED',
    description: 'a regular file with mode 0755 (only 0644 is allowed)',
    build: (b) => onLabels(b, () => ({ externalAttr: 0o100755 << 16 })),
  },
  {
    file: 'made-by-dos.xpkg',
    error: 'E_ARCHIVE_UNSUPPORTED',
    description: "'version made by' names MS-DOS, so the attributes are not Unix modes",
    build: (b) => onLabels(b, () => ({ patchCentral: u16(4, 20) })),
  },
  {
    file: 'made-by-version.xpkg',
    error: 'E_ARCHIVE_UNSUPPORTED',
    description: "'version made by' is Unix 4.6 instead of 4.5 (single-byte malleability)",
    build: (b) => onLabels(b, () => ({ patchCentral: u16(4, (3 << 8) | 46) })),
  },
  {
    file: 'encrypted.xpkg',
    error: 'E_ARCHIVE_ENCRYPTED',
    description: 'general-purpose flag bit 0 (encrypted) set in both headers',
    build: (b) => onLabels(b, () => ({ flags: 0x0801 })),
  },
  {
    file: 'data-descriptor.xpkg',
    error: 'E_ARCHIVE_DATA_DESCRIPTOR',
    description: 'general-purpose flag bit 3 (data descriptor) set in both headers',
    build: (b) => onLabels(b, () => ({ flags: 0x0808 })),
  },
  {
    file: 'unknown-flag.xpkg',
    error: 'E_ARCHIVE_UNSUPPORTED',
    description: 'general-purpose flag bit 1 set in both headers',
    build: (b) => onLabels(b, () => ({ flags: 0x0802 })),
  },
  {
    file: 'method-bzip2.xpkg',
    error: 'E_ARCHIVE_METHOD',
    description: 'compression method 12 (bzip2)',
    build: (b) => onLabels(b, () => ({ method: 12 })),
  },
  // --- sizes and compression ---
  {
    file: 'stored-size-lie.xpkg',
    error: 'E_ARCHIVE_SIZE_MISMATCH',
    description: 'stored entry whose size is one more than its compressed size (both headers)',
    build: (b) => onLabels(b, (e) => ({ size: e.data.length + 1 })),
  },
  {
    file: 'deflate-past-size.xpkg',
    error: 'E_ARCHIVE_BOMB',
    description: 'deflate stream inflates past the declared size (size, CRC and manifest describe a shorter file)',
    build: (b) =>
      onLabels(b, (e) => ({
        method: 8,
        raw: deflate(Buffer.concat([e.data, Buffer.from('and more bytes than declared')])),
      })),
  },
  {
    file: 'deflate-short-stream.xpkg',
    error: 'E_ARCHIVE_SIZE_MISMATCH',
    description: 'declared size larger than what the deflate stream inflates to',
    build: (b) => onLabels(b, (e) => ({ method: 8, raw: deflate(e.data.subarray(0, e.data.length - 4)) })),
  },
  {
    file: 'deflate-trailing-data.xpkg',
    error: 'E_ARCHIVE_SIZE_MISMATCH',
    description: 'two bytes after the end of the deflate stream inside the entry data',
    build: (b) => onLabels(b, (e) => ({ method: 8, raw: Buffer.concat([deflate(e.data), Buffer.from([0, 0])]) })),
  },
  {
    file: 'deflate-corrupt.xpkg',
    error: 'E_ARCHIVE_SIZE_MISMATCH',
    description: 'entry data is not a deflate stream (reserved block type 11)',
    build: (b) => onLabels(b, (e) => ({ method: 8, raw: Buffer.alloc(e.data.length, 0xff) })),
  },
  {
    file: 'deflate-crc.xpkg',
    error: 'E_ARCHIVE_CRC',
    description: 'deflated entry whose CRC-32 (both headers) does not match its content',
    build: (b) => onLabels(b, (e) => ({ method: 8, crc32: (crc(e.data) ^ 1) >>> 0 })),
  },
  {
    file: 'stored-crc.xpkg',
    error: 'E_ARCHIVE_CRC',
    description: 'stored entry whose CRC-32 (both headers) does not match; its digests do',
    build: (b) => onLabels(b, (e) => ({ crc32: (crc(e.data) ^ 1) >>> 0 })),
  },
  {
    file: 'bomb-ratio.xpkg',
    error: 'E_ARCHIVE_BOMB',
    description: '1 MiB + 1 byte of zeros deflated to 6.6 KB: ratio above 100:1',
    build: (b) =>
      craft(b, withFiles(b.entries, [{ name: 'assets/zeros.bin', data: Buffer.alloc((1 << 20) + 1), method: 8 }])),
  },
  // --- entries against the manifest ---
  {
    file: 'file-not-in-manifest.xpkg',
    error: 'E_FILE_EXTRA',
    description: "entry 'assets/extra.txt' is not listed in the manifest",
    build: (b) => extra(b, 'assets/extra.txt'),
  },
  {
    file: 'reserved-entry.xpkg',
    error: 'E_FILE_EXTRA',
    description: "unknown entry under the reserved prefix: 'xpkg/extra.json'",
    build: (b) => extra(b, 'xpkg/extra.json', '{}'),
  },
  {
    file: 'file-missing.xpkg',
    error: 'E_FILE_MISSING',
    description: "the manifest lists 'assets/labels.txt' but the archive lacks it",
    build: (b) =>
      craft(
        b,
        b.entries.filter((e) => e.name !== LBL),
      ),
  },
  {
    file: 'file-size.xpkg',
    error: 'E_FILE_SIZE',
    description: 'labels entry is one byte longer than the manifest says (CRC consistent)',
    build: (b) => onLabels(b, (e) => ({ data: Buffer.concat([e.data, Buffer.from('!')]) })),
  },
  {
    file: 'digest-mismatch.xpkg',
    error: 'E_DIGEST_MISMATCH',
    description: 'one payload byte changed, CRC-32 recomputed: only the manifest digest catches it',
    build: (b) => onLabels(b, (e) => ({ data: flip(e.data, 0) })),
  },
  {
    file: 'model-not-aligned.xpkg',
    error: 'E_ARCHIVE_ALIGNMENT',
    description: 'a non-empty model file stored without 64 KiB alignment',
    build: (b) => unalignedModel(b),
  },
  {
    file: 'padding-on-asset.xpkg',
    error: 'E_ARCHIVE_EXTRA_FIELD',
    description: 'alignment padding record on an entry that needs no alignment',
    build: (b) => onLabels(b, () => ({ padding: 8 })),
  },
  {
    file: 'padding-not-zero.xpkg',
    error: 'E_ARCHIVE_EXTRA_FIELD',
    description: "the aligned model's padding record holds a non-zero byte",
    build: (b) => nonZeroPadding(b),
  },
  // --- manifest ---
  {
    file: 'manifest-missing.xpkg',
    error: 'E_MANIFEST_MISSING',
    description: 'no xpkg/manifest.json entry',
    build: (b) => craft(b, b.entries.slice(1)),
  },
  {
    file: 'manifest-json.xpkg',
    error: 'E_MANIFEST_JSON',
    description: 'manifest is cut one byte short (invalid JSON)',
    build: (b) => manifestData(b, canonical(b).subarray(0, canonical(b).length - 1)),
  },
  {
    file: 'manifest-duplicate-key.xpkg',
    error: 'E_MANIFEST_DUPLICATE_KEY',
    description: 'manifest has the key "name" twice',
    build: (b) => manifestData(b, Buffer.concat([Buffer.from('{"name":"other",'), canonical(b).subarray(1)])),
  },
  {
    file: 'manifest-not-canonical.xpkg',
    error: 'E_MANIFEST_NOT_CANONICAL',
    description: 'manifest pretty-printed instead of canonical JSON',
    build: (b) => manifestData(b, Buffer.from(JSON.stringify(manifestOf(b.entries), null, 1))),
  },
  {
    file: 'manifest-schema.xpkg',
    error: 'E_MANIFEST_SCHEMA',
    description: 'manifest with sequence -1 and an empty license',
    build: (b) => onManifest(b, (m) => Object.assign(m, { sequence: -1, license: '' })),
  },
  {
    file: 'manifest-reference.xpkg',
    error: 'E_MANIFEST_REFERENCE',
    description: 'a pipeline step names a model that does not exist',
    build: (b) => onManifest(b, (m) => void (m.pipeline.steps[1].model = 'missing')),
  },
  {
    file: 'manifest-version.xpkg',
    error: 'E_MANIFEST_VERSION',
    description: 'manifest format "xpkg/2"',
    build: (b) => onManifest(b, (m) => void (m.format = 'xpkg/2')),
  },
];

function unalignedModel(b: Base): Buffer {
  const model = Buffer.from('ONNX placeholder');
  const m = manifestOf(b.entries);
  m.files = m.files.map((f) => (f.path === 'models/net.onnx' ? fileRecord(f.path, model) : f));
  return craft(
    b,
    edit(withManifest(b.entries, m), 'models/net.onnx', () => ({ data: model })),
  );
}

function nonZeroPadding(b: Base): Buffer {
  const { entries, ts } = parseArchive(b.aligned);
  return craftArchive(
    edit(entries, 'models/net.onnx', () => ({ padding: 'align', patchLocal: (h) => void (h[h.length - 1] = 1) })),
    { ts },
  );
}

/** Opens and fully verifies a package: the result a vector expects. Non-xpkg exceptions propagate. */
export async function evaluate(path: string): Promise<{ ok: true; id: string } | { error: ErrorCode }> {
  let reader: PackageReader | undefined;
  try {
    reader = await PackageReader.open(path);
    await reader.verifyIntegrity();
    return { ok: true, id: reader.id };
  } catch (e) {
    if (e instanceof XpkgError) return { error: e.code };
    throw e;
  } finally {
    await reader?.close();
  }
}

/** Writes every vector and expected.json into `outDir`; returns the expectations. */
export async function generateVectors(outDir: string): Promise<Record<string, Expectation>> {
  const base = await buildBase();
  await mkdir(outDir, { recursive: true });
  const expected: Record<string, Expectation> = {};
  for (const c of CASES) {
    const bytes = c.build(base);
    await writeFile(join(outDir, c.file), bytes);
    if (c.error) expected[c.file] = { error: c.error, description: c.description };
    else
      expected[c.file] = { ok: true, id: packageId(parseArchive(bytes).entries[0].data), description: c.description };
  }
  await writeFile(join(outDir, 'expected.json'), `${JSON.stringify(expected, null, 2)}\n`);
  return expected;
}

async function main(): Promise<void> {
  const vectors = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'spec', 'vectors');
  const expected = await generateVectors(vectors);
  let bad = 0;
  for (const [file, want] of Object.entries(expected)) {
    const got = await evaluate(join(vectors, file));
    const ok = 'ok' in want ? 'ok' in got && got.id === want.id : 'error' in got && got.error === want.error;
    if (!ok) bad++;
    console.log(
      `${ok ? 'ok  ' : 'FAIL'} ${file.padEnd(32)} ${'ok' in want ? 'ok' : want.error}${ok ? '' : `  (reader: ${JSON.stringify(got)})`}`,
    );
  }
  console.log(`${Object.keys(expected).length} vectors, ${bad} disagreeing with the reader`);
  if (bad) process.exitCode = 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
