/**
 * Writes the GPU suite's test images as PNGs (the GPU machine may have no fonts to render text):
 *
 *   node dist-tools/bench/gpu/make-data.js <dir>
 *
 * ocr-*.png: the OCR test corpus (fixtures/images/render.ts) and a 1920×1080 page of 30 lines;
 * det-*.png: ten images of the detector's evaluation set and one 1920×1080 scene (eval/048.png, 8
 * shapes, scaled to 1080 × 1080 and centred on grey: all 8 are found through the letterbox).
 * Deterministic: the same bytes every time.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { type PageSpec, pages, renderPng, type TextSpec } from '../../fixtures/images/render.js';
import { rng } from '../../fixtures/random.js';

/** A 1080p screen of text: 30 lines of 8–14 words. */
export function page1080(): PageSpec {
  const words =
    'the quick brown fox jumps over lazy dog pack model runner verify signed variant kernel tensor device stream buffer'.split(
      ' ',
    );
  const r = rng(1080);
  const lines: TextSpec[] = [];
  for (let i = 0; i < 30; i++) {
    const n = 8 + Math.floor(r() * 7);
    const text = `${Array.from({ length: n }, () => words[Math.floor(r() * words.length)]).join(' ')} ${i + 1}.`;
    lines.push({ text, x: 60, y: 44 + i * 34, size: 24, font: i % 4 === 0 ? 'DejaVu Serif' : 'DejaVu Sans' });
  }
  return { name: 'page-1080p', width: 1920, height: 1080, lines, clean: true };
}

async function main(): Promise<void> {
  const dir = process.argv[2];
  if (!dir) throw new Error('usage: make-data.js <dir>');
  mkdirSync(dir, { recursive: true });
  const keep = new Set(['paragraph', 'fonts', 'colours', 'noisy', 'rotated-90', 'upside-down', 'large-page']);
  for (const p of [...pages().filter((p) => keep.has(p.name)), page1080()])
    writeFileSync(join(dir, `ocr-${p.name}.png`), await renderPng(p));
  for (let i = 0; i < 10; i++) {
    const n = String(i).padStart(3, '0');
    writeFileSync(join(dir, `det-eval-${n}.png`), await sharp(`fixtures/detector/eval/${n}.png`).png().toBuffer());
  }
  const scene = await sharp('fixtures/detector/eval/048.png').resize(1080, 1080, { kernel: 'cubic' }).toBuffer();
  const canvas = sharp({ create: { width: 1920, height: 1080, channels: 3, background: { r: 128, g: 128, b: 128 } } });
  writeFileSync(
    join(dir, 'det-scene-1080p.png'),
    await canvas
      .composite([{ input: scene, left: 420, top: 0 }])
      .png()
      .toBuffer(),
  );
  process.stdout.write(`test images written to ${dir}\n`);
}

if (process.argv[1]?.endsWith('make-data.js')) await main();
