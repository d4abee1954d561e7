/**
 * Page layout of OCR output: reading order in the page's own frame (tilted, turned, upside-down
 * pages), table rows read and joined row by row while two text columns still read column by
 * column, and full-width ASCII forms made ASCII in Latin lines only. Geometry on synthetic quads
 * (runner/ops/order.ts), then PaddleOCR v4 end to end on small rendered pages
 * (fixtures/images/render.ts layoutPages).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  articlePage,
  charAccuracy,
  expectedLines,
  layoutPages,
  type PageSpec,
  receiptTable,
  renderPng,
} from '../fixtures/images/render.js';
import { prepare as prepareScripted } from '../fixtures/ocr-script/build.js';
import { prepare } from '../fixtures/paddleocr-v4/build.js';
import { latinAscii } from '../runner/ops/ctc.js';
import { pageAngle, readingLayout } from '../runner/ops/order.js';
import { type LocalContext, openLocalContext, runPipeline, type TextLine } from '../runner/pipeline/index.js';

const deg = Math.PI / 180;
/** Quad of a w × h box whose text's top-left is at (x, y) in the page, the page turned by `a` degrees about (cx, cy). */
function quad(x: number, y: number, w: number, h: number, a = 0, cx = 400, cy = 300): number[] {
  const c = Math.cos(a * deg),
    s = Math.sin(a * deg);
  return [
    [x, y],
    [x + w, y],
    [x + w, y + h],
    [x, y + h],
  ].flatMap(([px, py]) => [cx + (px - cx) * c - (py - cy) * s, cy + (px - cx) * s + (py - cy) * c]);
}
const layoutOf = (boxes: number[][], direction: 'axial' | 'oriented' = 'axial') =>
  readingLayout(boxes.flat(), boxes.length, { direction });
/** A fixed shuffle, so the order must come from the geometry, not the input. */
const shuffle = <T>(xs: T[]): [T[], number[]] => {
  const perm = xs.map((_, i) => i).sort((a, b) => ((a * 7919) % 13) - ((b * 7919) % 13) || a - b);
  return [perm.map((i) => xs[i]), perm];
};

describe('page direction and reading order on synthetic boxes', () => {
  const paragraph = (a: number) =>
    Array.from({ length: 6 }, (_, i) => quad(100, 100 + i * 40, 420 - (i % 3) * 60, 30, a));

  it('estimates the text direction of a tilted page, robust to stray boxes', () => {
    for (let a = -40; a <= 40; a += 5) {
      const boxes = paragraph(a);
      expect(pageAngle(boxes.flat(), boxes.length) / deg).toBeCloseTo(a, 6);
      // Two vertical labels and a square stamp don't pull it.
      const stray = [
        ...boxes,
        quad(700, 100, 200, 30, a + 90),
        quad(60, 80, 150, 28, a + 75),
        quad(600, 500, 40, 40, a + 30),
      ];
      expect(Math.abs(pageAngle(stray.flat(), stray.length) / deg - a)).toBeLessThan(1e-6);
    }
    expect(pageAngle([], 0)).toBe(0);
    expect(pageAngle(quad(0, 0, 30, 30), 1)).toBe(0);
    // Axial: a half turn is the same direction; oriented (corner 0 → 1): it is not.
    expect(pageAngle(paragraph(180).flat(), 6) / deg).toBeCloseTo(0, 6);
    expect(Math.abs(pageAngle(paragraph(180).flat(), 6, 'oriented') / deg)).toBeCloseTo(180, 6);
    expect(pageAngle(paragraph(-90).flat(), 6, 'oriented') / deg).toBeCloseTo(-90, 6);
  });

  it('reads a tilted or turned paragraph top to bottom in its own frame', () => {
    for (const a of [-40, -30, -20, -15, -10, 0, 10, 15, 20, 30, 40]) {
      const [boxes, perm] = shuffle(paragraph(a));
      expect(
        Array.from(layoutOf(boxes).order, (k) => perm[k]),
        `${a}°`,
      ).toEqual([0, 1, 2, 3, 4, 5]);
    }
    for (const a of [90, 180, 270, 200, -160]) {
      const [boxes, perm] = shuffle(paragraph(a));
      expect(
        Array.from(layoutOf(boxes, 'oriented').order, (k) => perm[k]),
        `${a}°`,
      ).toEqual([0, 1, 2, 3, 4, 5]);
    }
  });

  it('reads a table row by row, its cells joined into one line; wide ragged cells included', () => {
    for (const a of [0, 15, -25]) {
      // Label | wide description | right-aligned amount: every column wider than a narrow one.
      const label = [90, 220, 130, 60, 160],
        text = [150, 270, 200, 120, 240],
        amount = [60, 85, 110, 135, 160];
      const rows = [0, 1, 2, 3, 4].flatMap((i) => [
        quad(40, 80 + i * 36, label[i], 28, a),
        quad(400, 80 + i * 36, text[i], 28, a),
        quad(860 - amount[i], 80 + i * 36, amount[i], 28, a),
      ]);
      const [boxes, perm] = shuffle(rows);
      const { order, line } = layoutOf(boxes);
      expect(
        Array.from(order, (k) => perm[k]),
        `${a}°`,
      ).toEqual(rows.map((_, i) => i));
      expect(Array.from(line)).toEqual(rows.map((_, i) => Math.floor(i / 3)));
    }
  });

  it('still reads two text columns column by column, aligned baselines or not', () => {
    for (const a of [0, -12, 20]) {
      const heading = quad(150, 30, 500, 40, a);
      const left = Array.from({ length: 5 }, (_, i) => quad(40, 90 + i * 34, 300 - (i === 4 ? 120 : i * 8), 30, a));
      const right = Array.from({ length: 5 }, (_, i) =>
        quad(420, 90 + i * 34 + (a === 20 ? 13 : 0), 310 - (i % 2) * 15, 30, a),
      );
      const all = [heading, ...left, ...right];
      const [boxes, perm] = shuffle(all);
      const { order, line } = layoutOf(boxes);
      expect(
        Array.from(order, (k) => perm[k]),
        `${a}°`,
      ).toEqual(all.map((_, i) => i));
      expect(Array.from(line)).toEqual(all.map((_, i) => i));
    }
  });
});

describe('latinAscii', () => {
  it('turns full-width ASCII forms into ASCII in Latin lines', () => {
    expect(latinAscii('（ok）')).toBe('(ok)');
    expect(latinAscii('a，b')).toBe('a,b');
    expect(latinAscii('Status （ok）， a， b； c： d！')).toBe('Status (ok), a, b; c: d!');
    expect(latinAscii('Total\u3000ＥＵＲ：１２．５０')).toBe('Total EUR:12.50');
    expect(latinAscii('１，２，３')).toBe('1,2,3'); // no letters, no CJK
    expect(latinAscii('Ｆｕｌｌ～ｗｉｄｔｈ')).toBe('Full~width'); // U+FF5E, the last of the range
    expect(latinAscii('Ünïcödé ﬁne, café')).toBe('Ünïcödé ﬁne, café'); // nothing full-width: untouched, no NFKC
  });

  it('leaves CJK lines their own punctuation', () => {
    expect(latinAscii('价格（元），合计：12')).toBe('价格（元），合计：12');
    expect(latinAscii('東京タワー（とうきょう）！')).toBe('東京タワー（とうきょう）！');
    expect(latinAscii('한국어（테스트）')).toBe('한국어（테스트）');
    expect(latinAscii('OCR识别结果：好')).toBe('OCR识别结果：好'); // as many CJK as Latin: CJK
    expect(latinAscii('\u3000中文\u3000')).toBe('\u3000中文\u3000');
  });
});

describe('paddleocr-v4 reading order on rendered pages', () => {
  let dir: string;
  let ctx: LocalContext;
  const corpus = layoutPages();
  const byName = (n: string) =>
    corpus.find((p) => p.name === n) ?? [articlePage(), receiptTable()].find((p) => p.name === n)!;
  const ocr = async (p: PageSpec, c = ctx) =>
    (await runPipeline(c, { image: await renderPng(p) })).outputs.lines as TextLine[];
  /** Index of the output line each expected line was read as (−1: not found). */
  const positions = (texts: string[], want: string[]) =>
    want.map((s) => texts.findIndex((t) => charAccuracy([t], [s]) > 0.8));

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'xpkg-ocr-layout-'));
    await prepare(dir);
    ctx = await openLocalContext(dir);
  });
  afterAll(async () => {
    await ctx?.release();
    await rm(dir, { recursive: true, force: true });
  });

  it.each(corpus.filter((p) => p.name.startsWith('article-')).map((p) => [p.name, p] as const))(
    "%s: lines in the page's order",
    async (_n, p) => {
      const texts = (await ocr(p)).map((l) => l.text);
      const want = expectedLines(p);
      expect(texts, JSON.stringify(texts)).toHaveLength(want.length);
      expect(positions(texts, want)).toEqual(want.map((_, i) => i));
      expect(charAccuracy(texts, want)).toBeGreaterThanOrEqual(0.97);
    },
  );

  /** Receipt rows: the heading, then each label with its amount as one line. */
  const rowsOf = (p: PageSpec) => {
    const [heading, ...cells] = expectedLines(p);
    return [heading, ...cells.flatMap((c, i) => (i % 2 ? [] : [`${c} ${cells[i + 1]}`]))];
  };

  it.each(['receipt-table', 'receipt-table-15deg'])(
    '%s: reads row by row, one line per row, its box around both cells',
    async (name) => {
      const p = byName(name);
      const lines = await ocr(p);
      const want = rowsOf(p);
      expect(lines.map((l) => l.text)).toEqual(want);
      // A joined row's box spans label and amount: as wide as the page's text, upright in its frame.
      const row = lines[1].box;
      const width = Math.hypot(row[1][0] - row[0][0], row[1][1] - row[0][1]);
      expect(width).toBeGreaterThan(0.85 * (456 - 24));
      expect(width).toBeLessThan(480);
      const tilt = Math.atan2(row[1][1] - row[0][1], row[1][0] - row[0][0]) / deg;
      expect(Math.abs(tilt - (p.page?.rotate ?? 0))).toBeLessThan(2);
    },
  );

  it('a tilted two-column article still reads column by column, the heading first', async () => {
    const p = byName('two-column-m12deg');
    const texts = (await ocr(p)).map((l) => l.text);
    const want = expectedLines(p);
    expect(texts, JSON.stringify(texts)).toHaveLength(want.length);
    expect(positions(texts, want)).toEqual(want.map((_, i) => i));
  });

  it('full-width punctuation the model reads in Latin lines comes out ASCII (text-lines latinAscii, on in the package)', async () => {
    // DejaVu Sans Mono at 24 px: the recogniser reads these commas as U+FF0C.
    const p: PageSpec = {
      name: 'punct',
      width: 420,
      height: 100,
      clean: true,
      lines: [
        { text: 'Status (ok), a, b; c: d!', x: 20, y: 40, size: 24, font: 'DejaVu Sans Mono' },
        { text: '1, 2, 3', x: 20, y: 84, size: 24, font: 'DejaVu Sans Mono' },
      ],
    };
    const staging = join(dir, 'raw');
    await prepare(staging);
    const m = JSON.parse(await readFile(join(staging, 'xpkg.json'), 'utf8'));
    const step = m.pipeline.steps.find((s: { op: string }) => s.op === 'text-lines');
    expect(step.params.latinAscii).toBe(true);
    step.params.latinAscii = false;
    await writeFile(join(staging, 'xpkg.json'), JSON.stringify(m));
    const raw = await openLocalContext(staging);
    let rawTexts: string[];
    try {
      rawTexts = (await ocr(p, raw)).map((l) => l.text);
    } finally {
      await raw.release();
    }
    expect(rawTexts.join('\n')).toMatch(/[\uff01-\uff5e]/);
    const texts = (await ocr(p)).map((l) => l.text);
    expect(texts).toEqual(rawTexts.map(latinAscii));
    expect(texts.join('\n')).not.toMatch(/[\uff01-\uff5e\u3000]/);
    expect(texts[0]).toBe('Status (ok), a, b; c: d!');
  });

  it('the ocr-script package (CTC decoding as a script) keeps the same text-lines stage: ordered, rows joined, latinAscii', async () => {
    const staging = join(dir, 'scripted');
    await prepareScripted(staging);
    const m = JSON.parse(await readFile(join(staging, 'xpkg.json'), 'utf8'));
    const step = m.pipeline.steps.find((s: { op: string }) => s.op === 'text-lines');
    expect(step.params).toMatchObject({ order: true, joinRows: true, latinAscii: true });
  });
});
