/**
 * The GPU variants of the example packages, measured on this CPU machine side by side with the CPU
 * variants, in one run:
 *
 * - accuracy: OCR text on the corpus (fixtures/images/example.png and the rendered pages of
 *   fixtures/images/render.ts) and detector boxes and mAP@0.5 on fixtures/detector/eval, for the
 *   CPU variants, the models with every half-precision value simulated (fixtures/onnx-fp16.ts
 *   simulateFloat16: what a GPU's half storage does, which onnxruntime's CPU fp16 kernels hide by
 *   computing in float32) and the GPU variants themselves on onnxruntime's CPU provider;
 * - bytes the models return per image (on a GPU, the device → host copies) before and after the
 *   in-graph reductions;
 * - CPU time per image (median), and package sizes with and without the GPU variants.
 *
 *   npx tsx bench/gpu-variants.ts [--runs N] [--threads N]
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prepare as prepareDetector } from '../fixtures/detector/build.js';
import { layoutPages, pages, renderPng } from '../fixtures/images/render.js';
import { convertToFloat16, simulateFloat16 } from '../fixtures/onnx-fp16.js';
import { OnnxGraph } from '../fixtures/onnx-graph.js';
import { prepare as prepareOcr } from '../fixtures/paddleocr-v4/build.js';
import { packFolder } from '../pack/pack.js';
import { loadHostProfile } from '../runner/host-profile.js';
import { type DetectedBox, openLocalContext, runPipeline, type TextLine } from '../runner/pipeline/index.js';
import { Runner } from '../runner/runner.js';
import type { PipelineContext } from '../runner/types.js';
import { gpuVariantsOnCpu, type OutputBytes } from '../test/helpers/gpu-on-cpu.js';
import { meanAveragePrecision, pairBoxes } from '../test/helpers/metrics.js';
import { arg, median } from './util.js';

const runs = Number(arg('runs') ?? 1);
const threads = Number(arg('threads') ?? 2);
const H100 = loadHostProfile('fixtures/hosts/h100.json');
const tmp = await mkdtemp(join(tmpdir(), 'xpkg-gpu-variants-'));
const base = { trust: ['fixtures/keys/test.pub'], stateDir: join(tmp, 'state'), threads };

interface Measured<T> {
  name: string;
  results: T[];
  /** Median ms per image over the runs, per image. */
  ms: number[];
  /** Bytes the models returned per image, by model. */
  bytes: Record<string, number>[];
}

/** Runs `images` through `run` (`runs` times), keeping the last results and the median times. */
async function measure<T>(
  name: string,
  images: unknown[],
  run: (image: unknown) => Promise<T>,
  counter?: { bytes: OutputBytes; model: (variant: string) => string },
): Promise<Measured<T>> {
  await run(images[0]); // loads the models
  const times: number[][] = images.map(() => []);
  const results: T[] = [];
  const bytes: Record<string, number>[] = [];
  for (let k = 0; k < runs; k++)
    for (const [i, image] of images.entries()) {
      counter?.bytes.reset();
      const t0 = performance.now();
      results[i] = await run(image);
      times[i].push(performance.now() - t0);
      if (counter) bytes[i] = Object.fromEntries([...counter.bytes.byVariant].map(([v, n]) => [counter.model(v), n]));
    }
  process.stderr.write(`  ${name}: done\n`);
  return { name, results, ms: times.map(median), bytes };
}

/**
 * A local context over a staging folder whose models are replaced: by their float16 conversion
 * (`fp16`), or by their half-precision simulation (`simulated`, run without graph optimisation so
 * onnxruntime keeps the Cast pairs).
 */
async function replaced(
  dir: string,
  files: string[],
  how: 'fp16' | 'simulated',
): Promise<PipelineContext & { release(): Promise<void> }> {
  for (const f of files) {
    const g = OnnxGraph.decode(await readFile(join(dir, f)));
    if (how === 'fp16') convertToFloat16(g);
    else simulateFloat16(g);
    await writeFile(join(dir, f), g.encode());
  }
  return openLocalContext(dir, { threads, ...(how === 'simulated' ? { graphOptimization: 'disabled' } : {}) });
}

const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;
const mb = (n: number) => `${(n / 1024 / 1024).toFixed(2)} MB`;
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const mean = (xs: number[]) => sum(xs) / Math.max(1, xs.length);
const row = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;
const byModel = (m: Measured<unknown>, model?: string) =>
  m.bytes.map((b) => (model ? (b[model] ?? 0) : sum(Object.values(b))));

try {
  // --- OCR ---------------------------------------------------------------------------------------
  process.stderr.write('OCR corpus\n');
  const corpus: Buffer[] = [await readFile('fixtures/images/example.png')];
  for (const p of [...pages(), ...layoutPages(40)]) corpus.push(await renderPng(p));
  const ocrModel = (v: string) => v.split('-')[0];
  const ocrCpu = gpuVariantsOnCpu(); // on this host selection keeps the CPU variants: it only counts
  const ocrGpu = gpuVariantsOnCpu();
  const cpuRunner = await Runner.open('fixtures/dist/paddleocr-v4.xpkg', { ...base, registry: ocrCpu.registry });
  const gpuRunner = await Runner.open('fixtures/dist/paddleocr-v4.xpkg', {
    ...base,
    host: H100,
    registry: ocrGpu.registry,
  });
  const lines = (r: { outputs: Record<string, unknown> }) => r.outputs.lines as TextLine[];
  const ocr = [
    await measure('cpu-fp32', corpus, async (image) => lines(await cpuRunner.run({ image })), {
      bytes: ocrCpu.bytes,
      model: ocrModel,
    }),
  ];
  const ocrFiles = [
    'models/det/ch_PP-OCRv4_det_infer.onnx',
    'models/cls/ch_ppocr_mobile_v2.0_cls_infer.onnx',
    'models/rec/ch_PP-OCRv4_rec_infer.onnx',
  ];
  for (const [how, name] of [
    ['fp16', 'fp16 models, CPU provider (float32 inside)'],
    ['simulated', 'fp16 simulated (every half value rounded)'],
  ] as const) {
    const dir = join(tmp, `ocr-${how}`);
    await prepareOcr(dir, { gpu: false });
    const ctx = await replaced(dir, ocrFiles, how);
    ocr.push(await measure(name, corpus, async (image) => lines(await runPipeline(ctx, { image }))));
    await ctx.release();
  }
  ocr.push(
    await measure('GPU variants on CPU provider', corpus, async (image) => lines(await gpuRunner.run({ image })), {
      bytes: ocrGpu.bytes,
      model: ocrModel,
    }),
  );
  await cpuRunner.close();
  await gpuRunner.close();

  // --- detector ----------------------------------------------------------------------------------
  process.stderr.write('detector eval set\n');
  const labels = JSON.parse(await readFile('fixtures/detector/eval/labels.json', 'utf8')) as {
    images: { file: string; boxes: number[][]; labels: number[] }[];
  };
  const evalImages = labels.images.map((e) => `fixtures/detector/eval/${e.file}`);
  const boxes = (r: { outputs: Record<string, unknown> }) => r.outputs.boxes as DetectedBox[];
  const det: Measured<DetectedBox[]>[] = [];
  for (const variant of ['cpu-fp32', 'cpu-fp16']) {
    const c = gpuVariantsOnCpu();
    await using r = await Runner.open('fixtures/dist/detector.xpkg', { ...base, variant, registry: c.registry });
    det.push(
      await measure(variant, evalImages, async (image) => boxes(await r.run({ image })), {
        bytes: c.bytes,
        model: () => 'detector',
      }),
    );
  }
  const detSim = join(tmp, 'det-sim');
  await prepareDetector(detSim);
  const detSimCtx = await replaced(detSim, ['model.onnx'], 'simulated');
  det.push(
    await measure('fp32 model, fp16 simulated', evalImages, async (image) =>
      boxes(await runPipeline(detSimCtx, { image })),
    ),
  );
  await detSimCtx.release();
  const dg = gpuVariantsOnCpu();
  await using detGpu = await Runner.open('fixtures/dist/detector.xpkg', { ...base, host: H100, registry: dg.registry });
  det.push(
    await measure('GPU variant on CPU provider', evalImages, async (image) => boxes(await detGpu.run({ image })), {
      bytes: dg.bytes,
      model: () => 'detector',
    }),
  );

  // --- sizes -------------------------------------------------------------------------------------
  process.stderr.write('package sizes\n');
  const sizes: [string, number, number][] = [];
  for (const [name, prep, strip] of [
    ['paddleocr-v4', (d: string, gpu: boolean) => prepareOcr(d, { gpu }), false],
    ['detector', (d: string) => prepareDetector(d), true],
  ] as const) {
    const size = async (gpu: boolean) => {
      const d = join(tmp, `${name}-${gpu}`);
      await prep(d, gpu);
      if (!gpu && strip) {
        const m = JSON.parse(await readFile(join(d, 'xpkg.json'), 'utf8'));
        for (const x of m.models)
          x.variants = x.variants.filter((v: { requires?: { accelerator?: unknown } }) => !v.requires?.accelerator);
        await writeFile(join(d, 'xpkg.json'), JSON.stringify(m));
      }
      await packFolder(d, `${d}.xpkg`, { sourceDateEpoch: '1767225600' });
      return (await stat(`${d}.xpkg`)).size;
    };
    sizes.push([name, await size(false), await size(true)]);
  }

  // --- report ------------------------------------------------------------------------------------
  const out: string[] = [];
  out.push(`\nOCR: ${corpus.length} images (example.png + rendered pages), ${runs} run(s), ${threads} threads\n`);
  out.push(
    row([
      'variant',
      'images, same text',
      'lines, same text',
      'max |Δ score|',
      'max |Δ box| px',
      'ms / image (median)',
      'model output / image (mean, max)',
    ]),
  );
  out.push(row(['---', '---', '---', '---', '---', '---', '---']));
  const ref = ocr[0].results;
  for (const m of ocr) {
    let same = 0,
      linesSame = 0,
      ds = 0,
      db = 0;
    m.results.forEach((ls, i) => {
      const r = ref[i];
      if (ls.length === r.length && ls.every((l, j) => l.text === r[j].text)) same++;
      ls.forEach((l, j) => {
        if (r[j]?.text !== l.text) return;
        linesSame++;
        ds = Math.max(ds, Math.abs(l.score - r[j].score));
        l.box.forEach(([x, y], k) => {
          db = Math.max(db, Math.abs(x - r[j].box[k][0]), Math.abs(y - r[j].box[k][1]));
        });
      });
    });
    const b = byModel(m);
    out.push(
      row([
        m.name,
        `${same}/${m.results.length}`,
        `${linesSame}/${sum(ref.map((r) => r.length))}`,
        ds.toFixed(4),
        db,
        median(m.ms).toFixed(0),
        m.bytes.length ? `${kb(mean(b))}, ${kb(Math.max(...b))}` : '—',
      ]),
    );
  }
  out.push('\nOCR model output per image, by model (mean): CPU variants → GPU variants');
  for (const model of ['det', 'cls', 'rec'])
    out.push(`  ${model}: ${kb(mean(byModel(ocr[0], model)))} → ${kb(mean(byModel(ocr.at(-1)!, model)))}`);

  out.push(`\nDetector: ${evalImages.length} images of fixtures/detector/eval, ${runs} run(s)\n`);
  out.push(
    row([
      'variant',
      'mAP@0.5',
      'boxes',
      'images with other boxes',
      'max |Δ box| px vs cpu-fp32',
      'ms / image (median)',
      'model output / image',
    ]),
  );
  out.push(row(['---', '---', '---', '---', '---', '---', '---']));
  const gts = labels.images.map((e) => ({ boxes: e.boxes.flat(), labels: e.labels }));
  for (const m of det) {
    const map = meanAveragePrecision(
      m.results.map((bs) => ({
        boxes: bs.flatMap((b) => b.box as number[]),
        scores: bs.map((b) => b.score),
        classes: bs.map((b) => b.class!),
      })),
      gts,
      4,
    ).mAP50;
    let worst = 0,
      other = 0;
    m.results.forEach((bs, i) => {
      const p = pairBoxes(
        bs as { box: number[]; class?: number }[],
        det[0].results[i] as { box: number[]; class?: number }[],
      );
      if (!p.paired) other++;
      else worst = Math.max(worst, p.worst);
    });
    const b = byModel(m);
    out.push(
      row([
        m.name,
        map.toFixed(4),
        sum(m.results.map((r) => r.length)),
        other,
        worst.toFixed(3),
        median(m.ms).toFixed(1),
        m.bytes.length ? kb(mean(b)) : '—',
      ]),
    );
  }

  out.push('\nPackage sizes (unsigned, packed the same way)\n');
  out.push(row(['package', 'CPU variants only', 'with the GPU variants', 'growth']));
  out.push(row(['---', '---', '---', '---']));
  for (const [name, a, b] of sizes)
    out.push(row([name, mb(a), mb(b), `+${mb(b - a)} (${((b / a - 1) * 100).toFixed(0)} %)`]));
  process.stdout.write(`${out.join('\n')}\n`);
} finally {
  await rm(tmp, { recursive: true, force: true });
}
