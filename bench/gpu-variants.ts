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

interface Contender<T> {
  name: string;
  run(image: unknown): Promise<T>;
  /** Counts what the models return, by model id. */
  counter?: { bytes: OutputBytes; model: (variant: string) => string };
}

/**
 * Runs every image through every contender, `runs` times, the contenders interleaved per image so
 * that a machine's changing load (this one is shared) weighs on all of them alike.
 */
async function measureAll<T>(images: unknown[], contenders: Contender<T>[]): Promise<Measured<T>[]> {
  for (const c of contenders) await c.run(images[0]); // loads the models
  const out = contenders.map((c) => ({
    name: c.name,
    results: [] as T[],
    times: images.map(() => [] as number[]),
    bytes: [] as Record<string, number>[],
  }));
  for (let k = 0; k < runs; k++)
    for (const [i, image] of images.entries())
      for (const [n, c] of contenders.entries()) {
        c.counter?.bytes.reset();
        const t0 = performance.now();
        out[n].results[i] = await c.run(image);
        out[n].times[i].push(performance.now() - t0);
        const counter = c.counter;
        if (counter)
          out[n].bytes[i] = Object.fromEntries([...counter.bytes.byVariant].map(([v, b]) => [counter.model(v), b]));
      }
  return out.map((o) => ({ name: o.name, results: o.results, ms: o.times.map(median), bytes: o.bytes }));
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
/** The median over images of this contender's time / the reference's. */
const ratio = (m: Measured<unknown>, ref: Measured<unknown>) => median(m.ms.map((t, i) => t / ref.ms[i])).toFixed(2);
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
  const ocrFiles = [
    'models/det/ch_PP-OCRv4_det_infer.onnx',
    'models/cls/ch_ppocr_mobile_v2.0_cls_infer.onnx',
    'models/rec/ch_PP-OCRv4_rec_infer.onnx',
  ];
  const ctxs: Awaited<ReturnType<typeof replaced>>[] = [];
  for (const how of ['fp16', 'simulated'] as const) {
    const dir = join(tmp, `ocr-${how}`);
    await prepareOcr(dir, { gpu: false });
    ctxs.push(await replaced(dir, ocrFiles, how));
  }
  const ocr = await measureAll(corpus, [
    {
      name: 'cpu-fp32',
      run: async (image) => lines(await cpuRunner.run({ image })),
      counter: { bytes: ocrCpu.bytes, model: ocrModel },
    },
    {
      name: 'fp16 models, CPU provider (float32 inside)',
      run: async (image) => lines(await runPipeline(ctxs[0], { image })),
    },
    {
      name: 'fp16 simulated (every half value rounded)',
      run: async (image) => lines(await runPipeline(ctxs[1], { image })),
    },
    {
      name: 'GPU variants on CPU provider',
      run: async (image) => lines(await gpuRunner.run({ image })),
      counter: { bytes: ocrGpu.bytes, model: ocrModel },
    },
  ]);
  for (const c of ctxs) await c.release();
  await cpuRunner.close();
  await gpuRunner.close();

  // --- detector ----------------------------------------------------------------------------------
  process.stderr.write('detector eval set\n');
  const labels = JSON.parse(await readFile('fixtures/detector/eval/labels.json', 'utf8')) as {
    images: { file: string; boxes: number[][]; labels: number[] }[];
  };
  const evalImages = labels.images.map((e) => `fixtures/detector/eval/${e.file}`);
  const boxes = (r: { outputs: Record<string, unknown> }) => r.outputs.boxes as DetectedBox[];
  const contenders: Contender<DetectedBox[]>[] = [];
  const runners: Runner[] = [];
  for (const variant of ['cpu-fp32', 'cpu-fp16']) {
    const c = gpuVariantsOnCpu();
    const r = await Runner.open('fixtures/dist/detector.xpkg', { ...base, variant, registry: c.registry });
    runners.push(r);
    contenders.push({
      name: variant,
      run: async (image) => boxes(await r.run({ image })),
      counter: { bytes: c.bytes, model: () => 'detector' },
    });
  }
  const detSim = join(tmp, 'det-sim');
  await prepareDetector(detSim);
  const detSimCtx = await replaced(detSim, ['model.onnx'], 'simulated');
  contenders.push({
    name: 'fp32 model, fp16 simulated',
    run: async (image) => boxes(await runPipeline(detSimCtx, { image })),
  });
  const dg = gpuVariantsOnCpu();
  const detGpu = await Runner.open('fixtures/dist/detector.xpkg', { ...base, host: H100, registry: dg.registry });
  runners.push(detGpu);
  contenders.push({
    name: 'GPU variant on CPU provider',
    run: async (image) => boxes(await detGpu.run({ image })),
    counter: { bytes: dg.bytes, model: () => 'detector' },
  });
  const det = await measureAll(evalImages, contenders);
  await detSimCtx.release();
  for (const r of runners) await r.close();

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
      '× cpu-fp32 (median per image)',
      'model output / image (mean, max)',
    ]),
  );
  out.push(row(['---', '---', '---', '---', '---', '---', '---', '---']));
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
        ratio(m, ocr[0]),
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
      'max |Δ box| px vs cpu-fp32 (paired by class)',
      'ms / image (median)',
      '× cpu-fp32 (median per image)',
      'model output / image',
    ]),
  );
  out.push(row(['---', '---', '---', '---', '---', '---', '---', '---']));
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
        ratio(m, det[0]),
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
