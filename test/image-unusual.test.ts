/**
 * Images of kinds the other image tests do not make, built here byte by byte (PNG chunks, an ICC
 * profile, an HEIF container): a 16-bit grey image with a colour profile, an iPhone's HEIC photo,
 * a JPEG wider than libjpeg reads, a picture above sharp's own 268 MP limit with --max-pixels
 * raised. Through the decoder, `--annotate`, `xpkg run` and the daemon's raw-image route.
 */
import { copyFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { annotate } from '../runner/annotate.js';
import { resolveBudget } from '../runner/pipeline/budget.js';
import { decodeHere } from '../runner/pipeline/decode-sharp.js';
import type { Manifest } from '../spec/schema.js';
import { xpkgAsync } from './helpers/cli.js';
import { codeOf } from './helpers/errors.js';
import { http, type TestServer, testServer } from './helpers/serve.js';
import { tempDir } from './helpers/source.js';
import { heic } from './helpers/sweep-images.js';

const TRUST = 'fixtures/keys/test.pub';
const DETECTOR = 'fixtures/dist/detector.xpkg';
const GOOD = 'fixtures/detector/eval/001.png';
const budget = resolveBudget();
const noOutputs = { outputs: [] } as unknown as Manifest;

function chunk(type: string, data: Buffer): Buffer {
  const b = Buffer.alloc(12 + data.length);
  b.writeUInt32BE(data.length, 0);
  b.write(type, 4, 'latin1');
  data.copy(b, 8);
  b.writeUInt32BE(crc32(b.subarray(4, 8 + data.length)), 8 + data.length);
  return b;
}

/** A PNG of `rows` (each with its filter byte), colour type `ctype`, with an iCCP chunk when `icc` is given. */
function png(width: number, height: number, depth: number, ctype: number, rows: Buffer, icc?: Buffer): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = depth;
  ihdr[9] = ctype;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    ...(icc ? [chunk('iCCP', Buffer.concat([Buffer.from('grey\0\0', 'latin1'), deflateSync(icc)]))] : []),
    chunk('IDAT', deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** An ICC v2 grey display profile of one gamma (as Photoshop's "Gray Gamma 1.0"): desc, wtpt, kTRC. */
function greyProfile(gamma: number): Buffer {
  const s15 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeInt32BE(Math.round(v * 65536));
    return b;
  };
  const d50 = Buffer.concat([s15(0.9642), s15(1), s15(0.8249)]);
  const tag = (type: string, body: Buffer) => {
    const b = Buffer.concat([Buffer.from(type, 'latin1'), Buffer.alloc(4), body]);
    return Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
  };
  const text = 'grey';
  const desc = Buffer.alloc(4 + text.length + 1 + 8 + 3 + 67);
  desc.writeUInt32BE(text.length + 1, 0);
  desc.write(text, 4, 'latin1');
  const curve = Buffer.alloc(6);
  curve.writeUInt32BE(1, 0);
  curve.writeUInt16BE(Math.round(gamma * 256), 4);
  const tags: [string, Buffer][] = [
    ['desc', tag('desc', desc)],
    ['wtpt', tag('XYZ ', d50)],
    ['kTRC', tag('curv', curve)],
  ];
  const table = Buffer.alloc(4 + 12 * tags.length);
  table.writeUInt32BE(tags.length, 0);
  let offset = 128 + table.length;
  tags.forEach(([sig, body], i) => {
    table.write(sig, 4 + 12 * i, 'latin1');
    table.writeUInt32BE(offset, 8 + 12 * i);
    table.writeUInt32BE(body.length, 12 + 12 * i);
    offset += body.length;
  });
  const head = Buffer.alloc(128);
  head.writeUInt32BE(offset, 0);
  head.writeUInt32BE(0x02100000, 8);
  head.write('mntrGRAYXYZ ', 12, 'latin1');
  head.write('acsp', 36, 'latin1');
  d50.copy(head, 68);
  return Buffer.concat([head, table, ...tags.map(([, b]) => b)]);
}

/** Largest difference between two images' bytes. */
function maxDiff(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('a 16-bit grey image with a colour profile', () => {
  it('decodes, and is annotated, as its 8-bit twin: the profile applied (grey and grey+alpha)', async () => {
    const profile = greyProfile(1.0);
    const levels = [0, 85, 170, 255];
    const twins = [
      // grey: 8-bit and 16-bit samples of the same levels
      [Buffer.from([0, ...levels]), Buffer.concat([Buffer.from([0]), ...levels.map((v) => u16be(v * 257))]), 0],
      // grey+alpha, opaque
      [
        Buffer.from([0, ...levels.flatMap((v) => [v, 255])]),
        Buffer.concat([Buffer.from([0]), ...levels.map((v) => Buffer.concat([u16be(v * 257), u16be(65535)]))]),
        4,
      ],
    ] as const;
    for (const [rows8, rows16, ctype] of twins) {
      const eight = png(4, 1, 8, ctype, rows8, profile);
      const sixteen = png(4, 1, 16, ctype, rows16, profile);
      expect((await sharp(sixteen).metadata()).space).toBe('grey16');
      for (const channels of [3, 1] as const) {
        const want = await decodeHere(eight, channels, [255], budget);
        // the profile matters: a gamma-1.0 grey of 85 shows as 156 in sRGB
        expect(want.data[channels]).toBeGreaterThan(140);
        // without the fix the 16-bit image kept its stored levels (85): its profile was skipped
        expect(
          maxDiff((await decodeHere(sixteen, channels, [255], budget)).data, want.data),
          `${ctype}`,
        ).toBeLessThanOrEqual(1);
      }
      const pixels = async (p: Buffer) => (await sharp(p).removeAlpha().raw().toBuffer()) as Uint8Array;
      expect(
        maxDiff(
          await pixels(await annotate(sixteen, noOutputs, {})),
          await pixels(await annotate(eight, noOutputs, {})),
        ),
      ).toBeLessThanOrEqual(1);
    }
  });
});

function u16be(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
}

describe('formats sharp reads the header of but cannot decode', () => {
  it('an HEIC photo is E_RUN_INPUT_FORMAT, reason unsupported (library, xpkg run: exit 30); the next input runs', async () => {
    const photo = heic();
    expect((await sharp(photo).metadata()).compression).toBe('hevc');
    const e = await decodeHere(photo, 3, [255], budget).catch((x) => x);
    expect([e.code, e.detail?.reason]).toEqual(['E_RUN_INPUT_FORMAT', 'unsupported']);
    const dir = tempDir('xpkg-heic-');
    await writeFile(join(dir, 'a.heic'), photo);
    await copyFile(GOOD, join(dir, 'b.png'));
    const r = await xpkgAsync(['run', DETECTOR, '--trust', TRUST, '-i', dir, '--json']);
    expect(r.lines.map((l) => l.error?.code ?? 'ok')).toEqual(['E_RUN_INPUT_FORMAT', 'ok']);
    expect(r.lines[0].error.detail.reason).toBe('unsupported');
    expect(r.status).toBe(30);
  });

  it("a JPEG wider than libjpeg's 65500 is E_RUN_INPUT at once, summarised on one line", async () => {
    const seg = (marker: number, data: Buffer) => {
      const b = Buffer.alloc(4);
      b.writeUInt16BE(0xff00 | marker, 0);
      b.writeUInt16BE(data.length + 2, 2);
      return Buffer.concat([b, data]);
    };
    const sof = Buffer.from([8, 0xff, 0xff, 0xff, 0xff, 1, 1, 0x11, 0]);
    const jpeg = Buffer.concat([
      Buffer.from([0xff, 0xd8]),
      seg(0xe0, Buffer.from('JFIF\0\x01\x01\0\0\x01\0\x01\0\0', 'latin1')),
      seg(0xdb, Buffer.concat([Buffer.from([0]), Buffer.alloc(64, 1)])),
      seg(0xc0, sof),
      seg(0xc4, Buffer.from([0, 1, ...Array(15).fill(0), 0, 0x10, 1, ...Array(15).fill(0), 0])),
      seg(0xda, Buffer.from([1, 1, 0, 0, 63, 0])),
      Buffer.alloc(64),
      Buffer.from([0xff, 0xd9]),
    ]);
    const t0 = performance.now();
    const e = await decodeHere(jpeg, 3, [255], budget).catch((x) => x);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(e.code).toBe('E_RUN_INPUT');
    // libvips gave the same line three times, one of them behind sharp's prefix
    expect(e.message).not.toContain('\n');
  });
});

describe("above sharp's own 268 MP limit", () => {
  // 16384 × 16384 of 1-bit grey: 32 KB of PNG, 268 435 456 pixels, one more row than sharp's limit allows
  const side = 16384;
  const big = () => png(side, side, 1, 0, Buffer.alloc((side / 8 + 1) * side));

  it('annotate refuses a picture above its budget with E_RUN_INPUT, from the header', async () => {
    const t0 = performance.now();
    expect(await codeOf(annotate(big(), noOutputs, {}, { maxPixels: 200_000_000 }))).toBe('E_RUN_INPUT');
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('raw pixels of another channel count (as the daemon takes UINT8 [H, W, C]) decode within a raised budget', async () => {
    const raw = { data: new Uint8Array(side * side * 2), width: side, height: side, channels: 2 as const };
    // was E_RUN_INPUT from sharp's own limit, though the budget allowed the image
    const img = await decodeHere(raw, 1, [255], resolveBudget({ maxPixels: 300_000_000 }));
    expect([img.width, img.height, img.data.length]).toEqual([side, side, side * side]);
    expect(await codeOf(decodeHere(raw, 1, [255], resolveBudget({ maxPixels: 200_000_000 })))).toBe('E_RUN_INPUT');
  });

  it('xpkg run --max-pixels 300000000 --annotate draws the picture the run took (was E_INTERNAL)', async () => {
    const dir = tempDir('xpkg-annotate-big-');
    const input = join(dir, 'big.png');
    const out = join(dir, 'big.annotated.png');
    await writeFile(input, big());
    const r = await xpkgAsync([
      'run',
      DETECTOR,
      '--trust',
      TRUST,
      '-i',
      input,
      '--max-pixels',
      '300000000',
      '--annotate',
      out,
      '--json',
    ]);
    expect(r.json?.error, r.stderr).toBeUndefined();
    expect(r.status).toBe(0);
    expect(r.json?.result.annotated).toBe(out);
    const m = await sharp(out, { limitInputPixels: false }).metadata();
    expect([m.width, m.height]).toEqual([side, side]);
  }, 120_000);
});

describe("the daemon's raw-image route", () => {
  let s: TestServer;
  beforeAll(async () => {
    const repo = tempDir('xpkg-unusual-repo-');
    await copyFile(DETECTOR, join(repo, 'detector.xpkg'));
    s = await testServer({ repo });
  });
  afterAll(async () => s?.close());

  it('answers an HEIC 400 E_RUN_INPUT_FORMAT, a 16-bit grey image with a profile 200, and the next image 200', async () => {
    const post = (body: Buffer, type = 'application/octet-stream') =>
      http(`${s.url}/xpkg/models/detector/run`, {
        method: 'POST',
        headers: { 'content-type': type },
        body: new Uint8Array(body),
      });
    const h = await post(heic(), 'image/heic');
    expect([h.status, h.body.error?.code, h.body.error?.detail?.reason]).toEqual([
      400,
      'E_RUN_INPUT_FORMAT',
      'unsupported',
    ]);
    const rows = Buffer.concat([Buffer.from([0]), ...[0, 85, 170, 255].map((v) => u16be(v * 257))]);
    const grey = await post(png(4, 1, 16, 0, rows, greyProfile(1.0)), 'image/png');
    expect([grey.status, grey.body.result?.outputs.boxes]).toEqual([200, []]);
    const good = await post(await sharp(GOOD).png().toBuffer(), 'image/png');
    expect(good.status).toBe(200);
    expect(good.body.result.outputs.boxes.length).toBeGreaterThan(0);
  });

  it('answers an image sent as a form (multipart, as curl -F; form-encoded, as curl -d) 415 E_SERVE_MEDIA_TYPE; the next image runs', async () => {
    const url = `${s.url}/xpkg/models/detector/run`;
    const image = await sharp(GOOD).png().toBuffer();
    const form = new FormData();
    form.append('file', new Blob([new Uint8Array(image)], { type: 'image/png' }), '001.png');
    const multipart = await http(url, { method: 'POST', body: form });
    expect([multipart.status, multipart.body.error?.code]).toEqual([415, 'E_SERVE_MEDIA_TYPE']);
    const encoded = await http(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new Uint8Array(image),
    });
    expect([encoded.status, encoded.body.error?.code]).toEqual([415, 'E_SERVE_MEDIA_TYPE']);
    const good = await http(url, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: new Uint8Array(image),
    });
    expect(good.status).toBe(200);
  });
});
