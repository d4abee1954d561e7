/**
 * `xpkg run --annotate`: the written PNG has the input's size and differs from the input exactly
 * where the outputs are — pixels outside every box, quad and masked pixel are the input's, pixels
 * on box edges and under masks are changed; an input is never overwritten.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../spec/errors.js';
import { xpkgAsync } from './helpers/cli.js';

const TRUST = ['--trust', 'fixtures/keys/test.pub'];
let dir: string;

interface Pixels {
  data: Buffer;
  width: number;
  height: number;
  channels: number;
}
async function pixels(file: string): Promise<Pixels> {
  const { data, info } = await sharp(file).toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}
/** Whether pixel (x, y) differs in any of R, G, B. */
const differs = (a: Pixels, b: Pixels, x: number, y: number) =>
  [0, 1, 2].some((c) => a.data[(y * a.width + x) * a.channels + c] !== b.data[(y * b.width + x) * b.channels + c]);

/** Compares two images: every pixel for which `inside` is false must be unchanged; returns how many changed. */
function outsideUnchanged(a: Pixels, b: Pixels, inside: (x: number, y: number) => boolean): void {
  const bad: [number, number][] = [];
  for (let y = 0; y < a.height; y++)
    for (let x = 0; x < a.width; x++) if (!inside(x, y) && differs(a, b, x, y)) bad.push([x, y]);
  expect(bad.slice(0, 5)).toEqual([]);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'xpkg-annotate-'));
});

describe('--annotate', () => {
  it('detector: boxes — outside unchanged, every pixel along each box edge changed', async () => {
    const input = 'fixtures/detector/eval/002.png';
    const out = join(dir, 'det.png');
    const r = await xpkgAsync([
      'run',
      'fixtures/dist/detector.xpkg',
      ...TRUST,
      '-i',
      input,
      '--annotate',
      out,
      '--json',
    ]);
    expect(r.status).toBe(0);
    expect(r.lines[0].result.annotated).toBe(out);
    const boxes = r.lines[0].result.outputs.boxes.map((b: { box: number[] }) => b.box) as number[][];
    expect(boxes.length).toBeGreaterThan(2);
    const [a, b] = [await pixels(input), await pixels(out)];
    expect((await sharp(out).metadata()).format).toBe('png');
    expect([b.width, b.height]).toEqual([a.width, a.height]);
    // A pixel is "in" a box when its square touches the box.
    outsideUnchanged(a, b, (x, y) => boxes.some(([x1, y1, x2, y2]) => x + 1 > x1 && x < x2 && y + 1 > y1 && y < y2));
    for (const [x1, y1, x2, y2] of boxes) {
      const [l, t, r2, bt] = [Math.ceil(x1), Math.ceil(y1), Math.floor(x2) - 1, Math.floor(y2) - 1];
      const edge: [number, number][] = [];
      for (let x = l; x <= r2; x++) edge.push([x, t], [x, bt]);
      for (let y = t; y <= bt; y++) edge.push([l, y], [r2, y]);
      expect(edge.filter(([x, y]) => !differs(a, b, x, y))).toEqual([]);
    }
  });

  it('a 16-bit image with a colour profile is drawn on in the colours the run decoded (its 8-bit twin)', async () => {
    // sharp's 16-bit RGB path goes through Display P3: the picture came out desaturated
    const input = 'fixtures/detector/eval/002.png';
    const png16 = join(dir, 'det16.png');
    await sharp(input).withIccProfile('srgb').toColourspace('rgb16').png().toFile(png16);
    const out = join(dir, 'det16-annotated.png');
    const r = await xpkgAsync([
      'run',
      'fixtures/dist/detector.xpkg',
      ...TRUST,
      '-i',
      png16,
      '--annotate',
      out,
      '--json',
    ]);
    expect(r.status).toBe(0);
    const boxes = r.lines[0].result.outputs.boxes.map((b: { box: number[] }) => b.box) as number[][];
    const inBox = (x: number, y: number) =>
      boxes.some(([x1, y1, x2, y2]) => x + 1 > x1 && x < x2 && y + 1 > y1 && y < y2);
    const [a, b] = [await pixels(input), await pixels(out)];
    let worst = 0;
    for (let y = 0; y < a.height; y++)
      for (let x = 0; x < a.width; x++)
        if (!inBox(x, y))
          for (let c = 0; c < 3; c++) {
            const i = (y * a.width + x) * a.channels + c;
            worst = Math.max(worst, Math.abs(a.data[i] - b.data[(y * b.width + x) * b.channels + c]));
          }
    expect(worst).toBeLessThanOrEqual(1);
  });

  it('segmenter: the mask as a translucent overlay — exactly the labelled pixels change', async () => {
    const input = 'fixtures/segmenter/eval/003.png';
    const out = join(dir, 'seg.png');
    const r = await xpkgAsync([
      'run',
      'fixtures/dist/segmenter.xpkg',
      ...TRUST,
      '-i',
      input,
      '--annotate',
      out,
      '--json',
    ]);
    expect(r.status).toBe(0);
    const m = r.lines[0].result.outputs.mask;
    const labels = Buffer.from(m.data.data, 'base64');
    const [a, b] = [await pixels(input), await pixels(out)];
    expect([b.width, b.height]).toEqual([a.width, a.height]);
    let changed = 0,
      labelled = 0;
    for (let y = 0; y < a.height; y++) {
      for (let x = 0; x < a.width; x++) {
        const l = labels[y * m.width + x];
        if (l) labelled++;
        if (differs(a, b, x, y)) {
          changed++;
          expect(l).not.toBe(0);
        }
      }
    }
    expect(labelled).toBeGreaterThan(100);
    expect(changed).toBe(labelled);
  });

  it('paddleocr-v4: each line quad veiled with its text; outside the quads unchanged', async () => {
    const input = 'fixtures/images/example.png';
    const out = join(dir, 'ocr.png');
    const r = await xpkgAsync([
      'run',
      'fixtures/dist/paddleocr-v4.xpkg',
      ...TRUST,
      '-i',
      input,
      '--annotate',
      out,
      '--json',
    ]);
    expect(r.status).toBe(0);
    const quads = r.lines[0].result.outputs.lines.map((l: { box: number[][] }) => l.box) as number[][][];
    const [a, b] = [await pixels(input), await pixels(out)];
    expect([b.width, b.height]).toEqual([a.width, a.height]);
    const bbox = quads.map((q) => [
      Math.min(...q.map((p) => p[0])),
      Math.min(...q.map((p) => p[1])),
      Math.max(...q.map((p) => p[0])),
      Math.max(...q.map((p) => p[1])),
    ]);
    outsideUnchanged(a, b, (x, y) => bbox.some(([x1, y1, x2, y2]) => x + 1 > x1 && x < x2 && y + 1 > y1 && y < y2));
    // The outline: the middle of each quad's left edge, one pixel in.
    for (const [x1, y1, , y2] of bbox) expect(differs(a, b, Math.ceil(x1), Math.round((y1 + y2) / 2))).toBe(true);
  });

  it('many inputs into a folder: one picture per input, named after it (a clash numbered); no temporary files left', async () => {
    mkdirSync(join(dir, 'in'));
    for (const f of ['000.png', '001.png']) copyFileSync(join('fixtures/detector/eval', f), join(dir, 'in', f));
    copyFileSync('fixtures/detector/eval/002.png', join(dir, 'in', '000.jpg')); // same stem as 000.png
    const out = join(dir, 'pictures');
    const r = await xpkgAsync([
      'run',
      'fixtures/dist/detector.xpkg',
      ...TRUST,
      '-i',
      join(dir, 'in'),
      '--annotate',
      out,
      '--json',
    ]);
    expect(r.status).toBe(0);
    expect(r.lines.map((l) => [l.input, l.result.annotated])).toEqual([
      [join(dir, 'in', '000.jpg'), join(out, '000.annotated.png')],
      [join(dir, 'in', '000.png'), join(out, '000-2.annotated.png')],
      [join(dir, 'in', '001.png'), join(out, '001.annotated.png')],
    ]);
    expect(readdirSync(out).sort()).toEqual(['000-2.annotated.png', '000.annotated.png', '001.annotated.png']);
  });

  it('never overwrites an input (E_USAGE, the input unchanged); a package without an image input → E_USAGE', async () => {
    const input = join(dir, 'keep.png');
    copyFileSync('fixtures/detector/eval/004.png', input);
    const before = readFileSync(input);
    const r = await xpkgAsync([
      'run',
      'fixtures/dist/detector.xpkg',
      ...TRUST,
      '-i',
      input,
      '--annotate',
      input,
      '--json',
    ]);
    expect([r.lines[0].error?.code, r.status, r.lines[0].error?.detail?.input]).toEqual(['E_USAGE', EXIT.usage, input]);
    expect(readFileSync(input).equals(before)).toBe(true);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp'))).toEqual([]);
    const t = await xpkgAsync([
      'run',
      'fixtures/dist/multi-variant.xpkg',
      ...TRUST,
      '-i',
      'test/data/npy/f4-le-v1.npy',
      '--annotate',
      join(dir, 't.png'),
      '--json',
    ]);
    expect([t.lines[0].error?.code, t.lines[0].error?.detail?.inputs]).toEqual([
      'E_USAGE',
      [{ name: 'x', type: 'tensor' }],
    ]);
  });
});
