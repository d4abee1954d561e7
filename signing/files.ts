/** Small-file atomic writes for key and state files: temp file beside the target, fsync, then publish. */
import { randomBytes } from 'node:crypto';
import { link, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export interface WriteOptions {
  /** File mode of the new file (the temp file is created with it, so no window with wider rights). */
  mode?: number;
  /** Replace an existing file. When false, an existing target makes this throw EEXIST, atomically. */
  overwrite?: boolean;
}

export async function writeFileAtomic(target: string, data: Uint8Array | string, options: WriteOptions = {}): Promise<void> {
  const mode = options.mode ?? 0o644;
  const temp = join(dirname(target), `.${basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(temp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.chmod(mode);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(temp).catch(() => {});
    throw e;
  }
  await fh.close();
  try {
    // link() fails with EEXIST instead of replacing: a no-clobber publish with no check-then-write race.
    if (options.overwrite === false) await link(temp, target);
    else await rename(temp, target);
  } finally {
    await unlink(temp).catch(() => {});
  }
}
