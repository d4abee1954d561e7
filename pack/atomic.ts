/** Atomic file creation: write a temp file beside the target, fsync, rename. Nothing half-written is ever visible. */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export async function writeAtomic<T>(target: string, fill: (fh: FileHandle, tempPath: string) => Promise<T>, mode = 0o644): Promise<T> {
  const temp = join(dirname(target), `.${basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(temp, 'wx+', mode);
  let ok = false;
  try {
    const result = await fill(fh, temp);
    await fh.sync();
    await fh.close();
    await rename(temp, target);
    ok = true;
    return result;
  } finally {
    if (!ok) {
      await fh.close().catch(() => {});
      await unlink(temp).catch(() => {});
    }
  }
}

/** Writes all of `data` at `position`. */
export async function writeAllAt(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}
