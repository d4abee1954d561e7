/** Browser twin of pack/file-source.ts: there are no file paths; packages come as Blob, File, bytes or URL. */
import type { ByteSource } from '../../pack/source.js';
import { UsageError } from '../../spec/errors.js';

export const FileSource = {
  async open(path: string): Promise<ByteSource> {
    throw new UsageError(
      'E_USAGE',
      `no file system in the browser: open ${JSON.stringify(path)} as a File, Blob, ArrayBuffer or URL`,
      { path },
    );
  },
};
