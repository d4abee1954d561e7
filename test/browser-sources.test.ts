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
    // no window loaded twice, none overlapping another: every header window is kept until read
    for (const loads of [together.loads, oneByOne.loads]) {
      const ranges = loads.map((l) => l.split('-').map(Number)).sort((a, b) => a[0] - b[0]);
      ranges.forEach(([from], i) => {
        if (i > 0) expect(from, loads.join(' ')).toBeGreaterThanOrEqual(ranges[i - 1][1]);
      });
    }
    await opened.close();
    await sequential.close();
  });

  it('a large read that starts in a window loaded (or loading) for a header takes that part from it and fetches only the rest', async () => {
    const data = new Uint8Array(1 << 20).map((_, i) => (i * 2654435761) >>> 24);
    const blob = new Blob([data]);
    const read = async (src: BlobSource, position: number, length: number) => {
      const buf = new Uint8Array(length);
      const r = await src.read(buf, 0, length, position);
      expect(r.bytesRead).toBe(length);
      expect(Buffer.from(buf).equals(Buffer.from(data.subarray(position, position + length)))).toBe(true);
    };
    // kept: a small read loaded [1000, 1000 + 64 KiB); the payload after the header starts inside it
    const kept = new RoundTrips(blob, 'kept');
    await read(kept, 1000, 30);
    expect(kept.bytesFetched).toBe(65536);
    await read(kept, 1100, 200_000);
    expect(kept.bytesFetched).toBe(1100 + 200_000 - 1000);
    // loading: the window is still on its way when the payload read comes; both go at once
    const loading = new RoundTrips(blob, 'loading');
    loading.prefetch([5000]);
    await read(loading, 5040, 300_000);
    expect(loading.bytesFetched).toBe(5040 + 300_000 - 5000);
    // a window that fails to load: the read loads that part itself, the bytes are still right
    class Failing extends RoundTrips {
      protected override async load(from: number, to: number): Promise<Uint8Array> {
        if (from === 9000) throw new Error('gone');
        return super.load(from, to);
      }
    }
    const failing = new Failing(blob, 'failing');
    failing.prefetch([9000]);
    await read(failing, 9010, 100_000);
    expect(failing.bytesFetched).toBe(100_000);
  });
});
