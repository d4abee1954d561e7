/** Small-file atomic writes for key and state files, through pack's one atomic writer (and its temp-file registry). */
import { writeAtomic } from '../pack/atomic.js';

export interface WriteOptions {
  /** File mode of the new file (the temp file is created with it, so no window with wider rights). */
  mode?: number;
  /** Replace an existing file. When false, an existing target makes this throw EEXIST, atomically. */
  overwrite?: boolean;
}

export async function writeFileAtomic(
  target: string,
  data: Uint8Array | string,
  options: WriteOptions = {},
): Promise<void> {
  await writeAtomic(target, (fh) => fh.writeFile(data), {
    mode: options.mode ?? 0o644,
    overwrite: options.overwrite !== false,
  });
}
