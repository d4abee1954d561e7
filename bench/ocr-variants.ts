/**
 * The paddleocr-v4 pipeline in its variants on the rendered pages of fixtures/images/render.ts:
 * recognition as one padded batch (the manifest's form) versus one call per line
 * (`crop-batch` `batch: false`), and the native versus portable kernels. Prints accuracy and the
 * median time per image of each, with ratios, and whether every variant reads the same text.
 *
 *   npx tsx bench/ocr-variants.ts [--runs N] [--only name,name] [--no-portable]
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { charAccuracy, expectedLines, pages, renderPng } from '../fixtures/images/render.js';
import { prepare } from '../fixtures/paddleocr-v4/build.js';
import { setNativeBackend } from '../native/index.js';
import { openLocalContext, runPipeline, type TextLine } from '../runner/pipeline/index.js';

const arg = (n: string) => {
  const i = process.argv.indexOf(`--${n}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const runs = Number(arg('runs') ?? 3);
const only = arg('only')?.split(',');
const corpus = pages().filter((p) => !only || only.includes(p.name));
const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];

type Variant = { name: string; backend: 'native' | 'portable'; batch: boolean };
const variants: Variant[] = [
  { name: 'native, batched rec', backend: 'native', batch: true },
  { name: 'native, per-line rec', backend: 'native', batch: false },
  ...(process.argv.includes('--no-portable')
    ? []
    : [{ name: 'portable, batched rec', backend: 'portable' as const, batch: true }]),
];

const dir = await mkdtemp(join(tmpdir(), 'xpkg-ocr-variants-'));
try {
  const pngs = await Promise.all(corpus.map((p) => renderPng(p)));
  const results: { v: Variant; acc: number[]; ms: number[]; texts: string[][] }[] = [];
  for (const v of variants) {
    const staging = join(dir, v.name.replace(/\W+/g, '-'));
    await prepare(staging);
    const mf = JSON.parse(await readFile(join(staging, 'xpkg.json'), 'utf8'));
    for (const s of mf.pipeline.steps) if (s.id === 'rec-crop') s.params.batch = v.batch;
    await writeFile(join(staging, 'xpkg.json'), JSON.stringify(mf));
    setNativeBackend(v.backend);
    const ctx = await openLocalContext(staging);
    const acc: number[] = [],
      ms: number[] = [],
      texts: string[][] = [];
    await runPipeline(ctx, { image: pngs[0] }); // loads the models
    for (const [i, p] of corpus.entries()) {
      const times: number[] = [];
      let lines: TextLine[] = [];
      for (let r = 0; r < runs; r++) {
        const t0 = performance.now();
        lines = (await runPipeline(ctx, { image: pngs[i] })).outputs.lines as TextLine[];
        times.push(performance.now() - t0);
      }
      texts.push(lines.map((l) => l.text));
      acc.push(
        charAccuracy(
          lines.map((l) => l.text),
          expectedLines(p),
        ),
      );
      ms.push(median(times));
    }
    await ctx.release();
    results.push({ v, acc, ms, texts });
  }
  const base = results[0];
  console.log(`page`.padEnd(16) + results.map((r) => r.v.name.padStart(26)).join(''));
  corpus.forEach((p, i) => {
    console.log(
      p.name.padEnd(16) +
        results
          .map((r) =>
            `${r.acc[i].toFixed(3)} ${r.ms[i].toFixed(0).padStart(6)} ms ×${(r.ms[i] / base.ms[i]).toFixed(2)}`.padStart(
              26,
            ),
          )
          .join(''),
    );
  });
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  console.log(
    'mean'.padEnd(16) +
      results
        .map((r) =>
          `${mean(r.acc).toFixed(3)} ${mean(r.ms).toFixed(0).padStart(6)} ms ×${(mean(r.ms) / mean(base.ms)).toFixed(2)}`.padStart(
            26,
          ),
        )
        .join(''),
  );
  for (const r of results.slice(1)) {
    const same = r.texts.every((t, i) => JSON.stringify(t) === JSON.stringify(base.texts[i]));
    console.log(`${r.v.name} reads the same text as ${base.v.name}: ${same}`);
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
