/**
 * On a GPU machine: does xpkg's onnxruntime backend run the shipped models on the CUDA provider,
 * what does it cost against the CPU provider on the same machine, and do the outputs agree?
 *
 *   node dist-tools/bench/gpu/prove-cuda.js [runs=30] [--check]     (npm run test:gpu = --check)
 *
 * Prints one JSON document: the CUDA/WebGPU checks, the backend's providers, the pins checked
 * against the libraries in place, a Runner run of multi-variant.xpkg on the detected host
 * (variant, actualProvider, fallbacks), and per model p50/p90 and first-run ms per provider with the
 * largest output difference. Models are read verified from the signed packages. With --check it
 * exits 1 unless cuda loads, the Runner chose and ran the CUDA variant with no fallback, every model
 * ran on cuda, and outputs agree with the CPU's within 1e-2 of the output's largest magnitude.
 */
import { PackageReader } from '../../pack/reader.js';
import { OnnxruntimeBackend } from '../../runner/backends/onnxruntime.js';
import { installGpuProviders, ortBinding } from '../../runner/gpu-install.js';
import { checkAccel, probeAccelEnv } from '../../runner/host-accel.js';
import { Runner } from '../../runner/runner.js';
import type { Tensor } from '../../runner/types.js';
import type { Variant } from '../../spec/schema.js';

const runs = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 30);
const check = process.argv.includes('--check');
const TRUST = ['fixtures/keys/test.pub'];

const MODELS: { pkg: string; file: string; name: string; dims: number[] }[] = [
  {
    pkg: 'fixtures/dist/paddleocr-v4.xpkg',
    file: 'models/det/ch_PP-OCRv4_det_infer.onnx',
    name: 'ocr-det 960²',
    dims: [1, 3, 960, 960],
  },
  {
    pkg: 'fixtures/dist/paddleocr-v4.xpkg',
    file: 'models/rec/ch_PP-OCRv4_rec_infer.onnx',
    name: 'ocr-rec 48×320',
    dims: [1, 3, 48, 320],
  },
  { pkg: 'fixtures/dist/detector.xpkg', file: 'model.onnx', name: 'detector 320²', dims: [1, 3, 320, 320] },
];

const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const r2 = (x: number) => Math.round(x * 100) / 100;

function input(dims: number[]): Float32Array {
  const n = dims.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) a[i] = ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1; // deterministic, in [-1, 1)
  return a;
}

async function main(): Promise<void> {
  const out: Record<string, unknown> = {};
  const binding = ortBinding();
  out.binding = binding;
  out.accel = checkAccel(await probeAccelEnv({ binding }));
  out.pins = await installGpuProviders({ tarball: '/nonexistent' }).then(
    (r) => r.files.map((f) => `${f.name}: ${f.action}`),
    (e: { code?: string; message?: string }) => `${e.code}: ${e.message}`,
  );
  const backend = new OnnxruntimeBackend();
  const init = await backend.init();
  out.providers = init.providers;
  out.unavailable = init.unavailable;

  {
    const t0 = performance.now();
    await using runner = await Runner.open('fixtures/dist/multi-variant.xpkg', {
      trust: TRUST,
      allowUnsigned: false,
      stateDir: '/tmp/xpkg-state',
    });
    const r = await runner.run({ x: { type: 'float32', dims: [3], data: new Float32Array([1, 2, 3]) } });
    out.runnerMultiVariant = {
      variant: r.variant,
      actualProvider: r.actualProvider,
      fallbacks: r.fallbacks,
      nodes: r.nodes,
      y: [...(r.outputs.y as Tensor).data],
      ms: r2(performance.now() - t0),
    };
  }

  const models: unknown[] = [];
  for (const m of MODELS) {
    const reader = await PackageReader.open(m.pkg);
    const bytes = await reader.readVerified(m.file);
    await reader.close();
    const data = input(m.dims);
    const res: Record<string, unknown> = { model: m.name };
    const outputs: Record<string, Float32Array> = {};
    for (const provider of ['cpu', 'cuda', 'webgpu']) {
      if (!init.providers?.includes(provider)) continue;
      const variant = {
        id: `${m.name}-${provider}`,
        runtime: 'onnxruntime',
        precision: 'fp32',
        files: ['m.onnx'],
        requires: { executionProviders: [provider] },
      } as unknown as Variant;
      const tl = performance.now();
      const s = await backend.load(variant, new Map([['m.onnx', bytes]]), {});
      const loadMs = performance.now() - tl;
      const feeds = { [s.inputNames[0]]: { type: 'float32' as const, dims: m.dims, data } };
      const times: number[] = [];
      let first = 0;
      let last: Record<string, Tensor> = {};
      for (let i = 0; i < runs + 1; i++) {
        const t = performance.now();
        last = await s.run(feeds);
        if (i === 0) first = performance.now() - t;
        else times.push(performance.now() - t);
      }
      outputs[provider] = last[s.outputNames[0]].data as Float32Array;
      res[provider] = {
        actualProvider: s.provider,
        nodes: s.nodesByProvider,
        fallbacks: s.providerFallbacks,
        loadMs: r2(loadMs),
        firstMs: r2(first),
        p50: r2(pct(times, 50)),
        p90: r2(pct(times, 90)),
      };
      await s.release();
    }
    for (const p of ['cuda', 'webgpu']) {
      if (!outputs[p] || !outputs.cpu) continue;
      let d = 0;
      let scale = 0;
      for (let i = 0; i < outputs.cpu.length; i++) {
        d = Math.max(d, Math.abs(outputs.cpu[i] - outputs[p][i]));
        scale = Math.max(scale, Math.abs(outputs.cpu[i]));
      }
      res[`maxAbsDiff_${p}`] = d;
      res[`relDiff_${p}`] = scale ? d / scale : d;
    }
    models.push(res);
  }
  out.models = models;
  process.stdout.write(`${JSON.stringify(out, null, 1)}\n`);
  if (check) {
    const failures = checkFailures(out);
    process.stderr.write(
      failures.length ? `GPU check FAILED:\n${failures.map((f) => `  ${f}`).join('\n')}\n` : 'GPU check passed\n',
    );
    process.exitCode = failures.length ? 1 : 0;
  }
}

/** What must hold on a GPU machine with the CUDA provider installed. */
function checkFailures(out: Record<string, unknown>): string[] {
  const f: string[] = [];
  if (!(out.providers as string[] | undefined)?.includes('cuda'))
    f.push(`cuda does not load: ${JSON.stringify(out.unavailable)}`);
  const r = out.runnerMultiVariant as {
    variant: Record<string, string>;
    actualProvider: Record<string, string>;
    fallbacks: Record<string, unknown>;
  };
  if (r.variant['add-one'] !== 'cuda-fp16') f.push(`Runner chose ${r.variant['add-one']}, not cuda-fp16`);
  if (r.actualProvider['add-one'] !== 'cuda') f.push(`Runner ran on ${r.actualProvider['add-one']}, not cuda`);
  if (Object.keys(r.fallbacks).length) f.push(`Runner fell back: ${JSON.stringify(r.fallbacks)}`);
  for (const m of out.models as Record<string, unknown>[]) {
    const cuda = m.cuda as { actualProvider: string } | undefined;
    if (cuda?.actualProvider !== 'cuda') f.push(`${m.model}: ran on ${cuda?.actualProvider ?? 'nothing'}, not cuda`);
    if (!((m.relDiff_cuda as number) <= 1e-2))
      f.push(`${m.model}: cuda output differs from the cpu's by ${String(m.relDiff_cuda)} of its magnitude`);
  }
  return f;
}

await main();
