/**
 * One read of each payload byte when a model load and a full verification overlap (the drop page
 * verifies while the models load; pack/shared-reads.ts), on the shipped OCR package through a
 * source that counts what it reads: the load's verified reads are what the verification checks,
 * a damaged model still fails with its code on both paths, and a load that stops short for
 * another reason leaves the file to be checked by the verification itself.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileSource } from '../pack/file-source.js';
import { PackageReader } from '../pack/reader.js';
import type { ByteSource } from '../pack/source.js';
import { flipByteIn, tempDir } from './helpers/source.js';

const OCR = join(import.meta.dirname, '..', 'fixtures', 'dist', 'paddleocr-v4.xpkg');
const REC = 'models/rec/ch_PP-OCRv4_rec_infer.onnx';
const USED = [
  'models/det/ch_PP-OCRv4_det_infer.onnx',
  'models/cls/ch_ppocr_mobile_v2.0_cls_infer.onnx',
  REC,
  'assets/ppocr_keys_v1.txt',
];
/** Headers, central directory, manifest and signatures read on open. */
const OVERHEAD = 256 * 1024;

/** A file source without a hasher (so every byte hashed is read through `read`), counting bytes. */
async function counted(path: string): Promise<{ source: ByteSource; bytes: () => number }> {
  const file = await FileSource.open(path);
  let n = 0;
  const source: ByteSource = {
    name: file.name,
    size: file.size,
    read: async (buffer, offset, length, position) => {
      const r = await file.read(buffer, offset, length, position);
      n += r.bytesRead;
      return r;
    },
    close: () => file.close(),
  };
  return { source, bytes: () => n };
}

/** What a model load does: each block of the file, verified, into one buffer. */
async function load(reader: PackageReader, path: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  await reader.streamVerified(path, (chunk) => void parts.push(Buffer.from(chunk)));
  return Buffer.concat(parts);
}

describe('verification and model loads share one read', () => {
  let dir: string;
  let flipped: string;
  beforeAll(async () => {
    dir = tempDir('xpkg-shared-');
    flipped = join(dir, 'flipped.xpkg');
    await flipByteIn(OCR, REC, flipped);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('reading ahead, verifying and loading at once read each byte once, and the loads get the verified bytes', async () => {
    const { source, bytes } = await counted(OCR);
    await using reader = await PackageReader.fromSource(source);
    const opened = bytes();
    for (const p of USED) reader.prefetch(p);
    const [report, ...loaded] = await Promise.all([reader.verifyIntegrity(), ...USED.map((p) => load(reader, p))]);
    expect(report.files).toBe(reader.manifest.files.length);
    expect(bytes() - opened).toBe(reader.manifest.files.reduce((n, f) => n + f.size, 0));
    expect(bytes()).toBeLessThanOrEqual(reader.fileSize + OVERHEAD);
    // The same bytes as a fresh reader's verified read of each file.
    await using fresh = await PackageReader.open(OCR);
    for (const [k, p] of USED.entries()) expect(loaded[k].equals(await fresh.readVerified(p))).toBe(true);
  });

  it('a load started before the verification (no read ahead) is not read again by it', async () => {
    const { source, bytes } = await counted(OCR);
    await using reader = await PackageReader.fromSource(source);
    const opened = bytes();
    const loading = load(reader, REC);
    await reader.verifyIntegrity();
    await loading;
    expect(bytes() - opened).toBe(reader.manifest.files.reduce((n, f) => n + f.size, 0));
  });

  it('a model with one byte flipped: the verification and the load both fail with E_DIGEST_MISMATCH', async () => {
    const { source } = await counted(flipped);
    await using reader = await PackageReader.fromSource(source);
    reader.prefetch(REC);
    const [verified, loaded] = await Promise.allSettled([reader.verifyIntegrity(), load(reader, REC)]);
    expect(verified.status === 'rejected' && verified.reason.code).toBe('E_DIGEST_MISMATCH');
    expect(loaded.status === 'rejected' && loaded.reason.code).toBe('E_DIGEST_MISMATCH');
  });

  it('a load that gives up for another reason leaves the file to the verification, which reads and checks it', async () => {
    for (const [path, outcome] of [
      [OCR, 'ok'],
      [flipped, 'E_DIGEST_MISMATCH'],
    ] as const) {
      const { source, bytes } = await counted(path);
      await using reader = await PackageReader.fromSource(source);
      const size = reader.manifest.files.find((f) => f.path === REC)!.size;
      const gaveUp = await reader
        .streamVerified(REC, () => {
          throw new Error('the runtime went away');
        })
        .catch((e: Error) => e.message);
      expect(gaveUp).toBe('the runtime went away');
      const before = bytes();
      const got = await reader.verifyIntegrity().then(
        () => 'ok',
        (e: { code: string }) => e.code,
      );
      expect(got).toBe(outcome);
      if (outcome === 'ok') expect(bytes() - before).toBe(reader.manifest.files.reduce((n, f) => n + f.size, 0));
      else expect(bytes() - before).toBeGreaterThanOrEqual(size >> 1);
    }
  });
});
