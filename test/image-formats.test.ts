/**
 * Images as users have them, encoded here with sharp, through the shipped packages: the same picture
 * in other formats, bit depths, colour profiles and EXIF orientations gives the same detections and
 * text; animated and multi-page files give their first frame; transparent pixels become the
 * documented background; damaged files fail with their code and the next input runs.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp, { type Sharp } from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inputFromBytes } from '../runner/inputs/load.js';
import { resolveBudget } from '../runner/pipeline/budget.js';
import { decodeHere } from '../runner/pipeline/decode-sharp.js';
import { Runner } from '../runner/runner.js';
import type { IoSpec } from '../spec/schema.js';
import { xpkgAsync } from './helpers/cli.js';
import { codeOf } from './helpers/errors.js';
import { tempDir } from './helpers/source.js';

const TRUST = ['fixtures/keys/test.pub'];
const SHAPES = 'fixtures/detector/eval/001.png';
const PAGE = 'fixtures/images/example.png';
const budget = resolveBudget();
const imageSpec = { name: 'image', type: 'image' } as IoSpec;

type Box = { label: string; box: number[]; score: number };
let detector: Runner;
let ocr: Runner;

const boxes = async (image: Buffer): Promise<Box[]> => (await detector.run({ image })).outputs.boxes as Box[];
const text = async (image: Buffer): Promise<string[]> =>
  ((await ocr.run({ image })).outputs.lines as { text: string }[]).map((l) => l.text);
const decoded = async (image: Buffer, channels: 1 | 3 = 3, background = [255]) =>
  decodeHere(image, channels, background, budget);

/** Largest difference between two decodes' bytes. */
function maxDiff(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Pairs boxes by label and centre; every box of `a` has one in `b` within `px` on each side. */
function sameBoxes(a: Box[], b: Box[], px: number): void {
  expect(b.length).toBe(a.length);
  const left = [...b];
  for (const x of a) {
    const i = left.findIndex((y) => y.label === x.label && y.box.every((v, k) => Math.abs(v - x.box[k]) <= px));
    expect(i, `${x.label} ${x.box}`).toBeGreaterThanOrEqual(0);
    left.splice(i, 1);
  }
}

/**
 * The stored pixels whose display under EXIF orientation `o` is the upright picture: the inverse
 * of `o`'s transform (2, 4, 5, 7 are their own inverse; 6 and 8 are each other's), on raw pixels so
 * sharp's fixed operation order cannot reorder a rotate and a flip.
 */
async function storedFor(o: number, upright: Buffer): Promise<Buffer> {
  const raw = async (s: Sharp) => {
    const { data, info } = await s.raw().toBuffer({ resolveWithObject: true });
    return sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels as 3 } });
  };
  const s = sharp(upright);
  const step: Record<number, () => Promise<Sharp>> = {
    1: async () => s,
    2: async () => s.flop(),
    3: async () => s.rotate(180),
    4: async () => s.flip(),
    5: async () => (await raw(s.rotate(90))).flop(), // transpose
    6: async () => s.rotate(-90),
    7: async () => (await raw(s.rotate(-90))).flop(), // transverse
    8: async () => s.rotate(90),
  };
  return (await raw(await step[o]())).png().toBuffer();
}

beforeAll(async () => {
  detector = await Runner.open('fixtures/dist/detector.xpkg', { trust: TRUST });
  ocr = await Runner.open('fixtures/dist/paddleocr-v4.xpkg', { trust: TRUST });
});
afterAll(async () => {
  await detector?.close();
  await ocr?.close();
});

describe('the same picture in other encodings', () => {
  it('PNG, lossless WebP, lossless AVIF, 16-bit PNG, palette PNG: identical pixels and boxes; JPEG within 3 px', async () => {
    const png = await sharp(SHAPES).png().toBuffer();
    const base = await boxes(png);
    expect(base.length).toBeGreaterThan(2);
    const exact = {
      webp: await sharp(png).webp({ lossless: true }).toBuffer(),
      avif: await sharp(png).avif({ lossless: true }).toBuffer(),
      png16: await sharp(png).toColourspace('rgb16').png().toBuffer(),
      tiff16: await sharp(png).toColourspace('rgb16').tiff({ compression: 'lzw' }).toBuffer(),
    };
    for (const [name, bytes] of Object.entries(exact)) {
      expect(maxDiff((await decoded(bytes)).data, (await decoded(png)).data), name).toBe(0);
      expect(await boxes(bytes), name).toEqual(base);
    }
    for (const jpeg of [
      await sharp(png).jpeg({ quality: 92 }).toBuffer(),
      await sharp(png).jpeg({ quality: 92, progressive: true }).toBuffer(),
    ])
      sameBoxes(base, await boxes(jpeg), 3);
  });

  it('a 16-bit PNG or TIFF with an sRGB or Display P3 profile decodes as its 8-bit twin (converted to sRGB)', async () => {
    // sharp's working space for 16-bit RGB is P3: without the fix these came out desaturated (the
    // sRGB-tagged 16-bit PNG of a red gave 219,152,159 where its 8-bit twin gives 227,142,157).
    const colour = { width: 8, height: 8, channels: 4 as const, background: { r: 200, g: 30, b: 60, alpha: 0.5 } };
    for (const profile of ['srgb', 'p3']) {
      const eight = await sharp({ create: colour }).withIccProfile(profile).png().toBuffer();
      const sixteen = [
        await sharp({ create: colour }).withIccProfile(profile).toColourspace('rgb16').png().toBuffer(),
        await sharp({ create: colour })
          .withIccProfile(profile)
          .toColourspace('rgb16')
          .tiff({ compression: 'lzw' })
          .toBuffer(),
      ];
      expect((await sharp(sixteen[0]).metadata()).hasProfile).toBe(true);
      for (const channels of [3, 1] as const)
        for (const s of sixteen)
          expect(
            maxDiff((await decoded(s, channels)).data, (await decoded(eight, channels)).data),
            `${profile} ${channels}`,
          ).toBeLessThanOrEqual(1);
    }
    // The same photo-like picture as a 16-bit sRGB-tagged PNG: the detector's boxes within a pixel.
    const png16 = await sharp(SHAPES).withIccProfile('srgb').toColourspace('rgb16').png().toBuffer();
    sameBoxes(await boxes(await sharp(SHAPES).png().toBuffer()), await boxes(png16), 1);
  });

  it('a Display P3 JPEG and a CMYK JPEG are converted to sRGB (README: converted to sRGB)', async () => {
    const colour = { width: 8, height: 8, channels: 3 as const, background: { r: 200, g: 30, b: 60 } };
    const p3 = await sharp({ create: colour }).withIccProfile('p3').jpeg({ quality: 100 }).toBuffer();
    const stored = await sharp(p3, { ignoreIcc: true }).raw().toBuffer();
    expect(maxDiff(stored.subarray(0, 3), Buffer.from([200, 30, 60]))).toBeGreaterThan(10);
    expect(maxDiff((await decoded(p3)).data.subarray(0, 3), Buffer.from([200, 30, 60]))).toBeLessThanOrEqual(2);
    const cmyk = await sharp({ create: colour }).toColourspace('cmyk').jpeg({ quality: 100 }).toBuffer();
    expect((await sharp(cmyk).metadata()).space).toBe('cmyk');
    const rgb = await decoded(cmyk);
    expect(rgb.channels).toBe(3);
    expect(rgb.data[0]).toBeGreaterThan(150); // still a red
  });

  it('greyscale, grey+alpha and palette PNGs with tRNS flatten onto the background as documented', async () => {
    const grey = { width: 4, height: 4, channels: 4 as const, background: { r: 100, g: 100, b: 100, alpha: 0.5 } };
    const ga = await sharp({ create: grey }).toColourspace('b-w').png().toBuffer();
    expect((await sharp(ga).metadata()).channels).toBe(2);
    expect(Array.from((await decoded(ga)).data.subarray(0, 3))).toEqual([177, 177, 177]); // 100 half over white
    expect((await decoded(ga, 1, [0])).data[0]).toBe(50); // half over black
    const clear = { width: 4, height: 4, channels: 4 as const, background: { r: 255, g: 0, b: 0, alpha: 0 } };
    for (const bytes of [
      await sharp({ create: clear }).png().toBuffer(),
      await sharp({ create: clear }).png({ palette: true }).toBuffer(),
      await sharp({ create: clear }).webp({ lossless: true }).toBuffer(),
    ]) {
      // a transparent pixel is the background (default white), whatever colour it stores
      expect(Array.from((await decoded(bytes)).data.subarray(0, 3))).toEqual([255, 255, 255]);
      expect(Array.from((await decoded(bytes, 3, [0, 128, 255])).data.subarray(0, 3))).toEqual([0, 128, 255]);
    }
  });
});

describe('orientation, frames and sizes', () => {
  it('EXIF orientations 1–8 (JPEG, PNG, WebP): the same boxes, in the upright frame', async () => {
    const upright = await sharp(SHAPES).extract({ left: 0, top: 0, width: 320, height: 256 }).png().toBuffer();
    const base = await boxes(upright);
    expect(base.length).toBeGreaterThan(1);
    for (let o = 1; o <= 8; o++) {
      const stored = await storedFor(o, upright);
      for (const enc of ['png', 'webp', 'jpeg'] as const) {
        const s = sharp(stored).withMetadata({ orientation: o });
        const bytes = await (enc === 'jpeg'
          ? s.jpeg({ quality: 95 })
          : enc === 'webp'
            ? s.webp({ lossless: true })
            : s.png()
        ).toBuffer();
        const img = await decoded(bytes);
        expect([img.width, img.height], `${o} ${enc}`).toEqual([320, 256]);
        if (enc === 'jpeg') sameBoxes(base, await boxes(bytes), 3);
        else expect(await boxes(bytes), `${o} ${enc}`).toEqual(base);
      }
    }
  });

  it('a rotated photo of a page reads as the upright one (EXIF 6 and 8)', async () => {
    const upright = await text(await sharp(PAGE).png().toBuffer());
    for (const o of [6, 8]) {
      const bytes = await sharp(await storedFor(o, await sharp(PAGE).png().toBuffer()))
        .withMetadata({ orientation: o })
        .jpeg({ quality: 95 })
        .toBuffer();
      expect(await text(bytes), String(o)).toEqual(upright);
    }
  });

  it('animated GIF and WebP and a multi-page TIFF give their first frame', async () => {
    const red = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#ff0000' } })
      .raw()
      .toBuffer();
    const blue = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#0000ff' } })
      .raw()
      .toBuffer();
    const frames = () =>
      sharp(Buffer.concat([red, blue]), { raw: { width: 8, height: 16, channels: 3, pageHeight: 8 } });
    for (const bytes of [
      await frames()
        .gif({ loop: 0, delay: [100, 100] })
        .toBuffer(),
      await frames()
        .webp({ lossless: true, loop: 0, delay: [100, 100] })
        .toBuffer(),
      await frames().tiff().toBuffer(),
    ]) {
      expect((await sharp(bytes).metadata()).pages).toBe(2);
      const img = await decoded(bytes);
      expect([img.width, img.height]).toEqual([8, 8]);
      expect(img.data[0]).toBeGreaterThan(240);
      expect(img.data[2]).toBeLessThan(15);
    }
  });

  it('1×1, 1×5000 and 5000×1 images run and find nothing', async () => {
    for (const [width, height] of [
      [1, 1],
      [1, 5000],
      [5000, 1],
    ]) {
      const bytes = await sharp({ create: { width, height, channels: 3, background: '#808080' } })
        .png()
        .toBuffer();
      expect(await boxes(bytes)).toEqual([]);
      expect(await text(bytes)).toEqual([]);
    }
  });
});

describe('damaged files', () => {
  it('a file cut short is E_RUN_INPUT (damaged) from the loader and the decoder alike, for every format', async () => {
    const src = await sharp(SHAPES).png().toBuffer();
    const encoded = {
      png: src,
      jpeg: await sharp(src).jpeg().toBuffer(),
      webp: await sharp(src).webp().toBuffer(),
      gif: await sharp(src).gif().toBuffer(),
      tiff: await sharp(src).tiff().toBuffer(),
      avif: await sharp(src).avif().toBuffer(),
    };
    for (const [name, bytes] of Object.entries(encoded))
      for (const keep of [0.05, 0.5, 0.97]) {
        const cut = bytes.subarray(0, Math.floor(bytes.length * keep));
        // the loader (xpkg run) either refuses it as damaged or passes it to the decode step, which does
        const loaded = await inputFromBytes(imageSpec, cut, `x.${name}`).then(
          () => null,
          (e) => [e.code, e.detail?.reason],
        );
        if (loaded) expect(loaded, `${name} ${keep}`).toEqual(['E_RUN_INPUT', 'damaged']);
        expect(await codeOf(decoded(cut)), `${name} ${keep}`).toBe('E_RUN_INPUT');
      }
    // bytes of no image format are still E_RUN_INPUT_FORMAT
    expect(await codeOf(inputFromBytes(imageSpec, Buffer.from('not an image at all'), 'x.png'))).toBe(
      'E_RUN_INPUT_FORMAT',
    );
  });

  it('an image of a format sharp does not decode is E_RUN_INPUT_FORMAT, reason unsupported, alike from the loader (xpkg run) and the decode step (the daemon)', async () => {
    // a whole 2x2 24-bit BMP, as Windows writes it
    const bmp = Buffer.alloc(70);
    bmp.write('BM', 0, 'latin1');
    bmp.writeUInt32LE(70, 2);
    bmp.writeUInt32LE(54, 10);
    bmp.writeUInt32LE(40, 14);
    bmp.writeInt32LE(2, 18);
    bmp.writeInt32LE(2, 22);
    bmp.writeUInt16LE(1, 26);
    bmp.writeUInt16LE(24, 28);
    bmp.fill(0x80, 54);
    const starts: [string, Buffer][] = [
      ['BMP', bmp],
      ['ICO', Buffer.from([0, 0, 1, 0, 1, 0, 16, 16, 0, 0, 1, 0, 32, 0])],
      ['PSD', Buffer.concat([Buffer.from('8BPS\0\x01', 'latin1'), Buffer.alloc(40)])],
      ['JPEG 2000', Buffer.concat([Buffer.from('\0\0\0\x0cjP  \r\n\x87\n', 'latin1'), Buffer.alloc(40)])],
      ['JPEG XL', Buffer.concat([Buffer.from([0xff, 0x0a]), Buffer.alloc(40)])],
      ['QOI', Buffer.concat([Buffer.from('qoif', 'latin1'), Buffer.alloc(40)])],
    ];
    const outcome = (p: Promise<unknown>) =>
      p.then(
        () => null,
        (e) => [e.code, e.detail?.reason, e.detail?.format],
      );
    for (const [format, bytes] of starts) {
      const want = ['E_RUN_INPUT_FORMAT', 'unsupported', format];
      expect([format, await outcome(inputFromBytes(imageSpec, bytes, 'x.img'))]).toEqual([format, want]);
      expect([format, await outcome(decoded(bytes))]).toEqual([format, want]);
    }
    // no image: the same code from both
    const text = Buffer.from('not an image at all');
    expect(await outcome(inputFromBytes(imageSpec, text, 'x.png'))).toEqual(['E_RUN_INPUT_FORMAT', 'image', undefined]);
    expect(await outcome(decoded(text))).toEqual(['E_RUN_INPUT_FORMAT', 'image', undefined]);
  });

  it('xpkg run over a folder: cut WebP and GIF fail with E_RUN_INPUT, the images after them run', async () => {
    const dir = join(tempDir('xpkg-formats-'), 'in');
    mkdirSync(dir);
    const src = await sharp(SHAPES).png().toBuffer();
    const webp = await sharp(src).webp().toBuffer();
    const gif = await sharp(src).gif().toBuffer();
    writeFileSync(join(dir, 'a.webp'), webp.subarray(0, webp.length >> 1));
    writeFileSync(join(dir, 'b.png'), src);
    writeFileSync(join(dir, 'c.gif'), gif.subarray(0, 100));
    writeFileSync(join(dir, 'd.webp'), webp);
    const r = await xpkgAsync(['run', 'fixtures/dist/detector.xpkg', '--trust', TRUST[0], '-i', dir, '--json']);
    expect(r.lines.map((l) => l.error?.code ?? 'ok')).toEqual(['E_RUN_INPUT', 'ok', 'E_RUN_INPUT', 'ok']);
    expect(r.status).toBe(30);
  });
});
