/**
 * Opening the files of a source folder for `xpkg pack` (spec/FORMAT.md §7): no links anywhere on
 * the path, regular files only, nothing outside the folder, and names matched the same way on
 * every file system.
 *
 * Why names are matched against the folder's listing rather than by open(): macOS and Windows
 * find `Net.onnx` when asked for `net.onnx`, and macOS writes `café` decomposed (NFD), which Linux
 * then cannot find under the manifest's NFC name. Left to the file system, one folder would pack
 * on one machine and not on another, or pack a different file. Here a manifest name matches an
 * on-disk name only when the two are equal after NFC normalisation (so a folder written on macOS
 * packs on Linux, to the same bytes), never by case; and a name is refused when the folder holds
 * another name it collides with (FORMAT.md §3), because a case-insensitive file system holds only
 * one of the two.
 */
import { constants } from 'node:fs';
import { type FileHandle, lstat, open, readdir, realpath } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { FormatError, PackError } from '../spec/errors.js';
import { collisionKey } from '../spec/paths.js';

/** On-disk names of each folder read so far, by collision key. One per pack, so each folder is listed once. */
export class FolderNames {
  private readonly listings = new Map<string, Promise<Map<string, string[]>>>();

  private list(dir: string): Promise<Map<string, string[]>> {
    let l = this.listings.get(dir);
    if (!l) {
      l = readdir(dir).then((names) => {
        const byKey = new Map<string, string[]>();
        for (const n of names) {
          const k = collisionKey(n);
          const same = byKey.get(k);
          if (same) same.push(n);
          else byKey.set(k, [n]);
        }
        return byKey;
      });
      this.listings.set(dir, l);
    }
    return l;
  }

  /**
   * The on-disk name in `dir` of the manifest name segment `seg` (NFC), or null when there is
   * none. `rel` and `at` (the segments so far) are for messages.
   */
  async find(dir: string, seg: string, rel: string, at: string[]): Promise<string | null> {
    const listing = await this.list(dir).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return null;
      throw e;
    });
    const names = listing?.get(collisionKey(seg)) ?? [];
    const where = (n: string) => [...at, n].join('/');
    if (names.length > 1)
      throw new FormatError(
        'E_PATH_COLLISION',
        `${rel}: the folder holds ${names.map((n) => JSON.stringify(where(n))).join(' and ')}, one name on a case-insensitive or normalising file system (macOS, Windows): the folder would not pack the same there`,
        { path: rel, names: names.map(where) },
      );
    if (names.length === 0) return null;
    if (names[0].normalize('NFC') !== seg)
      throw new PackError(
        'E_PACK_SOURCE_MISSING',
        `${rel} is referenced by the manifest, but the folder holds ${JSON.stringify(where(names[0]))}: names must match exactly (case too), so the folder packs the same on every file system`,
        { path: rel, found: where(names[0]) },
      );
    return names[0];
  }
}

export interface OpenedSource {
  fh: FileHandle;
  /** Absolute path of the file as named on disk (may differ from the manifest's name in normal form only). */
  disk: string;
}

/** Opens a referenced file, refusing links anywhere on its path, non-regular files and escapes. */
export async function openSource(root: string, rel: string, names: FolderNames): Promise<OpenedSource> {
  const segs = rel.split('/');
  let cur = root;
  for (let i = 0; i < segs.length; i++) {
    const name = await names.find(cur, segs[i], rel, segs.slice(0, i));
    const st =
      name === null
        ? null
        : await lstat(join(cur, name)).catch((e: NodeJS.ErrnoException) => {
            if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return null;
            throw e;
          });
    if (!st || name === null)
      throw new PackError('E_PACK_SOURCE_MISSING', `${rel} is referenced by the manifest but does not exist`, {
        path: rel,
      });
    cur = join(cur, name);
    if (st.isSymbolicLink())
      throw new PackError(
        'E_PACK_SOURCE_LINK',
        `${rel}: ${segs.slice(0, i + 1).join('/')} is a symbolic link; packages never follow links`,
        { path: rel },
      );
    if (i < segs.length - 1 ? !st.isDirectory() : !st.isFile())
      throw new PackError('E_PACK_SOURCE_TYPE', `${rel} is not a regular file`, { path: rel });
  }
  const real = await realpath(cur);
  if (!real.startsWith(root + sep))
    throw new PackError('E_PACK_SOURCE_OUTSIDE', `${rel} resolves outside the package folder`, {
      path: rel,
      resolved: real,
    });
  // O_NONBLOCK: a FIFO put at the path after the check must not block the open (fstat refuses it).
  const fh = await open(cur, constants.O_RDONLY | constants.O_NOFOLLOW | (constants.O_NONBLOCK ?? 0));
  const [a, b] = [await fh.stat(), await lstat(cur)];
  if (a.ino !== b.ino || a.dev !== b.dev || !a.isFile()) {
    await fh.close();
    throw new PackError('E_PACK_SOURCE_CHANGED', `${rel} changed while being opened`, { path: rel });
  }
  return { fh, disk: cur };
}
