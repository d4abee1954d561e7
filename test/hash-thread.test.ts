/**
 * SHA-256 on another thread (platform/hash-thread.ts, served by the image decoder's worker): large
 * buffers move there and back with their digest, and the two reads that use it (a package's model
 * files, the cache of optimised models) still refuse a changed byte.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PackageReader } from '../pack/reader.js';
import { hashesServed, sha256Moving } from '../platform/hash-thread.js';
import { OrtModelCache } from '../runner/backends/ort-cache.js';
import { startImageDecoder } from '../runner/pipeline/image-decoder.js';
import { flipByteIn, tempDir } from './helpers/source.js';

const OCR = join(import.meta.dirname, '..', 'fixtures', 'dist', 'paddleocr-v4.xpkg');
const REC = 'models/rec/ch_PP-OCRv4_rec_infer.onnx';
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe("hashing on the image decoder's worker", () => {
  let dir: string;
  let flipped: string;
  beforeAll(async () => {
    expect(startImageDecoder()).toBe(true);
    // the worker says when it serves hashes (at its start, before sharp loads)
    for (let i = 0; i < 600 && !hashesServed(); i++) await new Promise((r) => setTimeout(r, 50));
    expect(hashesServed()).toBe(true);
    dir = tempDir('xpkg-hash-');
    flipped = join(dir, 'flipped.xpkg');
    await flipByteIn(OCR, REC, flipped);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('moves a large buffer there and back with its digest; small buffers and views are hashed in place', async () => {
    const big = randomBytes(3 << 20);
    const copy = Buffer.from(big);
    const { bytes, hex } = await sha256Moving(big);
    expect(big.byteLength).toBe(0); // moved: detached here meanwhile
    expect(bytes.equals(copy)).toBe(true);
    expect(hex).toBe(sha(copy));
    const small = randomBytes(1000);
    expect(await sha256Moving(small)).toEqual({ bytes: small, hex: sha(small) });
    const view = Buffer.from(copy).subarray(5, (2 << 20) + 5);
    const r = await sha256Moving(view);
    expect(r.bytes).toBe(view);
    expect(r.hex).toBe(sha(view));
  });

  it("a package's model file: the verified bytes are the file's, and a flipped byte is E_DIGEST_MISMATCH", async () => {
    await using good = await PackageReader.open(OCR);
    const bytes = await good.readVerified(REC);
    expect(sha(bytes)).toBe(good.manifest.files.find((f) => f.path === REC)!.sha256);
    await using bad = await PackageReader.open(flipped);
    await expect(bad.readVerified(REC)).rejects.toMatchObject({ code: 'E_DIGEST_MISMATCH' });
  });

  it('an optimised model in the cache: intact as stored, not intact with a byte changed', async () => {
    const cache = new OrtModelCache(join(dir, 'cache'));
    const key = cache.key({ runtime: 'test', model: sha(Buffer.from('m')), optimization: 'all', providers: ['cpu'] });
    const model = randomBytes(2 << 20);
    const temp = cache.prepare(key)!;
    await writeFile(temp, model);
    expect(await cache.commit(key, temp, true)).toBe(true);
    const hit = await cache.lookup(key);
    expect(hit?.intact).toBe(true);
    expect(hit?.bytes.equals(model)).toBe(true);
    const stored = join(cache.dir, `${key}.ort`);
    const changed = await readFile(stored);
    changed[changed.length >> 1] ^= 0x80;
    await writeFile(stored, changed);
    expect((await cache.lookup(key))?.intact).toBe(false);
  });
});
