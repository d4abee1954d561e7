/**
 * Verified model files as a backend takes them: whole (a Buffer) for what fits in memory, or
 * written into a private folder for a runtime that must open files itself (an ONNX model with
 * external data, a payload too large for one Buffer). The folder is made for this one load (0700,
 * files 0400, created exclusively, never following links), every byte is hashed as it is written,
 * and it is removed once the runtime has read it (the backend decides when), or at the latest when
 * the process exits.
 */
import { rmSync } from 'node:fs';
import { constants, mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { RunnerError, XpkgError } from '../../spec/errors.js';
import type { VariantFiles } from '../types.js';

/** A variant's files given as bytes (tests, the local source-folder context): already trusted. */
export function filesFromMap(files: ReadonlyMap<string, Uint8Array>): VariantFiles {
  const get = (path: string): Buffer => {
    const b = files.get(path);
    if (!b) throw new RunnerError('E_RUN_LOAD', `file ${path} was not provided`, { file: path });
    return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  };
  return {
    size: (path) => get(path).length,
    read: async (path) => get(path),
    stream: async (path, sink) => sink(get(path)),
  };
}

// Folders still on disk, removed synchronously if the process exits before their backends remove them.
const live = new Set<string>();
let hooked = false;
function track(dir: string): void {
  live.add(dir);
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const d of live) rmSync(d, { recursive: true, force: true });
  });
}

export interface PrivateFolder {
  readonly dir: string;
  /** Where a package path lies in the folder. */
  path(file: string): string;
  /** Removes the folder (idempotent). */
  remove(): Promise<void>;
}

/**
 * Writes `files` (package paths, with their bytes when the caller already holds them verified, else
 * streamed through `source.stream`, which checks the digest) into a new private folder, keeping
 * their relative layout. On any failure the folder is removed before the error is rethrown.
 */
export async function writePrivateFolder(
  source: VariantFiles,
  files: readonly { path: string; bytes?: Buffer }[],
  parent = tmpdir(),
): Promise<PrivateFolder> {
  const dir = await mkdtemp(join(parent, 'xpkg-model-')).catch((e: unknown) => {
    throw folderError(e);
  });
  track(dir);
  const folder: PrivateFolder = {
    dir,
    path: (file) => join(dir, ...file.split('/')),
    async remove() {
      await rm(dir, { recursive: true, force: true });
      live.delete(dir);
    },
  };
  try {
    for (const { path, bytes } of files) {
      const target = folder.path(path);
      await mkdir(dirname(target), { recursive: true, mode: 0o700 });
      const fh = await open(
        target,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0),
        0o400,
      );
      try {
        const write = async (chunk: Buffer) => {
          for (let off = 0; off < chunk.length; ) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
        };
        if (bytes) await write(bytes);
        else await source.stream(path, write);
      } finally {
        await fh.close();
      }
    }
  } catch (e) {
    await folder.remove().catch(() => {});
    throw folderError(e);
  }
  return folder;
}

/** Coded errors (a digest mismatch while streaming…) pass through; file-system ones become E_RUN_LOAD. */
function folderError(e: unknown): unknown {
  if (e instanceof XpkgError) return e;
  return new RunnerError(
    'E_RUN_LOAD',
    `cannot write the model's private folder: ${(e as Error)?.message ?? String(e)}`,
    { reason: (e as { code?: unknown })?.code ?? null },
    { cause: e },
  );
}
