/**
 * A package whose ZIP64 records are all needed: a 4 GiB + 4 KiB asset of zeros (a hole in a sparse
 * file, so nothing is written), then a small asset and an empty model past the 4 GiB mark. With
 * `trueDigests` the big entry's CRC and SHA-256 digests are the real ones (every reader can check the
 * whole file, at the cost of hashing 4 GiB); without, they are placeholders (structure only, fast).
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import * as Z from '../../pack/zip.js';
import { canonicalBytes } from '../../spec/canonical.js';
import { BLOCK_SIZE, MANIFEST_PATH } from '../../spec/limits.js';
import { fileRecord } from '../../tools/vectors/craft.js';
import { demoSource } from '../archive-helpers.js';

export interface SparseZip64 {
  big: number;
  small: Buffer;
  manifestBytes: Buffer;
  layouts: Z.EntryLayout[];
}

/** sha256, block digests and CRC-32 of `size` zero bytes. */
function zerosDigests(size: number): { sha256: string; blocks: string[]; crc: number } {
  const zeros = Buffer.alloc(BLOCK_SIZE);
  const full = createHash('sha256').update(zeros).digest('hex');
  const whole = createHash('sha256');
  let crc = 0;
  for (let left = size; left > 0; left -= BLOCK_SIZE) {
    const part = zeros.subarray(0, Math.min(BLOCK_SIZE, left));
    whole.update(part);
    crc = crc32(part, crc);
  }
  const blocks = Array.from({ length: Math.ceil(size / BLOCK_SIZE) }, (_, i) =>
    i < Math.floor(size / BLOCK_SIZE)
      ? full
      : createHash('sha256')
          .update(zeros.subarray(0, size % BLOCK_SIZE))
          .digest('hex'),
  );
  return { sha256: whole.digest('hex'), blocks, crc };
}

export async function writeSparseZip64(path: string, opts: { trueDigests: boolean }): Promise<SparseZip64> {
  const big = 2 ** 32 + 4096;
  const fake = '0'.repeat(64);
  const d = opts.trueDigests
    ? zerosDigests(big)
    : { sha256: fake, blocks: Array(Math.ceil(big / BLOCK_SIZE)).fill(fake), crc: 0 };
  const small = Buffer.from('after the big one\n');
  const manifest = {
    ...demoSource({
      models: [
        { id: 'net', variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['models/net.onnx'] }] },
      ],
      pipeline: { steps: [] },
      assets: [
        { id: 'big', path: 'assets/big.bin', kind: 'other' },
        { id: 'small', path: 'assets/small.txt', kind: 'other' },
      ],
    }),
    format: 'xpkg/1',
    blockSize: BLOCK_SIZE,
    files: [
      { path: 'assets/big.bin', size: big, sha256: d.sha256, blocks: d.blocks },
      fileRecord('assets/small.txt', small),
      fileRecord('models/net.onnx', Buffer.alloc(0)),
    ],
  };
  const manifestBytes = canonicalBytes(manifest);
  const layouts: Z.EntryLayout[] = [];
  const fh = await open(path, 'w');
  try {
    let cursor = 0;
    const put = async (name: string, size: number, data: Buffer | null, crc: number) => {
      const e: Z.EntryLayout = {
        name: Buffer.from(name),
        method: 0,
        crc32: crc,
        size,
        compressedSize: size,
        localHeaderOffset: cursor,
        padding: 0,
      };
      const h = Z.encodeLocalHeader(e, Z.DEFAULT_DOS_TIME);
      await fh.write(h, 0, h.length, cursor);
      if (data) await fh.write(data, 0, data.length, cursor + h.length);
      cursor += h.length + size;
      layouts.push(e);
    };
    await put(MANIFEST_PATH, manifestBytes.length, manifestBytes, crc32(manifestBytes));
    await put('assets/big.bin', big, null, d.crc);
    await put('assets/small.txt', small.length, small, crc32(small));
    await put('models/net.onnx', 0, null, 0);
    const cd = Buffer.concat(layouts.map((e) => Z.encodeCentralHeader(e, Z.DEFAULT_DOS_TIME)));
    const tail = Buffer.concat([cd, Z.encodeEnd(layouts.length, cursor, cd.length)]);
    await fh.write(tail, 0, tail.length, cursor);
  } finally {
    await fh.close();
  }
  return { big, small, manifestBytes, layouts };
}
