/**
 * GPU benchmarks side by side, in one run (on the GPU machine, after make-data.ts):
 *
 *   node dist-tools/bench/gpu/side-by-side.js [--data dir] [--runs n] [--out file.json] [--cold-runs n] [--cold-stock] [--ocr-package f.xpkg (the OCR rows and the OCR cold starts)] [--only detector,ocr,cold]
 *
 * 1. Detector, a 1920×1080 RGB image in memory → boxes: xpkg on the GPU (its GPU variant, else
 *    its model forced onto cuda) vs xpkg on the CPU (the CPU variant) vs the detector's own PyTorch
 *    module in eager mode on the same GPU (detector_torch.py: GPU resize/normalise,
 *    torchvision.ops.batched_nms). p50/p99 and ratios. Goal: p50 ≤ 3 ms, ≤ 1.0× PyTorch, p99 ≤ 1.5× p50.
 * 2. OCR, a 1920×1080 page of 30 lines → text: GPU p50 vs CPU p50, text identical. Goal p50 ≤ 30 ms.
 * 3. Cold start, process start → first result with verification, per package on the GPU: `xpkg run`, and the
 *    library with pre-warm auto / off (cold-child.ts). Goal ≤ 2 s.
 * Bytes copied device → host per image are in each xpkg row (goal ≤ 64 KB).
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import type { Runner, RunResult } from '../../runner/runner.js';
import { compareBoxes, compareOutputs, openCpu, openGpu, pct, r2, rawImage, TRUST, timeRuns } from './common.js';

const argv = process.argv.slice(2);
const flag = (name: string, d: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : d;
};
const DATA = flag('--data', '.gpu/data');
const RUNS = Number(flag('--runs', '200'));
const OUT = flag('--out', '');
const COLD = Number(flag('--cold-runs', '3'));
/** Another build of the OCR package (other batch sizes, say) for the OCR row. */
const OCR_PACKAGE = flag('--ocr-package', 'fixtures/dist/paddleocr-v4.xpkg');

/**
 * Warm-up runs, then up to `runs` timed runs within `budgetMs` (wall time around each run), with
 * the median of each pipeline stage's time over the timed runs (where the time goes).
 */
/** The GPU variant's figures as both reports print them. */
function gpuRow(gpu: Awaited<ReturnType<typeof timed>>) {
  return {
    p50: gpu.p50,
    p99: gpu.p99,
    copies: gpu.last.copies,
    stageP50: gpu.stageP50,
    tail: gpu.tail,
    gc: gpu.gc,
    bindings: gpu.last.bindings,
    graphs: gpu.last.graphs,
  };
}

async function timed(runner: Runner, inputs: Record<string, unknown>, runs: number, warm = 10, budgetMs = 30_000) {
  for (let i = 0; i < warm; i++) await runner.run(inputs);
  const stages: Record<string, number[]> = {};
  const spans: [number, number][] = [];
  // V8's collections during the timed runs, to tell a GC pause from GPU or host work in the tail
  const gcs: { start: number; ms: number; kind: number }[] = [];
  const obs = new PerformanceObserver((l) => {
    for (const e of l.getEntries())
      gcs.push({
        start: e.startTime,
        ms: e.duration,
        kind: (e as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0,
      });
  });
  obs.observe({ entryTypes: ['gc'] });
  const { ms, last } = await timeRuns(
    async () => {
      const t = performance.now();
      const r = await runner.run(inputs);
      spans.push([t, performance.now()]);
      for (const [k, v] of Object.entries(r.timings)) (stages[k] ??= []).push(v);
      return r;
    },
    runs,
    budgetMs,
  );
  await new Promise((r) => setTimeout(r, 0));
  obs.disconnect();
  const stageP50 = Object.fromEntries(Object.entries(stages).map(([k, v]) => [k, r2(pct(v, 50))]));
  // the slowest 2 % of runs: their stages and the GC time inside them
  const gcIn = ([a, b]: [number, number]) =>
    gcs.reduce((n, g) => n + Math.max(0, Math.min(b, g.start + g.ms) - Math.max(a, g.start)), 0);
  const slow = ms
    .map((m, i) => [m, i] as const)
    .sort((x, y) => y[0] - x[0])
    .slice(0, Math.max(1, Math.ceil(ms.length / 50)));
  const tail = slow.map(([m, i]) => ({
    ms: r2(m),
    gcMs: r2(gcIn(spans[i])),
    stages: Object.fromEntries(Object.entries(stages).map(([k, v]) => [k, r2(v[i])])),
  }));
  const gc = {
    count: gcs.length,
    ms: r2(gcs.reduce((n, g) => n + g.ms, 0)),
    maxMs: r2(Math.max(0, ...gcs.map((g) => g.ms))),
    runsWithGc: spans.filter((s) => gcIn(s) > 0).length,
  };
  return { p50: r2(pct(ms, 50)), p99: r2(pct(ms, 99)), runs: ms.length, last: last as RunResult, stageP50, tail, gc };
}

const row = (name: string, p50: number, p99: number, extra = '') =>
  `${name.padEnd(34)} ${p50.toFixed(2).padStart(9)} ${p99.toFixed(2).padStart(9)}  ${extra}`;

async function detector(lines: string[], out: Record<string, unknown>): Promise<void> {
  const pkg = 'fixtures/dist/detector.xpkg';
  const img = await rawImage(join(DATA, 'det-scene-1080p.png'));
  const inputs = { image: { data: img.data, width: img.width, height: img.height, channels: 3 } };
  const g = await openGpu(pkg);
  const cpu = await openCpu(pkg);
  try {
    const gpu = await timed(g.runner, inputs, RUNS);
    const c = await timed(cpu, inputs, Math.min(RUNS, 50), 3, 10_000);
    const raw = '/tmp/xpkg-det-1080p.rgb';
    writeFileSync(raw, img.data);
    const py = spawnSync(
      'python3',
      [
        'bench/gpu/detector_torch.py',
        '--image',
        raw,
        '--width',
        String(img.width),
        '--height',
        String(img.height),
        '--runs',
        String(RUNS),
      ],
      { encoding: 'utf8', maxBuffer: 64 << 20 },
    );
    const torch = py.status === 0 ? JSON.parse(py.stdout.trim().split('\n').pop()!) : { error: py.stderr.slice(-2000) };
    const gb = gpu.last.outputs.boxes as never;
    const vsCpu = compareOutputs(g.runner.manifest, gpu.last.outputs, c.last.outputs);
    const vsTorch = torch.boxes ? compareBoxes(gb, torch.boxes) : undefined;
    out.detector = {
      image: `${img.width}x${img.height}`,
      gpuMode: g.mode,
      variant: gpu.last.variant,
      actualProvider: gpu.last.actualProvider,
      xpkgGpu: gpuRow(gpu),
      xpkgCpu: { p50: c.p50, p99: c.p99, stageP50: c.stageP50 },
      torch,
      gpuVsCpu: vsCpu.detail,
      gpuVsTorch: vsTorch,
      ratios: {
        xpkgGpuOverTorchP50: torch.p50 ? r2(gpu.p50 / torch.p50) : null,
        xpkgGpuP99OverP50: r2(gpu.p99 / gpu.p50),
        cpuOverGpuP50: r2(c.p50 / gpu.p50),
      },
    };
    lines.push(
      `detector, ${img.width}×${img.height} RGB in memory → boxes (${gpu.runs} runs)   p50 ms    p99 ms`,
      row(
        `xpkg GPU (${g.mode}: ${Object.values(gpu.last.variant).join(',')})`,
        gpu.p50,
        gpu.p99,
        `${gpu.last.copies.deviceToHost} B device→host`,
      ),
      row('xpkg CPU (CPU variant)', c.p50, c.p99, `${r2(c.p50 / gpu.p50)}× the GPU's p50`),
      torch.p50
        ? row(
            `PyTorch ${torch.torch} eager, same GPU`,
            torch.p50,
            torch.p99,
            `xpkg GPU / PyTorch p50 = ${r2(gpu.p50 / torch.p50)}`,
          )
        : `PyTorch reference failed: ${String(torch.error).slice(-300)}`,
      `  xpkg GPU p99/p50 = ${r2(gpu.p99 / gpu.p50)}; boxes GPU vs CPU ${JSON.stringify(vsCpu.detail.boxes)}; vs PyTorch max ${vsTorch ? `${r2(vsTorch.maxPx)} px` : '-'}`,
      `  stage medians, ms: GPU ${JSON.stringify(gpu.stageP50)}; CPU ${JSON.stringify(c.stageP50)}`,
      `  GPU runs' GC: ${JSON.stringify(gpu.gc)}; slowest 2 %: ${JSON.stringify(gpu.tail)}`,
      `  sessions: ${JSON.stringify(gpu.last.bindings)}; CUDA graphs: ${JSON.stringify(gpu.last.graphs ?? {})}`,
    );
  } finally {
    await g.runner.close();
    await cpu.close();
  }
}

async function ocr(lines: string[], out: Record<string, unknown>): Promise<void> {
  const pkg = OCR_PACKAGE;
  const img = await rawImage(join(DATA, 'ocr-page-1080p.png'));
  const inputs = { image: { data: img.data, width: img.width, height: img.height, channels: 3 } };
  const g = await openGpu(pkg);
  const cpu = await openCpu(pkg);
  try {
    const gpu = await timed(g.runner, inputs, Math.min(RUNS, 50), 1);
    const c = await timed(cpu, inputs, 5, 1, 10_000);
    const same = compareOutputs(g.runner.manifest, gpu.last.outputs, c.last.outputs);
    out.ocr = {
      image: `${img.width}x${img.height}`,
      gpuMode: g.mode,
      variant: gpu.last.variant,
      actualProvider: gpu.last.actualProvider,
      lines: (gpu.last.outputs.lines as unknown[]).length,
      xpkgGpu: gpuRow(gpu),
      xpkgCpu: { p50: c.p50, stageP50: c.stageP50 },
      textIdentical: same.ok,
      opened: g.runner.opened,
    };
    const o = g.runner.opened;
    lines.push(
      '',
      `OCR (${pkg.split('/').pop()}), ${img.width}×${img.height} page of 30 lines → text   p50 ms    p99 ms`,
      row(`xpkg GPU (${g.mode})`, gpu.p50, gpu.p99, `${gpu.last.copies.deviceToHost} B device→host`),
      row('xpkg CPU (CPU variants)', c.p50, c.p99, `${r2(c.p50 / gpu.p50)}× the GPU's p50`),
      `  ${(gpu.last.outputs.lines as unknown[]).length} lines; text identical to the CPU's: ${same.ok}; stage medians, ms: GPU ${JSON.stringify(gpu.stageP50)}; CPU ${JSON.stringify(c.stageP50)}`,
      `  GPU runs' GC: ${JSON.stringify(gpu.gc)}; slowest 2 %: ${JSON.stringify(gpu.tail)}`,
      `  device→host by model ${JSON.stringify(Object.fromEntries(Object.entries(gpu.last.copies.models).map(([k, v]) => [k, v.deviceToHost])))}`,
      `  sessions: ${JSON.stringify(gpu.last.bindings)}; CUDA graphs: ${JSON.stringify(gpu.last.graphs ?? {})}`,
      `  open ${r2(o.ms.total)} ms (load ${r2(o.ms.load)}, pre-warm ${r2(o.ms.prewarm)}): ${Object.entries(o.prewarm)
        .map(([m, w]) => `${m} ${w.shapes.length} shapes ${r2(w.ms)} ms${w.skipped ? ` (${w.skipped.code})` : ''}`)
        .join(', ')}`,
    );
  } finally {
    await g.runner.close();
    await cpu.close();
  }
}

/**
 * Cold starts as fresh processes, median of `--cold-runs`: `xpkg run` as a user types it (one
 * image: no pre-warm, so no CUDA graphs), and the library (cold-child.ts) with open's pre-warm
 * auto and off. `--cold-stock` adds the stock binding (XPKG_ORT_CAPI=off: cuDNN's exhaustive
 * search; tens of seconds on the OCR package, so one run each).
 */
function coldStart(lines: string[], out: Record<string, unknown>, modes: Record<string, string>): void {
  const packages = [
    ['fixtures/dist/detector.xpkg', join(DATA, 'det-scene-1080p.png'), modes.detector ?? 'variant'],
    [OCR_PACKAGE, join(DATA, 'ocr-page-1080p.png'), modes.ocr ?? 'variant'],
  ];
  const res: Record<string, unknown> = {};
  lines.push('', `cold start, process start → first result (verification, GPU variant; median of ${COLD})`);
  const time = (
    name: string,
    runs: number,
    args: string[],
    env: NodeJS.ProcessEnv,
    describe: (last: any) => string,
  ) => {
    const walls: number[] = [];
    let last: any = {};
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      const p = spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, ...env } });
      walls.push(performance.now() - t);
      try {
        last = p.status === 0 ? JSON.parse(p.stdout.trim().split('\n').pop()!) : { error: p.stderr.slice(-1000) };
      } catch {
        last = { error: `${p.stdout.slice(-500)} ${p.stderr.slice(-500)}` };
      }
    }
    res[name] = { wallMs: r2(pct(walls, 50)), all: walls.map(r2), last };
    const detail = last.error ? `failed: ${String(last.error).slice(-300)}` : describe(last);
    lines.push(`  ${name.padEnd(48)} ${r2(pct(walls, 50))} ms (${detail})`);
  };
  for (const [pkg, image] of packages) {
    const name = pkg.split('/').pop()!;
    time(`${name} xpkg run`, COLD, ['bin/xpkg.js', 'run', pkg, '-i', image, '--trust', TRUST[0], '--json'], {}, (l) => {
      const r = l.result ?? {};
      const stages = Object.entries(r.timings ?? {})
        .map(([k, v]) => `${k} ${r2(Number(v))}`)
        .join(', ');
      return `open ${r2(Number(r.open?.ms?.total))}; ${stages}; providers ${JSON.stringify(r.actualProvider)}`;
    });
  }
  const library = (prewarm: string, capi: string) =>
    packages.forEach(([pkg, image, mode]) =>
      time(
        `${pkg.split('/').pop()!} prewarm ${prewarm} HEURISTIC ${capi}`,
        capi === 'on' ? COLD : 1,
        ['dist-tools/bench/gpu/cold-child.js', pkg, image, mode, prewarm],
        capi === 'off' ? { XPKG_ORT_CAPI: 'off' } : {},
        (c) =>
          `${mode}; in-process: import ${r2(Number(c.importMs))}, open ${r2(Number(c.openMs))} of which pre-warm ${r2(Number(c.prewarmMs))}, first run ${r2(Number(c.firstRunMs))}; binding ${JSON.stringify(c.bindings)}`,
      ),
    );
  for (const prewarm of ['auto', 'off']) library(prewarm, 'on');
  if (argv.includes('--cold-stock')) for (const prewarm of ['auto', 'off']) library(prewarm, 'off');
  // side by side: the one-shot CLI against the library pre-warming in open, and against the goal
  for (const [pkg] of packages) {
    const name = pkg.split('/').pop()!;
    const wall = (k: string) => (res[k] as { wallMs?: number } | undefined)?.wallMs ?? Number.NaN;
    const cli = wall(`${name} xpkg run`);
    lines.push(
      `  ${name}: xpkg run / pre-warmed open = ${r2(cli / wall(`${name} prewarm auto HEURISTIC on`))}; / goal 2000 ms = ${r2(cli / 2000)}`,
    );
  }
  out.coldStart = res;
}

const lines: string[] = [];
const out: Record<string, unknown> = {};
let printed = 0;
/** Runs one benchmark, then prints its lines and writes everything known so far (a time limit may end the run). */
const step = async (name: string, f: () => Promise<void> | void) => {
  try {
    await f();
  } catch (e) {
    out[`${name}Error`] = String((e as Error)?.stack ?? e).slice(0, 2000);
    lines.push(`${name} failed: ${(e as Error)?.message}`);
  }
  process.stdout.write(`${lines.slice(printed).join('\n')}\n`);
  printed = lines.length;
  if (OUT) writeFileSync(OUT, JSON.stringify(out, null, 1));
};
const only = flag('--only', 'detector,ocr,cold').split(',');
if (only.includes('detector')) await step('detector', () => detector(lines, out));
if (only.includes('ocr')) await step('ocr', () => ocr(lines, out));
if (only.includes('cold'))
  await step('coldStart', () =>
    coldStart(lines, out, {
      detector: (out.detector as { gpuMode?: string } | undefined)?.gpuMode ?? 'variant',
      ocr: (out.ocr as { gpuMode?: string } | undefined)?.gpuMode ?? 'variant',
    }),
  );
