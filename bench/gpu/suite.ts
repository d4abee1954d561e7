/**
 * The GPU suite (`npm run test:gpu`), for a machine with an NVIDIA GPU and the CUDA provider
 * installed (`xpkg gpu install`); plain node, no npm needed:
 *
 *   node dist-tools/bench/gpu/suite.js [--data dir] [--runs n] [--out file.json] [pkg.xpkg …]
 *
 * For each package (default: the shipped detector, OCR and multi-variant packages) it opens the
 * package for this GPU — its GPU variants when selection picks one, otherwise its models forced
 * onto cuda (reported as `forced`) — and for the CPU alone (a CPU-only host's variants), runs both
 * on every test image (make-data.ts) and checks: the GPU models really ran on cuda (actualProvider,
 * nodes per provider), nothing fell back silently, outputs match the CPU's (OCR text identical,
 * boxes within 0.5 px, tensors within 1 %), and no first run at a pre-warmed shape took more than
 * 2× its steady time. It reports open's cost, first-run vs steady per shape (with and without
 * pre-warm), bytes copied device → host per image (goal ≤ 64 KB), and latency GPU vs CPU. One JSON
 * document on stdout (and --out); a summary on stderr; exit 1 when a check fails.
 */
import { writeFileSync } from 'node:fs';
import { OnnxruntimeBackend } from '../../runner/backends/onnxruntime.js';
import { ortBinding } from '../../runner/gpu-install.js';
import { checkAccel, probeAccelEnv } from '../../runner/host-accel.js';
import type { Runner, RunResult } from '../../runner/runner.js';
import type { DType, Tensor, TypedData } from '../../runner/types.js';
import {
  ACCELERATED,
  compareOutputs,
  GPU_PROVIDER,
  inputsFor,
  openCpu,
  openGpu,
  pct,
  type RawImage,
  r2,
  testImages,
  timeRuns,
} from './common.js';

const argv = process.argv.slice(2);
const flag = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv.splice(i, 2)[1] : undefined;
};
const DATA = flag('--data') ?? '.gpu/data';
const RUNS = Number(flag('--runs') ?? 30);
const OUT = flag('--out');
const PACKAGES = argv.length
  ? argv
  : ['fixtures/dist/detector.xpkg', 'fixtures/dist/paddleocr-v4.xpkg', 'fixtures/dist/multi-variant.xpkg'];
const BYTES_GOAL = 64 * 1024;

interface Check {
  name: string;
  /** null: reported, not judged. */
  ok: boolean | null;
  detail?: unknown;
}
const checks: Check[] = [];
const check = (name: string, ok: boolean | null, detail?: unknown) => checks.push({ name, ok, detail });

const zeros = (type: DType, n: number): TypedData =>
  type === 'float16'
    ? new Uint16Array(n)
    : type === 'int64'
      ? new BigInt64Array(n)
      : type === 'uint8'
        ? new Uint8Array(n)
        : type === 'int32'
          ? new Int32Array(n)
          : new Float32Array(n);

/** First run at a shape, then the median of `runs` more, on the runner's own session of `model`. */
async function firstVsSteady(runner: Runner, model: string, dims: Record<string, number[]>, runs: number) {
  const s = await runner.session(model);
  const types = new Map((s.inputShapes ?? []).map((i) => [i.name, i.type as DType]));
  const feeds: Record<string, Tensor> = {};
  for (const [k, d] of Object.entries(dims)) {
    const type = types.get(k) ?? 'float32';
    feeds[k] = {
      type,
      dims: d,
      data: zeros(
        type,
        d.reduce((a, b) => a * b, 1),
      ),
    };
  }
  let t = performance.now();
  await s.run(feeds);
  const first = performance.now() - t;
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    t = performance.now();
    await s.run(feeds);
    times.push(performance.now() - t);
  }
  return { first: r2(first), steady: r2(pct(times, 50)), ratio: r2(first / pct(times, 50)) };
}

const inferTimes = (r: RunResult) =>
  Object.fromEntries(
    Object.entries(r.timings)
      .filter(([k]) => k.startsWith('infer:'))
      .map(([k, v]) => [k.slice(6), v]),
  );

async function checkPackage(pkg: string, images: RawImage[]): Promise<Record<string, unknown>> {
  const g = await openGpu(pkg);
  const cpu = await openCpu(pkg);
  const name = pkg.split('/').pop()!;
  const m = g.runner.manifest;
  const rep: Record<string, unknown> = { package: name, mode: g.mode, gpuModels: g.gpuModels, openMs: r2(g.openMs) };
  rep.open = g.runner.opened;
  check(
    `${name}: GPU variant selected`,
    g.mode === 'variant' ? true : null,
    g.mode === 'variant'
      ? g.runner.selection.models.map((x) => `${x.model}: ${x.chosen?.variant.id}`)
      : `no GPU variant chosen (or XPKG_SUITE_MODE=forced): its models were forced onto ${GPU_PROVIDER}`,
  );
  try {
    const isImage = m.inputs.some((i) => i.type === 'image');
    const sets = isImage
      ? images.map((img) => ({ img, inputs: inputsFor(m, img)! }))
      : [{ img: undefined, inputs: inputsFor(m, undefined)! }];
    const rows: Record<string, unknown>[] = [];
    const covered = new Set(
      Object.entries(g.runner.opened.prewarm)
        .filter(([, p]) => p.shapes.length && !p.skipped)
        .map(([k]) => k),
    );
    let maxCopied = 0;
    for (const { img, inputs } of sets) {
      const first = await g.runner.run(inputs);
      const again: RunResult[] = [];
      // three more runs for a steady time; one when a run takes seconds (a package without shape buckets)
      for (let i = 0; i < (first.timings.total > 2000 ? 1 : 3); i++) again.push(await g.runner.run(inputs));
      const c = await cpu.run(inputs);
      const cmp = compareOutputs(m, first.outputs, c.outputs);
      const ft = inferTimes(first);
      const steady = Object.fromEntries(
        Object.keys(ft).map((k) => [
          k,
          pct(
            again.map((r) => inferTimes(r)[k]),
            50,
          ),
        ]),
      );
      maxCopied = Math.max(maxCopied, first.copies.deviceToHost);
      const where = img?.name ?? 'tensor';
      const gpuOk = g.gpuModels.every((x) => ACCELERATED(first.actualProvider[x]));
      const silent = g.gpuModels.filter((x) => !ACCELERATED(first.actualProvider[x]) && !first.fallbacks[x]?.length);
      check(`${name} ${where}: ran on the GPU`, gpuOk, first.actualProvider);
      check(
        `${name} ${where}: no silent fallback`,
        silent.length === 0 && Object.keys(first.fallbacks).length === 0,
        first.fallbacks,
      );
      check(`${name} ${where}: outputs match the CPU's`, cmp.ok, cmp.detail);
      // cuDNN HEURISTIC search needs xpkg's C API binding (built by `xpkg gpu install`); without it, a warning with why
      const bindings = Object.values(first.bindings ?? {});
      check(
        `${name} ${where}: CUDA sessions through xpkg's C API binding (cuDNN HEURISTIC)`,
        bindings.length > 0 && bindings.every((b) => b.name === 'xpkg-ort-capi') ? true : null,
        first.bindings ?? 'no CUDA sessions',
      );
      for (const model of covered) {
        if (ft[model] === undefined) continue;
        // a shape pre-warmed in open: its first run within 2× steady (plus 1 ms of timer noise)
        check(`${name} ${where}: ${model} first run ≤ 2× steady`, ft[model] <= 2 * steady[model] + 1, {
          first: r2(ft[model]),
          steady: r2(steady[model]),
        });
      }
      rows.push({
        image: where,
        ...(img ? { size: `${img.width}x${img.height}` } : {}),
        variant: first.variant,
        actualProvider: first.actualProvider,
        nodes: first.nodes,
        inferFirst: Object.fromEntries(Object.entries(ft).map(([k, v]) => [k, r2(v)])),
        inferSteady: Object.fromEntries(Object.entries(steady).map(([k, v]) => [k, r2(v)])),
        copies: first.copies,
        gpuTotalMs: r2(
          pct(
            again.map((r) => r.timings.total),
            50,
          ),
        ),
        cpuTotalMs: r2(c.timings.total),
        match: cmp.detail,
      });
    }
    rep.inputs = rows;
    for (const model of g.gpuModels) {
      // known once the model has run (an image without text lines never runs the recogniser)
      const nodes = rows
        .map((r) => (r.nodes as Record<string, Record<string, number>>)[model])
        .find((n) => n !== undefined);
      check(`${name}: ${model} nodes on ${GPU_PROVIDER}`, (nodes?.[GPU_PROVIDER] ?? 0) > 0, nodes);
      // a node onnxruntime placed on the CPU copies its inputs off the device inside the run (uncounted)
      check(`${name}: ${model} no nodes left on the CPU`, (nodes?.cpu ?? 0) === 0 ? true : null, nodes);
    }
    check(`${name}: bytes device → host per image ≤ 64 KB (goal)`, maxCopied <= BYTES_GOAL ? true : null, {
      max: maxCopied,
    });

    // per pre-warmed shape: the first run after open against steady, and without pre-warm
    const shapes: Record<string, unknown[]> = {};
    const cold = await openGpu(pkg, { prewarm: 'off' });
    try {
      for (const [model, p] of Object.entries(g.runner.opened.prewarm)) {
        shapes[model] = [];
        for (const s of p.shapes) {
          const warm = await firstVsSteady(g.runner, model, s.dims, 10);
          const withoutPrewarm =
            p.shapes.length <= 8 ? (await firstVsSteady(cold.runner, model, s.dims, 3)).first : undefined;
          shapes[model].push({ dims: s.dims, prewarmMs: r2(s.ms), ...warm, withoutPrewarm });
          check(
            `${name}: ${model} ${JSON.stringify(Object.values(s.dims))} first after open ≤ 2× steady`,
            warm.first <= 2 * warm.steady + 1,
            warm,
          );
        }
        if (p.skipped) check(`${name}: ${model} pre-warmed`, null, p.skipped);
      }
    } finally {
      await cold.runner.close();
    }
    rep.shapes = shapes;

    // latency on the largest input, GPU against CPU
    const big = sets.reduce((a, b) =>
      (b.img?.width ?? 0) * (b.img?.height ?? 0) > (a.img?.width ?? 0) * (a.img?.height ?? 0) ? b : a,
    );
    const { ms: gt } = await timeRuns(() => g.runner.run(big.inputs), RUNS, 20_000);
    const { ms: ct } = await timeRuns(() => cpu.run(big.inputs), 10, 10_000);
    rep.latency = {
      input: big.img?.name ?? 'tensor',
      runs: { gpu: gt.length, cpu: ct.length },
      gpu: { p50: r2(pct(gt, 50)), p99: r2(pct(gt, 99)) },
      cpu: { p50: r2(pct(ct, 50)) },
      speedup: r2(pct(ct, 50) / pct(gt, 50)),
    };
  } finally {
    await g.runner.close();
    await cpu.close();
  }
  return rep;
}

async function main(): Promise<void> {
  const out: Record<string, unknown> = {};
  const binding = ortBinding();
  out.accel = checkAccel(await probeAccelEnv({ binding }));
  const init = await new OnnxruntimeBackend().init();
  out.providers = init.providers;
  out.unavailable = init.unavailable;
  check(`${GPU_PROVIDER} provider loads`, Boolean(init.providers?.includes(GPU_PROVIDER)), init.unavailable);
  const images = await testImages(DATA);
  out.images = images.map((i) => `${i.name} ${i.width}x${i.height}`);
  const packages: unknown[] = [];
  out.packages = packages;
  out.checks = checks;
  if (init.providers?.includes(GPU_PROVIDER))
    for (const pkg of PACKAGES) {
      const t = performance.now();
      process.stderr.write(`${pkg}…\n`);
      try {
        packages.push(await checkPackage(pkg, images));
      } catch (e) {
        check(`${pkg}: suite ran`, false, String((e as Error)?.stack ?? e).slice(0, 2000));
      }
      process.stderr.write(`${pkg}: ${r2((performance.now() - t) / 1000)} s\n`);
      // what is known so far, in case the machine's time runs out before the end
      if (OUT) writeFileSync(OUT, JSON.stringify(out, null, 1));
    }
  out.checks = checks;
  const failed = checks.filter((c) => c.ok === false);
  out.summary = {
    checks: checks.length,
    passed: checks.filter((c) => c.ok).length,
    failed: failed.length,
    reported: checks.filter((c) => c.ok === null).length,
  };
  const doc = JSON.stringify(out, null, 1);
  if (OUT) writeFileSync(OUT, doc);
  process.stdout.write(`${doc}\n`);
  for (const c of checks)
    if (c.ok !== true)
      process.stderr.write(
        `${c.ok === false ? 'FAIL' : 'note'} ${c.name}: ${JSON.stringify(c.detail)?.slice(0, 400)}\n`,
      );
  process.stderr.write(`GPU suite: ${JSON.stringify(out.summary)}\n`);
  process.exitCode = failed.length ? 1 : 0;
}

await main();
