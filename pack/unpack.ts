/**
 * `xpkg unpack`: safe extraction. Every byte written is hashed as it is written and checked against
 * the manifest; directories are created one segment at a time and a pre-existing link anywhere on a
 * destination path is refused, never followed. Nothing is overwritten.
 */
import { createHash } from 'node:crypto';
import { readdirSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { type FileHandle, lstat, mkdir, rm, rmdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { crc32 } from 'node:zlib';
import { FormatError, PackError } from '../spec/errors.js';
import { BLOCK_SIZE } from '../spec/limits.js';
import { referencedPaths } from '../spec/manifest.js';
import type { ManifestSource } from '../spec/schema.js';
import { createTracked, undoOnInterrupt, writeAllAt, writeAtomic } from './atomic.js';
import { SOURCE_MANIFEST } from './pack.js';
import { PackageReader } from './reader.js';

/**
 * On a signal, the file this process was publishing: this process's temp files beside it
 * (pack/atomic.ts names them `.<name>.<pid>.<hex>.tmp`) are removed, and the target too where it
 * is one of them linked into place (the same inode): ours, not a file that appeared meanwhile.
 */
function dropInflight(target: string): void {
  dropTemps(dirname(target), target);
}

/**
 * This process's temp files in `dir` (and `target` where it is one of them linked into place). A
 * published file's temp whose unlink had not run yet held its folder open: the folder stayed after
 * an interrupted unpack (a fresh-clone CI saw it).
 */
function dropTemps(dir: string, target?: string): void {
  const mine = new RegExp(`^\\..*\\.${process.pid}\\.[0-9a-f]{12}\\.tmp$`);
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  const at = (p: string) => {
    try {
      return statSync(p);
    } catch {
      return null;
    }
  };
  const t = target === undefined ? null : at(target);
  for (const n of names.filter((x) => mine.test(x))) {
    const temp = at(join(dir, n));
    if (t && temp && t.ino === temp.ino && t.dev === temp.dev) rmSync(target!, { force: true });
    rmSync(join(dir, n), { force: true });
  }
}

export interface UnpackResult {
  dir: string;
  id: string;
  files: string[];
  bytes: number;
}

/**
 * `before` runs just before the folder is made: a caller that undoes its writes on a signal records
 * it then, not after mkdir's callback (a signal can come between the two); `after` takes the record
 * back when mkdir fails.
 */
async function ensureDir(
  path: string,
  shown: string,
  before?: () => void,
  after?: () => void,
): Promise<'created' | 'existed'> {
  const st = await lstat(path).catch(() => null);
  if (st?.isSymbolicLink())
    throw new PackError('E_UNPACK_LINK', `${shown} is a symbolic link in the destination; refusing to follow it`, {
      path: shown,
    });
  if (st && !st.isDirectory())
    throw new PackError('E_UNPACK_EXISTS', `${shown} exists and is not a directory`, { path: shown });
  if (st) return 'existed';
  before?.();
  await createTracked(() => mkdir(path)).catch((e: unknown) => {
    after?.(); // not made here: not ours to remove
    throw e;
  });
  return 'created';
}

/** The manifest in its source form (what `pack` reads back), so unpack → pack round-trips. */
export function sourceManifestOf(reader: PackageReader): ManifestSource {
  const { files, blockSize: _b, ...rest } = reader.manifest;
  const referenced = referencedPaths({ ...rest, files } as never);
  const include = files.map((f) => f.path).filter((p) => !referenced.has(p));
  return include.length ? { ...rest, include } : rest;
}

/** Writes one file of the package to `fh`, checked as verify checks it: SHA-256, every block digest, CRC-32. */
async function writeVerified(
  reader: PackageReader,
  path: string,
  record: PackageReader['manifest']['files'][number] | null,
  fh: FileHandle,
  onBytes: (n: number) => void,
): Promise<void> {
  if (!record) {
    await writeAllAt(fh, Buffer.from(`${JSON.stringify(sourceManifestOf(reader), null, 2)}\n`), 0);
    return;
  }
  const e = reader.entry(path)!;
  const h = createHash('sha256');
  if (e.method === 8) {
    const data = await reader.readVerified(path);
    h.update(data);
    await writeAllAt(fh, data, 0);
  } else {
    let crc = 0;
    for (let p = 0, k = 0; p < e.size; p += BLOCK_SIZE, k++) {
      const part = await reader.readRaw(e, p, Math.min(BLOCK_SIZE, e.size - p));
      h.update(part);
      crc = crc32(part, crc);
      const block = createHash('sha256').update(part).digest('hex');
      if (block !== record.blocks[k])
        throw new FormatError('E_DIGEST_MISMATCH', `${JSON.stringify(path)}: block ${k} does not match the manifest`, {
          path,
          block: k,
        });
      await writeAllAt(fh, part, p);
      onBytes(part.length);
    }
    if (crc >>> 0 !== e.crc32)
      throw new FormatError('E_ARCHIVE_CRC', `${JSON.stringify(path)}: CRC-32 does not match its header`, { path });
  }
  const sha = h.digest('hex');
  if (sha !== record.sha256)
    throw new FormatError('E_DIGEST_MISMATCH', `${JSON.stringify(path)} does not match its manifest digest`, {
      path,
      expected: record.sha256,
      actual: sha,
    });
}

export async function unpackPackage(
  pkgPath: string,
  outDir: string,
  onProgress?: (d: number, t: number) => void,
): Promise<UnpackResult> {
  await using reader = await PackageReader.open(pkgPath);
  // A partial package (spec/OCI.md §4) lacks files its manifest lists: there is nothing to write for them.
  if (reader.absent.size)
    throw new FormatError('E_FILE_PARTIAL', 'a partial package cannot be unpacked: some of its files are absent', {
      absent: [...reader.absent],
    });
  const root = resolve(outDir);
  const createdFiles: string[] = [];
  const createdDirs: string[] = [];
  await ensureDir(
    root,
    outDir,
    () => createdDirs.push(root),
    () => createdDirs.pop(),
  );
  /** The file being published: on a signal it may be in place before writeAtomic's callback ran. */
  let inflight: string | undefined;
  const total = reader.manifest.files.reduce((n, f) => n + f.size, 0);
  let done = 0;
  // Ctrl-C or SIGTERM mid-unpack leaves the destination as it was too (as an error does, below)
  const settled = undoOnInterrupt(() => {
    const each = (paths: string[], remove: (p: string) => void) =>
      [...paths].reverse().forEach((p) => {
        try {
          remove(p);
        } catch {
          // not ours to force: a folder someone else wrote into stays
        }
      });
    if (inflight) dropInflight(inflight);
    each(createdFiles, (f) => rmSync(f, { force: true }));
    for (const d of new Set([...createdDirs, ...createdFiles.map(dirname)])) dropTemps(d);
    each(createdDirs, rmdirSync);
  });
  try {
    const files = [...reader.manifest.files.map((f) => ({ path: f.path, record: f as typeof f | null }))];
    if (!files.some((f) => f.path === SOURCE_MANIFEST)) files.push({ path: SOURCE_MANIFEST, record: null });
    for (const { path, record } of files) {
      const segs = path.split('/');
      let cur = root;
      for (let i = 0; i < segs.length - 1; i++) {
        cur = join(cur, segs[i]);
        const dir = cur;
        await ensureDir(
          dir,
          segs.slice(0, i + 1).join('/'),
          () => createdDirs.push(dir),
          () => createdDirs.pop(),
        );
      }
      const target = join(root, path);
      const pre = await lstat(target).catch(() => null);
      if (pre?.isSymbolicLink())
        throw new PackError('E_UNPACK_LINK', `${path} is a symbolic link in the destination; refusing to follow it`, {
          path,
        });
      if (pre) throw new PackError('E_UNPACK_EXISTS', `${path} already exists in the destination`, { path });
      // Each file is written to a temp file beside it and linked into place once every byte is
      // verified: a kill mid-write leaves no half-written file under a name from the package
      // (pack/atomic.ts). link() never replaces, so a file that appeared meanwhile is refused.
      inflight = target;
      await writeAtomic(
        target,
        (fh) =>
          writeVerified(reader, path, record, fh, (n) => {
            done += n;
            onProgress?.(done, total);
          }),
        {
          overwrite: false,
          onPublished: () => {
            createdFiles.push(target);
            inflight = undefined;
          },
        },
      ).catch(async (e: NodeJS.ErrnoException) => {
        inflight = undefined;
        if (e.code !== 'EEXIST') throw e;
        const link = (await lstat(target).catch(() => null))?.isSymbolicLink();
        throw new PackError(
          link ? 'E_UNPACK_LINK' : 'E_UNPACK_EXISTS',
          `${path} appeared in the destination while unpacking`,
          { path },
        );
      });
    }
  } catch (e) {
    // Leave the destination as it was: remove what this call created, newest first.
    for (const f of createdFiles.reverse()) await rm(f, { force: true }).catch(() => {});
    for (const d of createdDirs.reverse()) await rmdir(d).catch(() => {});
    throw e;
  } finally {
    settled();
  }
  return { dir: root, id: reader.id, files: reader.manifest.files.map((f) => f.path), bytes: total };
}
