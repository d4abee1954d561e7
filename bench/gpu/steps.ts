/**
 * Where an OCR run's time goes, step by step (the stages of side-by-side.ts split by step id), GPU
 * variant and CPU variant in one run, on the GPU machine:
 *
 *   node dist-tools/bench/gpu/steps.js [--data dir] [--runs n] [--gpu-only] [--package file.xpkg]
 *
 * The last line of each variant is a digest of the page's text lines (text and box, no scores), so
 * runs of two builds or settings can be checked for the same reading.
 * Each pipeline op's `run` is wrapped to time its steps; per step the median over the timed runs,
 * with the process CPU time per run (the native kernels' threads and onnxruntime's included).
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { getOp } from '../../runner/pipeline/registry.js';
import { openCpu, openGpu, pct, r2, rawImage } from './common.js';

const argv = process.argv.slice(2);
const flag = (name: string, d: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : d);
const DATA = flag('--data', '.gpu/data');
const RUNS = Number(flag('--runs', '40'));
const PKG = flag('--package', 'fixtures/dist/paddleocr-v4.xpkg');

const times: Record<string, number[]> = {};
for (const op of ['preprocess', 'crop-batch', 'db-postprocess', 'ctc-decode', 'text-lines', 'top-k', 'infer']) {
  const def = getOp(op)!;
  const run = def.run;
  def.run = async (p, x) => {
    const t = performance.now();
    await run(p, x);
    (times[x.step.id ?? op] ??= []).push(performance.now() - t);
  };
}

/** Per variant: the run's p50 and each step's median, for the ratio line at the end. */
const results: Record<string, { p50: number; steps: Record<string, number> }> = {};
const img = await rawImage(join(DATA, 'ocr-page-1080p.png'));
const inputs = { image: { data: img.data, width: img.width, height: img.height, channels: 3 } };
for (const [name, runs, open] of [
  ['GPU variant', RUNS, async () => (await openGpu(PKG)).runner],
  ['CPU variant', Math.max(3, Math.round(RUNS / 8)), () => openCpu(PKG)],
] as const) {
  // --gpu-only: the GPU variant alone (e.g. under --cpu-prof, where the CPU variant's time would drown it)
  if (name === 'CPU variant' && argv.includes('--gpu-only')) continue;
  const runner = await open();
  try {
    for (let i = 0; i < 3; i++) await runner.run(inputs);
    for (const k of Object.keys(times)) delete times[k];
    const total: number[] = [];
    // CUPTI_ARM: cupti-trace.c (LD_PRELOAD) records kernels only while these runs go (dev.sh cupti)
    const arm = process.env.CUPTI_ARM;
    if (arm && name === 'GPU variant') {
      writeFileSync(`${arm}.on`, '');
      await sleep(50);
    }
    const c0 = process.cpuUsage();
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      await runner.run(inputs);
      total.push(performance.now() - t);
    }
    const cpu = process.cpuUsage(c0);
    if (arm && name === 'GPU variant') {
      writeFileSync(`${arm}.off`, '');
      await sleep(500);
    }
    const steps = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, r2(pct(v, 50))]));
    const read = await runner.run(inputs);
    const text = JSON.stringify(read.outputs, (k, v) => (k === 'score' ? undefined : v));
    results[name] = { p50: pct(total, 50), steps };
    console.log(
      `${name}: p50 ${r2(pct(total, 50))} ms, process CPU ${r2((cpu.user + cpu.system) / 1000 / runs)} ms a run; step medians, ms: ${JSON.stringify(steps)}`,
    );
    console.log(`${name}: text ${createHash('sha256').update(text).digest('hex').slice(0, 16)}`);
  } finally {
    await runner.close();
  }
}
const [gpu, cpu] = [results['GPU variant'], results['CPU variant']];
if (gpu && cpu) {
  const ratio = (a: number, b: number) => (b > 0 ? r2(a / b) : null);
  const perStep = Object.fromEntries(Object.keys(gpu.steps).map((k) => [k, ratio(gpu.steps[k], cpu.steps[k] ?? 0)]));
  console.log(`GPU / CPU variant: run p50 ${ratio(gpu.p50, cpu.p50)}×; per step ${JSON.stringify(perStep)}`);
}
