/**
 * Round trips: pack → read (every file byte-equal), pack twice (identical), SOURCE_DATE_EPOCH,
 * unpack → pack (identical package), multi-block digests, and ZIP64 (encoders directly, plus a
 * sparse > 4 GiB archive that the reader opens structurally).
 */
import { createHash } from 'node:crypto';
import { open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { packFolder } from '../pack/pack.js';
import { PackageReader } from '../pack/reader.js';
import { unpackPackage } from '../pack/unpack.js';
import * as Z from '../pack/zip.js';
import { FormatError, UsageError } from '../spec/errors.js';
import { BLOCK_SIZE, MANIFEST_PATH } from '../spec/limits.js';
import { validateManifestSource } from '../spec/manifest.js';
import { fileRecord } from '../tools/vectors/craft.js';
import { demoSource, outcomeOfFile, packToBuffer, type SourceFiles, tempDir, writeSource } from './archive-helpers.js';
import { writeSparseZip64 } from './helpers/zip64.js';

/** Deterministic pseudo-random bytes (SHA-256 in counter mode). */
function bytes(n: number, seed: string): Buffer {
  const out = Buffer.alloc(n);
  for (let o = 0, i = 0; o < n; o += 32, i++) createHash('sha256').update(`${seed}:${i}`).digest().copy(out, o);
  return out;
}

const FILES: SourceFiles = {
  'models/net.onnx': bytes(150_000, 'model'),
  'models/extra weights.bin': bytes(3000, 'weights'),
  'assets/labels.txt': 'a\nb\nc\n',
  'assets/café/naïve.txt': 'unicode path, NFC\n',
  'assets/empty.txt': '',
  'scripts/post.js': 'export function post(x) { return x; }\n',
};
const SOURCE = demoSource({
  description: 'round trip',
  models: [
    {
      id: 'net',
      variants: [
        {
          id: 'cpu',
          runtime: 'onnxruntime',
          precision: 'fp32',
          files: ['models/net.onnx', 'models/extra weights.bin'],
        },
      ],
    },
  ],
  include: ['assets/café/naïve.txt', 'assets/empty.txt'],
  metadata: { homepage: 'https://example.invalid' },
});
let srcDir: string;
beforeAll(async () => {
  srcDir = await writeSource(FILES, SOURCE);
});

describe('pack → read', () => {
  it('every file reads back byte-equal and verifies; model files are aligned', async () => {
    const out = join(await tempDir(), 'a.xpkg');
    const res = await packFolder(srcDir, out, { sourceDateEpoch: '1700000000' });
    await using r = await PackageReader.open(out);
    expect(r.id).toBe(res.id);
    expect(r.manifest.files.map((f) => f.path)).toEqual(
      Object.keys(FILES).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
    );
    for (const [p, data] of Object.entries(FILES))
      expect((await r.readVerified(p)).equals(Buffer.from(data)), p).toBe(true);
    for (const p of ['models/net.onnx', 'models/extra weights.bin']) expect(r.entry(p)!.dataOffset % 65536, p).toBe(0);
    expect(r.entries[0].name).toBe(MANIFEST_PATH);
    expect(r.entries.every((e) => e.method === 0)).toBe(true);
    const report = await r.verifyIntegrity();
    expect(report).toMatchObject({
      id: res.id,
      files: 6,
      bytes: Object.values(FILES).reduce((n, d) => n + Buffer.byteLength(d), 0),
    });
  });

  it('packing twice gives identical bytes', async () => {
    const [a, b] = [
      await packToBuffer(srcDir, { sourceDateEpoch: '1700000000' }),
      await packToBuffer(srcDir, { sourceDateEpoch: '1700000000' }),
    ];
    expect(a.equals(b)).toBe(true);
  });
});

describe('SOURCE_DATE_EPOCH', () => {
  const saved = process.env.SOURCE_DATE_EPOCH;
  afterEach(() => {
    if (saved === undefined) delete process.env.SOURCE_DATE_EPOCH;
    else process.env.SOURCE_DATE_EPOCH = saved;
  });

  it('changes only the timestamp fields, never the id', async () => {
    const a = await packToBuffer(srcDir, { sourceDateEpoch: '1700000000' });
    const b = await packToBuffer(srcDir, { sourceDateEpoch: '1500000001' });
    expect(a.length).toBe(b.length);
    const stamps = new Set<number>();
    await using r = await PackageReader.open(await writeTo(a));
    for (const e of r.entries) for (let k = 10; k < 14; k++) stamps.add(e.localHeaderOffset + k);
    for (let p = r.centralDirectoryOffset; p < a.length - Z.END_SIZE; ) {
      for (let k = 12; k < 16; k++) stamps.add(p + k);
      p += Z.CENTRAL_SIZE + a.readUInt16LE(p + 28) + a.readUInt16LE(p + 30);
    }
    const differing = [...a.keys()].filter((i) => a[i] !== b[i]);
    expect(differing.length).toBeGreaterThan(0);
    expect(differing.filter((i) => !stamps.has(i))).toEqual([]);
    const idOf = async (buf: Buffer) => ((await outcomeOfFile(await writeTo(buf))) as { id: string }).id;
    expect(await idOf(a)).toBe(await idOf(b));
  });

  it('is read from the environment, defaults to 1980-01-01, and is validated', async () => {
    process.env.SOURCE_DATE_EPOCH = '1700000000';
    const fromEnv = await packToBuffer(srcDir);
    expect(fromEnv.equals(await packToBuffer(srcDir, { sourceDateEpoch: '1700000000' }))).toBe(true);
    delete process.env.SOURCE_DATE_EPOCH;
    const dflt = await packToBuffer(srcDir);
    expect([dflt.readUInt16LE(10), dflt.readUInt16LE(12)]).toEqual([Z.DEFAULT_DOS_TIME.time, Z.DEFAULT_DOS_TIME.date]);
    await expect(packToBuffer(srcDir, { sourceDateEpoch: '17e8' })).rejects.toSatisfy(
      (e) => e instanceof UsageError && e.code === 'E_USAGE',
    );
  });

  it('maps to DOS time in UTC with 2-second resolution, clamped to 1980–2107', () => {
    // 2023-11-14T22:13:20Z
    expect(Z.dosTimestamp('1700000000')).toEqual({
      time: (22 << 11) | (13 << 5) | 10,
      date: (43 << 9) | (11 << 5) | 14,
    });
    expect(Z.dosTimestamp('1700000001')).toEqual(Z.dosTimestamp('1700000000'));
    expect(Z.dosTimestamp('0')).toEqual(Z.DEFAULT_DOS_TIME);
    expect(Z.dosTimestamp('99999999999')).toEqual({
      time: (23 << 11) | (59 << 5) | 29,
      date: (127 << 9) | (12 << 5) | 31,
    });
    expect(Z.dosTimestamp('')).toEqual(Z.DEFAULT_DOS_TIME);
    for (const bad of ['-1', '1.5', ' 1', 'abc']) expect(() => Z.dosTimestamp(bad)).toThrow(RangeError);
  });
});

let seq = 0;
async function writeTo(buf: Buffer): Promise<string> {
  const p = join(await tempDir(), `w${seq++}.xpkg`);
  await writeFile(p, buf);
  return p;
}

describe('unpack → pack', () => {
  it('reproduces the identical package, with xpkg.json in source form', async () => {
    const first = await writeTo(await packToBuffer(srcDir, { sourceDateEpoch: '1234567890' }));
    const dest = join(await tempDir(), 'unpacked');
    const res = await unpackPackage(first, dest);
    const src = JSON.parse(await readFile(join(dest, 'xpkg.json'), 'utf8'));
    expect(() => validateManifestSource(src)).not.toThrow();
    expect(src).not.toHaveProperty('files');
    expect(src).not.toHaveProperty('blockSize');
    for (const [p, data] of Object.entries(FILES))
      expect((await readFile(join(dest, p))).equals(Buffer.from(data)), p).toBe(true);
    const again = await packToBuffer(dest, { sourceDateEpoch: '1234567890' });
    expect(again.equals(await readFile(first))).toBe(true);
    expect(res.id).toBe(((await outcomeOfFile(first)) as { id: string }).id);
  });
});

describe('multi-block digests', () => {
  const big = bytes(2 * BLOCK_SIZE + 1000, 'big');
  let pkgPath: string;
  beforeAll(async () => {
    const dir = await writeSource(
      {
        'models/big.onnx': big,
        'models/one.bin': bytes(BLOCK_SIZE, 'one'),
        'models/two.bin': bytes(BLOCK_SIZE + 1, 'two'),
        'scripts/post.js': 'x',
        'assets/labels.txt': 'l',
      },
      demoSource({
        models: [
          {
            id: 'net',
            variants: [
              {
                id: 'cpu',
                runtime: 'onnxruntime',
                precision: 'fp32',
                files: ['models/big.onnx', 'models/one.bin', 'models/two.bin'],
              },
            ],
          },
        ],
      }),
    );
    pkgPath = join(await tempDir(), 'big.xpkg');
    await packFolder(dir, pkgPath);
  });

  it('records one digest per 4 MiB block and verifies them', async () => {
    await using r = await PackageReader.open(pkgPath);
    const rec = (p: string) => r.manifest.files.find((f) => f.path === p)!;
    expect(rec('models/big.onnx')).toEqual(fileRecord('models/big.onnx', big));
    expect(rec('models/big.onnx').blocks).toHaveLength(3);
    expect(rec('models/one.bin').blocks).toEqual([rec('models/one.bin').sha256]);
    expect(rec('models/two.bin').blocks).toHaveLength(2);
    expect(rec('models/two.bin').blocks[1]).toBe(
      createHash('sha256')
        .update(bytes(BLOCK_SIZE + 1, 'two').subarray(BLOCK_SIZE))
        .digest('hex'),
    );
    let last = 0;
    await r.verifyIntegrity({ onProgress: (done, total) => void (last = done === total ? done : last) });
    expect(last).toBe(big.length + 2 * BLOCK_SIZE + 1 + 2);
    expect((await r.readVerified('models/big.onnx')).equals(big)).toBe(true);
  });

  it('a changed byte in any block fails verification', async () => {
    const orig = await readFile(pkgPath);
    let dataOffset: number;
    {
      await using r = await PackageReader.open(pkgPath);
      dataOffset = r.entry('models/big.onnx')!.dataOffset;
    }
    for (const at of [0, BLOCK_SIZE + 17, 2 * BLOCK_SIZE + 999]) {
      const b = Buffer.from(orig);
      b[dataOffset + at] ^= 4;
      const o = await outcomeOfFile(await writeTo(b));
      expect(o, `byte ${at}`).toEqual({ error: 'E_DIGEST_MISMATCH', cls: 'FormatError' });
    }
  });
});

describe('ZIP64', () => {
  const ts = Z.DEFAULT_DOS_TIME;
  it('encoders switch to ZIP64 fields exactly at 0xFFFFFFFF', () => {
    expect(Z.needsZip64Sizes({ size: Z.U32_MAX - 1, compressedSize: 0 })).toBe(false);
    expect(Z.needsZip64Sizes({ size: 0, compressedSize: Z.U32_MAX })).toBe(true);
    expect(Z.needsZip64Offset({ localHeaderOffset: Z.U32_MAX })).toBe(true);
    const e: Z.EntryLayout = {
      name: Buffer.from('a'),
      method: 0,
      crc32: 0x12345678,
      size: 2 ** 33 + 5,
      compressedSize: 2 ** 33 + 5,
      localHeaderOffset: 2 ** 34,
      padding: 8,
    };
    const local = Z.encodeLocalHeader(e, ts);
    expect(local.length).toBe(Z.localHeaderLength(e));
    expect([local.readUInt16LE(4), local.readUInt32LE(18), local.readUInt32LE(22), local.readUInt16LE(28)]).toEqual([
      45,
      Z.U32_MAX,
      Z.U32_MAX,
      28,
    ]);
    expect([
      local.readUInt16LE(31),
      local.readUInt16LE(33),
      Number(local.readBigUInt64LE(35)),
      Number(local.readBigUInt64LE(43)),
    ]).toEqual([Z.ZIP64_EXTRA_ID, 16, e.size, e.compressedSize]);
    expect([local.readUInt16LE(51), local.readUInt16LE(53)]).toEqual([0x7078, 4]);
    const central = Z.encodeCentralHeader(e, ts);
    expect([
      central.readUInt16LE(6),
      central.readUInt32LE(42),
      central.readUInt16LE(30),
      central.readUInt16LE(49),
    ]).toEqual([45, Z.U32_MAX, 28, 24]);
    expect([
      Number(central.readBigUInt64LE(51)),
      Number(central.readBigUInt64LE(59)),
      Number(central.readBigUInt64LE(67)),
    ]).toEqual([e.size, e.compressedSize, e.localHeaderOffset]);
    const end = Z.encodeEnd(3, 2 ** 32 + 7, 200);
    expect(end.length).toBe(Z.END64_SIZE + Z.LOCATOR64_SIZE + Z.END_SIZE);
    expect([
      Number(end.readBigUInt64LE(32)),
      Number(end.readBigUInt64LE(40)),
      Number(end.readBigUInt64LE(48)),
      Number(end.readBigUInt64LE(Z.END64_SIZE + 8)),
    ]).toEqual([3, 200, 2 ** 32 + 7, 2 ** 32 + 207]);
    expect(Z.encodeEnd(3, Z.U32_MAX - 1, 10).length).toBe(Z.END_SIZE);
    // Alignment accounts for the 20-byte ZIP64 record in front of the padding.
    const pad = Z.alignmentPadding(100, Buffer.from('m'), 2 ** 32)!;
    expect((100 + Z.LOCAL_SIZE + 1 + 20 + pad) % 65536).toBe(0);
  });

  it('the reader opens a sparse > 4 GiB package whose ZIP64 records are all legitimately needed', async () => {
    const path = join(await tempDir(), 'zip64.xpkg');
    // Placeholder digests: only the structure is read here (test/helpers/zip64.ts).
    const { big: BIG, small, manifestBytes: mBytes, layouts } = await writeSparseZip64(path, { trueDigests: false });
    try {
      expect(Z.needsZip64Offset(layouts[2])).toBe(true);
      {
        await using r = await PackageReader.open(path);
        expect(r.entries.map((e) => [e.name, e.size])).toEqual([
          [MANIFEST_PATH, mBytes.length],
          ['assets/big.bin', BIG],
          ['assets/small.txt', small.length],
          ['models/net.onnx', 0],
        ]);
        expect(r.entry('models/net.onnx')!.localHeaderOffset).toBeGreaterThan(Z.U32_MAX);
        expect((await r.readVerified('assets/small.txt')).equals(small)).toBe(true);
      }
      // The same file with one ZIP64 size changed in the big entry's local header is refused.
      const f = await open(path, 'r+');
      const at = layouts[1].localHeaderOffset + Z.LOCAL_SIZE + layouts[1].name.length + 4;
      await f.write(Buffer.from([0x01]), 0, 1, at);
      await f.close();
      await expect(PackageReader.open(path)).rejects.toSatisfy(
        (e) => e instanceof FormatError && e.code === 'E_ARCHIVE_SIZE_MISMATCH',
      );
    } finally {
      await rm(path, { force: true });
    }
  });
});
