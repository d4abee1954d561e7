/**
 * PaddleOCR v4 end to end on rendered pages with known text (fixtures/images/render.ts): varied
 * fonts, sizes, colours, noise, a large page, a small line, two columns, rotated and upside-down
 * lines. Accuracy is 1 − CER over the lines in reading order.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { charAccuracy, expectedLines, type PageSpec, pages, renderPng, renderRaw } from '../fixtures/images/render.js';
import { prepare } from '../fixtures/paddleocr-v4/build.js';
import { setNativeBackend } from '../native/index.js';
import { type LocalContext, openLocalContext, runPipeline, type TextLine } from '../runner/pipeline/index.js';

let dir: string;
let ctx: LocalContext;
const corpus = pages();
const byName = (n: string) => corpus.find((p) => p.name === n)!;
const images = new Map<string, Buffer>();
const results = new Map<string, TextLine[]>();

async function ocr(image: unknown): Promise<TextLine[]> {
  return (await runPipeline(ctx, { image })).outputs.lines as TextLine[];
}

async function page(p: PageSpec): Promise<TextLine[]> {
  let r = results.get(p.name);
  if (!r) {
    let png = images.get(p.name);
    if (!png) images.set(p.name, (png = await renderPng(p)));
    r = await ocr(png);
    results.set(p.name, r);
  }
  return r;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xpkg-ocr-'));
  await prepare(dir);
  ctx = await openLocalContext(dir);
});
afterAll(async () => {
  await ctx?.release();
  await rm(dir, { recursive: true, force: true });
});

describe('paddleocr-v4 on rendered text', () => {
  it.each(corpus.filter((p) => p.clean).map((p) => [p.name, p] as const))(
    '%s: character accuracy ≥ 0.95',
    async (_name, p) => {
      const lines = await page(p);
      const acc = charAccuracy(
        lines.map((l) => l.text),
        expectedLines(p),
      );
      expect(acc, JSON.stringify(lines.map((l) => l.text))).toBeGreaterThanOrEqual(0.95);
      for (const l of lines) {
        expect(l.score).toBeGreaterThanOrEqual(0.5);
        expect(l.score).toBeLessThanOrEqual(1);
        for (const [x, y] of l.box) {
          expect(x).toBeGreaterThanOrEqual(0);
          expect(x).toBeLessThanOrEqual(p.width);
          expect(y).toBeGreaterThanOrEqual(0);
          expect(y).toBeLessThanOrEqual(p.height);
        }
      }
    },
  );

  it('noisy page: accuracy ≥ 0.9', async () => {
    const p = byName('noisy');
    expect(
      charAccuracy(
        (await page(p)).map((l) => l.text),
        expectedLines(p),
      ),
    ).toBeGreaterThanOrEqual(0.9);
  });

  it('two columns are read one after the other, the heading first', async () => {
    const p = byName('two-column');
    const texts = (await page(p)).map((l) => l.text);
    expect(texts).toHaveLength(expectedLines(p).length);
    const at = (s: string) => texts.findIndex((t) => charAccuracy([t], [s]) > 0.8);
    const want = expectedLines(p).map(at);
    expect(want).toEqual(want.map((_, i) => i));
  });

  it("line boxes start at the text's own top-left corner, rotated lines included", async () => {
    const [line] = await page(byName('paragraph'));
    expect(line.box[0][0]).toBeLessThan(line.box[1][0]); // left to right
    expect(line.box[0][1]).toBeLessThan(line.box[3][1]); // top above bottom
    const [down] = await page(byName('rotated-90')); // reads top to bottom: its top-left is at the image's top-right
    expect(down.box[0][0]).toBeGreaterThan(down.box[3][0]);
    expect(down.box[0][1]).toBeLessThan(down.box[1][1]);
    const [up] = await page(byName('rotated-270')); // reads bottom to top
    expect(up.box[0][0]).toBeLessThan(up.box[3][0]);
    expect(up.box[0][1]).toBeGreaterThan(up.box[1][1]);
    const [flipped] = await page(byName('upside-down'));
    expect(flipped.box[0][0]).toBeGreaterThan(flipped.box[1][0]);
    expect(flipped.box[0][1]).toBeGreaterThan(flipped.box[3][1]);
  });

  it('gives identical results run to run, and for a path, a Buffer and raw pixels', async () => {
    for (const name of ['paragraph', 'two-column', 'upside-down']) {
      const first = await page(byName(name));
      expect(await ocr(images.get(name))).toEqual(first);
    }
    const p = byName('paragraph');
    expect(await ocr(await renderRaw(p))).toEqual(await page(p));
    const file = join(dir, 'paragraph.png');
    await (await import('node:fs/promises')).writeFile(file, images.get('paragraph')!);
    expect(await ocr(file)).toEqual(await page(p));
  });

  it('a blank image has no lines; a 1×1 image has no lines', async () => {
    expect(await ocr({ data: new Uint8Array(320 * 200 * 3).fill(255), width: 320, height: 200, channels: 3 })).toEqual(
      [],
    );
    expect(await ocr({ data: new Uint8Array(3), width: 1, height: 1, channels: 3 })).toEqual([]);
  });

  it('reads the shipped example image (fixtures/images/example.png)', async () => {
    const lines = await ocr(await readFile(new URL('../fixtures/images/example.png', import.meta.url)));
    expect(
      charAccuracy(
        lines.map((l) => l.text),
        expectedLines(byName('paragraph')),
      ),
    ).toBeGreaterThanOrEqual(0.95);
  });

  it('the portable TypeScript kernels read the same lines as the native ones', async () => {
    for (const name of ['paragraph', 'upside-down', 'receipt']) {
      const native = await page(byName(name));
      setNativeBackend('portable');
      let portable: TextLine[];
      try {
        portable = await ocr(images.get(name));
      } finally {
        setNativeBackend('auto');
      }
      expect(portable.map((l) => l.text)).toEqual(native.map((l) => l.text));
      portable.forEach((l, i) => {
        // float rounding differs between the backends (≤ 1e-5 after normalisation): same pixels ±1, scores ±1e-3
        expect(Math.abs(l.score - native[i].score)).toBeLessThanOrEqual(1e-3);
        l.box.forEach(([x, y], k) => {
          expect(Math.abs(x - native[i].box[k][0])).toBeLessThanOrEqual(1);
          expect(Math.abs(y - native[i].box[k][1])).toBeLessThanOrEqual(1);
        });
      });
    }
  });

  it('recognition as one padded batch (crop-batch batch: true) reads as well as one call per line', async () => {
    const staging = join(dir, 'batched');
    await prepare(staging);
    const m = JSON.parse(await readFile(join(staging, 'xpkg.json'), 'utf8'));
    const step = m.pipeline.steps.find((s: { id?: string }) => s.id === 'rec-crop');
    expect(step.params.batch).toBe(false);
    step.params.batch = true;
    await writeFile(join(staging, 'xpkg.json'), JSON.stringify(m));
    const batched = await openLocalContext(staging);
    try {
      for (const name of ['two-column', 'upside-down']) {
        const lines = (await runPipeline(batched, { image: images.get(name) ?? (await renderPng(byName(name))) }))
          .outputs.lines as TextLine[];
        expect(
          charAccuracy(
            lines.map((l) => l.text),
            expectedLines(byName(name)),
          ),
        ).toBeGreaterThanOrEqual(0.95);
      }
    } finally {
      await batched.release();
    }
  });
});
