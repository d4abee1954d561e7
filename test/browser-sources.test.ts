/**
 * The browser's windowed sources under the real reader, in Node (Blob is in Node too): opening the
 * shipped OCR package loads the windows of its local headers at once (ByteSource.prefetch), and the
 * same windows, bytes and result as reading them one round trip after another.
 */
import { openAsBlob } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlobSource } from '../browser/sources.js';
import { PackageReader } from '../pack/reader.js';

const OCR = join(import.meta.dirname, '..', 'fixtures', 'dist', 'paddleocr-v4.xpkg');

/** A Blob source whose every load takes a few milliseconds (a round trip), counting those in flight. */
class RoundTrips extends BlobSource {
  inFlight = 0;
  most = 0;
  readonly loads: string[] = [];

  protected override async load(from: number, to: number): Promise<Uint8Array> {
    this.inFlight++;
    this.most = Math.max(this.most, this.inFlight);
    this.loads.push(`${from}-${to}`);
    try {
      await new Promise((r) => setTimeout(r, 5));
      return await super.load(from, to);
    } finally {
      this.inFlight--;
    }
  }
}

describe('browser sources', () => {
  it('opening a package loads its local headers’ windows together: the same windows and bytes as one by one', async () => {
    const blob = await openAsBlob(OCR);
    const together = new RoundTrips(blob, 'ocr');
    const opened = await PackageReader.fromSource(together);
    const oneByOne = new RoundTrips(blob, 'ocr');
    Object.defineProperty(oneByOne, 'prefetch', { value: undefined }); // as a source without prefetch reads
    const sequential = await PackageReader.fromSource(oneByOne);

    expect(opened.id).toBe(sequential.id);
    expect(oneByOne.most).toBe(1);
    expect(together.most).toBeGreaterThan(1);
    expect([...together.loads].sort()).toEqual([...oneByOne.loads].sort());
    expect(together.bytesFetched).toBe(oneByOne.bytesFetched);
    expect(together.bytesFetched).toBeLessThan(2 ** 20);
    await opened.close();
    await sequential.close();
  });
});
