/** Small-file atomic writes for key and state files, through pack's one atomic writer (and its temp-file registry). */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
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

/** Why `readSmallFile` refused a file: not a regular file, or larger than the limit. */
export class SmallFileError extends Error {
  constructor(
    readonly reason: 'not-regular' | 'too-large',
    readonly size?: number,
  ) {
    super(reason === 'not-regular' ? 'not a regular file' : `larger than the limit (${size} bytes)`);
  }
}

/**
 * Reads a small regular file whole. The checks are made on the open file, not by a stat before
 * opening: O_NONBLOCK keeps a FIFO put at the path from blocking the open forever, and the read
 * stops past `max` even if the file grows meanwhile. Errors from the file system are thrown as
 * they are; the refusals above as SmallFileError.
 */
export async function readSmallFile(path: string, max: number): Promise<Buffer> {
  const fh = await open(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new SmallFileError('not-regular');
    if (st.size > max) throw new SmallFileError('too-large', st.size);
    let buf = Buffer.alloc(st.size + 1);
    let got = 0;
    for (;;) {
      if (got === buf.length) buf = Buffer.concat([buf, Buffer.alloc(Math.min(buf.length, max + 1 - got))]);
      const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
      if (got > max) throw new SmallFileError('too-large', got);
    }
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}
