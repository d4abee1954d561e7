/**
 * OCR side by side: our paddleocr-v4 pipeline versus @gutenye/ocr-node (the same PaddleOCR
 * det/rec models with sharp + opencv-js) on the same rendered images (fixtures/images/render.ts),
 * in one process: the corpus of fixtures/images/render.ts `pages()` and its `layoutPages()` (an
 * article tilted −40…+40° in 10° steps and turned 90/180/270°, a receipt table upright and tilted,
 * the two-column page tilted). Prints character accuracy (1 − CER, reading order included) and
 * the median time per image for both, with the ratio ours / peer.
 *
 * Ours runs the packed, signed fixtures/dist/paddleocr-v4.xpkg through `Runner` (verified
 * loading, as `xpkg run` does) when it has been built (`npm run fixtures`), else the package's
 * source folder through the pipeline's local context (`--source` forces that).
 *
 *   npx tsx bench/ocr-vs-peer.ts [--runs N] [--only name,name] [--source] [--json] [--verbose]
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { charAccuracy, expectedLines, layoutPages, pages, renderPng } from '../fixtures/images/render.js';
import { prepare } from '../fixtures/paddleocr-v4/build.js';
import { openLocalContext } from '../runner/pipeline/local.js';
import { runPipeline } from '../runner/pipeline/run.js';
import type { TextLine } from '../runner/pipeline/values.js';
import { Runner } from '../runner/runner.js';
import type { Timings } from '../runner/types.js';
import { arg, median } from './util.js';

const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

interface Engine {
  what: string;
  run(file: string): Promise<{ lines: TextLine[]; timings: Timings }>;
  close(): Promise<void>;
}

const PACKAGE = new URL('../fixtures/dist/paddleocr-v4.xpkg', import.meta.url);
const TEST_KEY = new URL('../fixtures/keys/test.pub', import.meta.url);

async function ours(dir: string): Promise<Engine> {
  if (!process.argv.includes('--source') && existsSync(PACKAGE)) {
    const path = PACKAGE.pathname;
    const runner = await Runner.open(
      path,
      existsSync(TEST_KEY) ? { trust: [TEST_KEY.pathname] } : { allowUnsigned: true },
    );
    return {
      what: `Runner on ${path}`,
      async run(file) {
        const r = await runner.run({ image: file });
        return { lines: r.outputs.lines as TextLine[], timings: r.timings };
      },
      close: () => runner.close(),
    };
  }
  const staging = join(dir, 'pkg');
  await prepare(staging);
  const ctx = await openLocalContext(staging);
  return {
    what: 'pipeline on the package source folder (local context)',
    async run(file) {
      const r = await runPipeline(ctx, { image: file });
      return { lines: r.outputs.lines as TextLine[], timings: r.timings };
    },
    close: () => ctx.release(),
  };
}

interface PeerOcr {
  detect(path: string): Promise<{ text: string; mean: number }[]>;
}

async function main(): Promise<void> {
  const runs = Number(arg('runs') ?? 5);
  const only = arg('only')?.split(',');
  const json = process.argv.includes('--json');
  const dir = await mkdtemp(join(tmpdir(), 'xpkg-ocr-bench-'));
  try {
    const engine = await ours(dir);
    const peerModule = (await import('@gutenye/ocr-node')) as unknown as { default: { create(): Promise<PeerOcr> } };
    const peer = await peerModule.default.create();
    // The corpus, then the layout pages: a page tilted −40…+40° and turned, receipts as tables.
    const corpus = [...pages(), ...layoutPages()].filter((p) => !only || only.includes(p.name));
    const rows: {
      name: string;
      clean: boolean;
      ours: { acc: number; ms: number };
      peer: { acc: number; ms: number };
      stages: Record<string, number>;
    }[] = [];
    for (const page of corpus) {
      const file = join(dir, `${page.name}.png`);
      await writeFile(file, await renderPng(page));
      const truth = expectedLines(page);
      const oursRun = async () => (await engine.run(file)).lines.map((l) => l.text);
      const peerRun = async () => (await peer.detect(file)).map((l) => l.text);
      // Warm-up (session arenas, sharp caches), then alternate so load noise hits both alike.
      const ourText = await oursRun();
      const peerText = await peerRun();
      const ourMs: number[] = [],
        peerMs: number[] = [];
      const stages: Record<string, number[]> = {};
      for (let r = 0; r < runs; r++) {
        // A pause before each timed run: onnxruntime's intra-op threads spin for a while after a
        // run (the peer's do; ours stop), and that must not land on the other engine's time.
        await settle();
        let t = performance.now();
        const res = await engine.run(file);
        ourMs.push(performance.now() - t);
        for (const [k, v] of Object.entries(res.timings)) if (k !== 'total') (stages[k] ??= []).push(v);
        await settle();
        t = performance.now();
        await peerRun();
        peerMs.push(performance.now() - t);
      }
      rows.push({
        name: page.name,
        clean: page.clean,
        ours: { acc: charAccuracy(ourText, truth), ms: median(ourMs) },
        peer: { acc: charAccuracy(peerText, truth), ms: median(peerMs) },
        stages: Object.fromEntries(Object.entries(stages).map(([k, v]) => [k, median(v)])),
      });
      if (process.argv.includes('--verbose'))
        process.stderr.write(`${page.name}\n  ours: ${JSON.stringify(ourText)}\n  peer: ${JSON.stringify(peerText)}\n`);
    }
    await engine.close();
    const mean = (f: (r: (typeof rows)[number]) => number, sel = rows) =>
      sel.reduce((a, r) => a + f(r), 0) / Math.max(1, sel.length);
    const clean = rows.filter((r) => r.clean);
    const total = { ours: rows.reduce((a, r) => a + r.ours.ms, 0), peer: rows.reduce((a, r) => a + r.peer.ms, 0) };
    const summary = {
      ours: engine.what,
      images: rows.length,
      runs,
      accuracy: {
        ours: mean((r) => r.ours.acc),
        peer: mean((r) => r.peer.acc),
        oursClean: mean((r) => r.ours.acc, clean),
        peerClean: mean((r) => r.peer.acc, clean),
      },
      msPerImage: { ours: total.ours / rows.length, peer: total.peer / rows.length },
      timeRatio: total.ours / total.peer,
    };
    if (json) {
      process.stdout.write(`${JSON.stringify({ rows, summary }, null, 2)}\n`);
      return;
    }
    console.log(`ours: ${engine.what}; peer: @gutenye/ocr-node (same det/rec models, no orientation model)\n`);
    const pad = (s: string, n: number) => s.padEnd(n);
    const num = (v: number, d = 3) => v.toFixed(d).padStart(8);
    console.log(
      `${pad('image', 20)}${'acc ours'.padStart(9)}${'acc peer'.padStart(9)}${'ms ours'.padStart(9)}${'ms peer'.padStart(9)}${'ratio'.padStart(8)}   our stages (median ms)`,
    );
    for (const r of rows) {
      const st = Object.entries(r.stages)
        .map(([k, v]) => `${k} ${v.toFixed(0)}`)
        .join(', ');
      console.log(
        `${pad(r.name + (r.clean ? '' : '*'), 20)} ${num(r.ours.acc)} ${num(r.peer.acc)} ${num(r.ours.ms, 1)} ${num(r.peer.ms, 1)} ${num(r.ours.ms / r.peer.ms, 2).slice(1)}   ${st}`,
      );
    }
    console.log(
      `\nmean accuracy: ours ${summary.accuracy.ours.toFixed(4)}, peer ${summary.accuracy.peer.toFixed(4)} (clean pages: ours ${summary.accuracy.oursClean.toFixed(4)}, peer ${summary.accuracy.peerClean.toFixed(4)}; * = noisy)`,
    );
    console.log(
      `time per image: ours ${summary.msPerImage.ours.toFixed(1)} ms, peer ${summary.msPerImage.peer.toFixed(1)} ms, ratio ours/peer ${summary.timeRatio.toFixed(3)} (median of ${runs} runs each, alternating)`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
