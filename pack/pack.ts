/**
 * `xpkg pack`: folder → package, deterministically (spec/FORMAT.md §7).
 *
 * The layout is computed before a byte is written: every digest is 64 hex characters, so the
 * canonical manifest's length is known from a placeholder manifest, and the manifest (first entry)
 * is written last at offset 0. Each file is read once, in chunks, and the bytes hashed are exactly
 * the bytes written; no file is ever held whole in memory.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, lstat, open, realpath, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { crc32 } from 'node:zlib';
import { canonicalBytes, parseStrictJson } from '../spec/canonical.js';
import { FormatError, PackError, UsageError } from '../spec/errors.js';
import { BLOCK_SIZE, FORMAT_ID, LIMITS, MANIFEST_PATH } from '../spec/limits.js';
import { modelPaths, packageId, referencedPaths, validateManifest, validateManifestSource } from '../spec/manifest.js';
import type { FileRecord, Manifest, ManifestSource } from '../spec/schema.js';
import { refuseNonRegular, writeAllAt, writeAtomic } from './atomic.js';
import { HashPool } from './hash.js';
import { FolderNames, openSource } from './source-files.js';
import { encodeDirectory } from './writer.js';
import * as Z from './zip.js';

export const SOURCE_MANIFEST = 'xpkg.json';

export interface PackOptions {
  /** Overrides SOURCE_DATE_EPOCH for the entries' fixed timestamp. */
  sourceDateEpoch?: string;
  onProgress?: (done: number, total: number) => void;
  /** Replace an existing output file (never a file of the package folder). */
  force?: boolean;
}

export interface PackResult {
  path: string;
  id: string;
  size: number;
  files: number;
  payloadBytes: number;
  manifest: Manifest;
}

/** What the layout needs of an entry: its name, its stored size and whether it is a model file (§2.5). */
export interface LayoutItem {
  path: string;
  size: number;
  aligned: boolean;
}

/**
 * A file to pack. It is not held open between the layout and its turn to be written (a folder of
 * thousands of files would run out of descriptors): it is opened again then, and must be the same
 * file (device, inode) of the same size.
 */
interface Source extends LayoutItem {
  dev: number;
  ino: number;
}

/** Reads and validates `<dir>/xpkg.json`. */
export async function readManifestSource(dir: string): Promise<ManifestSource> {
  const file = join(dir, SOURCE_MANIFEST);
  const st = await lstat(file).catch(() => null);
  // a folder that is not there is E_NOT_FOUND, as packFolder says it, with -o or without
  if (!st && !(await stat(dir).catch(() => null)))
    throw new UsageError('E_NOT_FOUND', `package folder ${dir} does not exist`, { path: dir });
  if (!st) throw new PackError('E_PACK_SOURCE_MISSING', `no ${SOURCE_MANIFEST} in ${dir}`, { path: file });
  // by its exact name, as the files it references: `XPKG.json` is found on macOS, not on Linux
  await new FolderNames().find(dir, SOURCE_MANIFEST, SOURCE_MANIFEST, []);
  if (st.isSymbolicLink()) throw new PackError('E_PACK_SOURCE_LINK', `${file} is a symbolic link`, { path: file });
  if (!st.isFile()) throw new PackError('E_PACK_SOURCE_TYPE', `${file} is not a regular file`, { path: file });
  // O_NONBLOCK: a FIFO swapped in after the check must not wait for a writer (fstat refuses it below).
  const fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | (constants.O_NONBLOCK ?? 0));
  try {
    const now = await fh.stat();
    if (!now.isFile()) throw new PackError('E_PACK_SOURCE_TYPE', `${file} is not a regular file`, { path: file });
    // Checked before reading: a multi-gigabyte xpkg.json is refused, never read whole into memory.
    if (now.size > LIMITS.manifestBytes)
      throw new FormatError(
        'E_MANIFEST_TOO_LARGE',
        `${file} is ${now.size} bytes; a manifest is at most ${LIMITS.manifestBytes}`,
        { path: file, size: now.size, limit: LIMITS.manifestBytes },
      );
    return validateManifestSource(parseStrictJson(await fh.readFile()));
  } finally {
    await fh.close();
  }
}

/** Opens a source again for writing: the same checks, and the same file as at layout time. */
async function reopen(root: string, s: Source, names: FolderNames): Promise<{ fh: FileHandle } & AsyncDisposable> {
  const { fh } = await openSource(root, s.path, names);
  const st = await fh.stat().catch(async (e) => {
    await fh.close();
    throw e;
  });
  if (st.dev !== s.dev || st.ino !== s.ino || st.size !== s.size) {
    await fh.close();
    throw new PackError('E_PACK_SOURCE_CHANGED', `${s.path} changed while being packed`, { path: s.path });
  }
  return { fh, [Symbol.asyncDispose]: () => fh.close().catch(() => {}) };
}

const ZERO = '0'.repeat(64);

/**
 * Refuses an output that is (or links to) the manifest or a file being packed: the rename would
 * replace the user's model with the package. An existing output needs `force`.
 */
async function checkOutput(outPath: string, manifestFile: string, sources: Source[], force: boolean): Promise<void> {
  const out = await stat(outPath).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    throw e;
  });
  if (!out) return;
  // --force replaces a package file, never a folder, device, FIFO or socket (before any hashing)
  refuseNonRegular(outPath, out);
  const inputs = [
    { path: SOURCE_MANIFEST, st: await stat(manifestFile) },
    ...sources.map((s) => ({ path: s.path, st: { ino: s.ino, dev: s.dev } })),
  ];
  const same = inputs.find((i) => i.st.ino === out.ino && i.st.dev === out.dev);
  if (same)
    throw new PackError(
      'E_PACK_OUTPUT_SOURCE',
      `${outPath} is ${same.path} of the package folder; writing the package there would destroy it`,
      { path: outPath, source: same.path },
    );
  if (!force)
    throw new PackError('E_PACK_OUTPUT_EXISTS', `${outPath} already exists (pass --force to replace it)`, {
      path: outPath,
    });
}

/**
 * Layout (FORMAT.md §2.5–2.6): manifest at 0, then payloads in path order. An aligned entry whose
 * padding would be 1–3 bytes (an extra record needs 4) gets a 4-byte shim on the entry before it when
 * that entry is unaligned; otherwise it is deferred behind the next entry, or, when it is last,
 * moved before the previous one. A pure function of the input, so output stays deterministic.
 * Also lays out partial packages (oci/partial.ts), whose entries are the present payloads.
 */
export function layoutPayloads<S extends LayoutItem>(
  manifest: Z.EntryLayout,
  sources: S[],
): { order: { s: S; layout: Z.EntryLayout }[]; cursor: number } {
  let sequence = [...sources];
  for (let attempt = 0; attempt <= sources.length * 2; attempt++) {
    const start = Z.localHeaderLength(manifest) + manifest.size;
    const order: { s: S; layout: Z.EntryLayout }[] = [];
    let prev: Z.EntryLayout = { ...manifest, padding: 0 };
    let cursor = start;
    let conflict = -1;
    for (let i = 0; i < sequence.length && conflict < 0; i++) {
      const s = sequence[i];
      const name = Buffer.from(s.path, 'utf8');
      let padding = 0;
      if (s.aligned && s.size > 0) {
        let pad = Z.alignmentPadding(cursor, name, s.size);
        const prevAligned = order.length > 0 && order[order.length - 1].s.aligned && order[order.length - 1].s.size > 0;
        if (pad === null && !prevAligned) {
          prev.padding = 4;
          cursor += 4;
          pad = Z.alignmentPadding(cursor, name, s.size);
        }
        if (pad === null) {
          conflict = i;
          break;
        }
        padding = pad;
      }
      const layout: Z.EntryLayout = {
        name,
        method: 0,
        crc32: 0,
        compressedSize: s.size,
        size: s.size,
        localHeaderOffset: cursor,
        padding,
      };
      order.push({ s, layout });
      cursor += Z.localHeaderLength(layout) + s.size;
      prev = layout;
    }
    if (conflict < 0) {
      manifest.padding = order.length && order[0].layout.localHeaderOffset > start ? 4 : 0;
      return { order, cursor };
    }
    const s = sequence[conflict];
    sequence = sequence.filter((_, k) => k !== conflict);
    sequence.splice(conflict + 1 < sources.length ? conflict + 1 : Math.max(0, conflict - 1), 0, s);
  }
  throw new PackError('E_PACK_SOURCE_TYPE', 'cannot lay out the model files on 64 KiB boundaries in any order tried', {
    files: sources.map((x) => x.path),
  });
}

export async function packFolder(dir: string, outPath: string, options: PackOptions = {}): Promise<PackResult> {
  const root = await realpath(resolve(dir)).catch(() => {
    throw new UsageError('E_NOT_FOUND', `package folder ${dir} does not exist`, { path: dir });
  });
  const src = await readManifestSource(root);
  let ts: { time: number; date: number };
  try {
    ts = Z.dosTimestamp(options.sourceDateEpoch ?? process.env.SOURCE_DATE_EPOCH);
  } catch (e) {
    throw new UsageError('E_USAGE', (e as Error).message);
  }
  const models = modelPaths(src);
  const paths = [...referencedPaths(src).keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  // The manifest entry and the signatures entry `xpkg sign` adds count too: a package of more files
  // would be one no reader opens (E_ARCHIVE_LIMIT), or one that could never be signed.
  const maxFiles = LIMITS.entries - 2;
  if (paths.length > maxFiles)
    throw new FormatError('E_ARCHIVE_LIMIT', `${paths.length} files; a package holds at most ${maxFiles}`, {
      files: paths.length,
      limit: maxFiles,
    });
  const sources: Source[] = [];
  const names = new FolderNames();
  for (const p of paths) {
    const { fh } = await openSource(root, p, names);
    try {
      const st = await fh.stat();
      sources.push({ path: p, size: st.size, aligned: models.has(p), dev: st.dev, ino: st.ino });
    } finally {
      await fh.close();
    }
  }
  const { include: _include, format: _format, ...rest } = src;
  const manifestFor = (records: FileRecord[]): Manifest => ({
    ...rest,
    format: FORMAT_ID,
    blockSize: BLOCK_SIZE,
    files: records,
  });
  const placeholder = canonicalBytes(
    manifestFor(
      sources.map((s) => ({
        path: s.path,
        size: s.size,
        sha256: ZERO,
        blocks: Array(Math.ceil(s.size / BLOCK_SIZE)).fill(ZERO),
      })),
    ),
  );

  const manifestLayout: Z.EntryLayout = {
    name: Buffer.from(MANIFEST_PATH),
    method: 0,
    crc32: 0,
    compressedSize: placeholder.length,
    size: placeholder.length,
    localHeaderOffset: 0,
    padding: 0,
  };
  const { order, cursor } = layoutPayloads(manifestLayout, sources);

  await checkOutput(outPath, join(root, SOURCE_MANIFEST), sources, Boolean(options.force));
  const total = sources.reduce((n, s) => n + s.size, 0);
  let done = 0;
  const records = new Map<string, FileRecord>();
  // Big files: block digests are hashed by worker threads from the bytes just written to the
  // output (so they cover exactly what the package holds), while this thread reads, writes and
  // runs the sequential whole-file SHA-256 and CRC-32. Small files are hashed here.
  const big = sources.some((x) => x.size > BLOCK_SIZE);
  await writeAtomic(
    outPath,
    async (out) => {
      using pool = big ? new HashPool(out.fd, Math.max(1, Math.min(availableParallelism() - 1, 4))) : null;
      const buf = Buffer.allocUnsafe(BLOCK_SIZE);
      for (const { s, layout } of order) {
        await using file = await reopen(root, s, names);
        const dataAt = layout.localHeaderOffset + Z.localHeaderLength(layout);
        const whole = createHash('sha256');
        const blockJobs: Promise<string[]>[] = [];
        let crc = 0;
        let pos = 0;
        // Chunks are BLOCK_SIZE-aligned reads, so each block digest sees exactly one block.
        while (pos < s.size) {
          const want = Math.min(BLOCK_SIZE, s.size - pos);
          let got = 0;
          while (got < want) {
            const { bytesRead } = await file.fh.read(buf, got, want - got, pos + got);
            if (bytesRead === 0)
              throw new PackError('E_PACK_SOURCE_CHANGED', `${s.path} shrank while being packed`, { path: s.path });
            got += bytesRead;
          }
          const chunk = buf.subarray(0, want);
          whole.update(chunk);
          crc = crc32(chunk, crc);
          await writeAllAt(out, chunk, dataAt + pos);
          if (pool && s.size > BLOCK_SIZE) {
            const job = pool
              .run({ kind: 'blocks', offset: dataAt + pos, length: want, blockSize: BLOCK_SIZE })
              .then((r) => r.digests);
            job.catch(() => {}); // awaited below; this only keeps an early failure from being "unhandled"
            blockJobs.push(job);
          } else blockJobs.push(Promise.resolve([createHash('sha256').update(chunk).digest('hex')]));
          pos += want;
          done += want;
          options.onProgress?.(done, total);
        }
        const { bytesRead: extra } = await file.fh.read(buf, 0, 1, s.size);
        if (extra !== 0)
          throw new PackError('E_PACK_SOURCE_CHANGED', `${s.path} grew while being packed`, { path: s.path });
        layout.crc32 = crc >>> 0;
        await writeAllAt(out, Z.encodeLocalHeader(layout, ts), layout.localHeaderOffset);
        records.set(s.path, {
          path: s.path,
          size: s.size,
          sha256: whole.digest('hex'),
          blocks: (await Promise.all(blockJobs)).flat(),
        });
      }
      const manifest = manifestFor(sources.map((s) => records.get(s.path)!));
      validateManifest(manifest);
      const bytes = canonicalBytes(manifest);
      if (bytes.length !== placeholder.length)
        throw new FormatError('E_MANIFEST_NOT_CANONICAL', 'internal: manifest length changed between layout and write');
      manifestLayout.crc32 = crc32(bytes) >>> 0;
      await writeAllAt(out, Buffer.concat([Z.encodeLocalHeader(manifestLayout, ts), bytes]), 0);
      await writeAllAt(out, encodeDirectory([manifestLayout, ...order.map((o) => o.layout)], cursor, ts), cursor);
    },
    { overwrite: Boolean(options.force) },
  ).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'EEXIST')
      throw new PackError('E_PACK_OUTPUT_EXISTS', `${outPath} appeared while packing (pass --force to replace it)`, {
        path: outPath,
      });
    throw e;
  });
  const manifest = manifestFor(sources.map((s) => records.get(s.path)!));
  const bytes = canonicalBytes(manifest);
  const { size } = await stat(outPath);
  return { path: outPath, id: packageId(bytes), size, files: sources.length, payloadBytes: total, manifest };
}
