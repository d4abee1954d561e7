/**
 * What the GPU suite (suite.ts) and the side-by-side benchmark (side-by-side.ts) share: opening a
 * package for this machine's GPU (its GPU variants when it has them, else its CPU models forced onto
 * the CUDA provider) and for the CPU alone, the test inputs, and output comparison.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { BackendRegistry, OnnxruntimeBackend } from '../../runner/backends/index.js';
import { resolveHost } from '../../runner/host.js';
import type { HostProfile } from '../../runner/host-profile.js';
import { Runner, type RunnerOptions } from '../../runner/runner.js';
import type { Manifest } from '../../spec/schema.js';

export const TRUST = ['fixtures/keys/test.pub'];
/**
 * The provider models without a GPU variant are forced onto: cuda. `XPKG_SUITE_PROVIDER=cpu` makes
 * a dry run of the scripts on a machine without a GPU (every GPU check then fails, as it should).
 */
export const GPU_PROVIDER = process.env.XPKG_SUITE_PROVIDER ?? 'cuda';
/** `XPKG_SUITE_MODE=forced`: models run forced onto GPU_PROVIDER even where a GPU variant exists (e.g. on webgpu). */
const GPU_MODE = process.env.XPKG_SUITE_MODE === 'forced' ? 'forced' : undefined;
export const ACCELERATED = (p: string | undefined) => p !== undefined && p !== 'cpu';
/**
 * A one-file variant on GPU_PROVIDER, for scripts that make sessions of one model through the
 * binding (node-profile.ts, rec-concurrency.ts): ortSessionOptions takes the provider from it.
 */
export const GPU_VARIANT = {
  id: 'm',
  runtime: 'onnxruntime',
  precision: 'fp32',
  files: ['m'],
  requires: { executionProviders: [GPU_PROVIDER] },
} as const;
/** The providers GPU_VARIANT's sessions are asked for, in order. */
export const GPU_PROVIDERS = GPU_PROVIDER === 'cpu' ? ['cpu'] : ['cuda', 'cpu'];

export const pct = (xs: readonly number[], p: number) =>
  xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)] : Number.NaN;
export const r2 = (x: number) => Math.round(x * 100) / 100;

/**
 * Feeds for a GPU model given its uint8 NHWC image `x`: the image input, and for a model that masks
 * its padding (fixtures/onnx-pad-mask.ts) its `widths` / `heights` inputs at the whole size.
 */
export function imageFeeds(inputNames: readonly string[], x: { type: string; dims: number[]; data: Uint8Array }) {
  const [n, h, w] = x.dims;
  const size = (v: number) => ({ type: 'int32', dims: [n], data: new Int32Array(n).fill(v) });
  return Object.fromEntries(
    inputNames.map((name, i) => [name, i === 0 ? x : name === 'heights' ? size(h) : size(w)] as const),
  );
}

/** The median of `runs` timed calls of `body`, after 3 untimed ones, in ms (2 decimals). */
export async function p50Of(body: () => Promise<unknown>, runs: number): Promise<number> {
  for (let i = 0; i < 3; i++) await body();
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await body();
    t.push(performance.now() - t0);
  }
  return r2(pct(t, 50));
}

/**
 * Times `f` up to `runs` times but stops once `budgetMs` is spent (at least `min` runs): a package
 * whose runs take seconds (no shape buckets on a GPU) must not eat the machine's time.
 */
export async function timeRuns<T>(
  f: () => Promise<T>,
  runs: number,
  budgetMs: number,
  min = 3,
): Promise<{ ms: number[]; last: T }> {
  const ms: number[] = [];
  const start = performance.now();
  let last!: T;
  for (let i = 0; i < runs && (i < min || performance.now() - start < budgetMs); i++) {
    const t = performance.now();
    last = await f();
    ms.push(performance.now() - t);
  }
  return { ms, last };
}

/** This machine as selection sees it, without its GPUs and NPUs: what a CPU-only user gets. */
export async function cpuOnlyHost(): Promise<HostProfile> {
  const h = await resolveHost();
  const ort = h.runtimes.onnxruntime;
  return {
    ...h,
    gpus: [],
    npus: [],
    runtimes: { ...h.runtimes, ...(ort ? { onnxruntime: { ...ort, providers: ['cpu'] } } : {}) },
  };
}

export interface GpuOpen {
  runner: Runner;
  /** `variant`: selection chose a GPU variant; `forced`: the package has none, its models run on cuda anyway. */
  mode: 'variant' | 'forced';
  /** Models expected on the GPU. */
  gpuModels: string[];
  openMs: number;
}

/**
 * Opens a package for the GPU: its own GPU variants when selection picks one, else every model
 * forced onto cuda. `mode` skips finding out (a cold start opens once).
 */
export async function openGpu(
  pkg: string,
  extra: RunnerOptions = {},
  mode: GpuOpen['mode'] | undefined = GPU_MODE,
): Promise<GpuOpen> {
  const base: RunnerOptions = { trust: TRUST, stateDir: '/tmp/xpkg-gpu-state', ...extra };
  let t = performance.now();
  if (mode !== 'forced') {
    const runner = await Runner.open(pkg, base);
    const chosen = runner.selection.models.filter((m) => m.chosen?.providers?.some(ACCELERATED)).map((m) => m.model);
    if (chosen.length || mode === 'variant')
      return { runner, mode: 'variant', gpuModels: chosen, openMs: performance.now() - t };
    await runner.close();
  }
  const registry = new BackendRegistry();
  registry.register(new OnnxruntimeBackend({ forceProviders: [GPU_PROVIDER] }), 100);
  t = performance.now();
  const forced = await Runner.open(pkg, { prewarm: 'always', ...base, registry });
  return {
    runner: forced,
    mode: 'forced',
    gpuModels: forced.manifest.models.map((m) => m.id),
    openMs: performance.now() - t,
  };
}

/** The same package as a CPU-only host runs it (its CPU variants). */
export async function openCpu(pkg: string): Promise<Runner> {
  return Runner.open(pkg, { trust: TRUST, stateDir: '/tmp/xpkg-gpu-state', host: await cpuOnlyHost(), prewarm: 'off' });
}

export interface RawImage {
  name: string;
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3;
}

/** Decodes a PNG to RGB pixels in memory (the runner then gets raw pixels: no decode in the timings). */
export async function rawImage(path: string, name = path): Promise<RawImage> {
  const { data, info } = await sharp(readFileSync(path)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return {
    name,
    data: new Uint8Array(data.buffer, data.byteOffset, data.length),
    width: info.width,
    height: info.height,
    channels: 3,
  };
}

/** The test images: every PNG of `dir` (made by make-data.ts), plus `extra` files. */
export async function testImages(dir: string, extra: string[] = []): Promise<RawImage[]> {
  const files = [
    ...readdirSync(dir)
      .filter((f) => f.endsWith('.png'))
      .sort()
      .map((f) => join(dir, f)),
    ...extra,
  ];
  return Promise.all(files.map((f) => rawImage(f, f.split('/').pop()!)));
}

/** The inputs of a package for one image (or the one tensor of a tensor package). */
export function inputsFor(m: Manifest, image: RawImage | undefined): Record<string, unknown> | null {
  const inputs: Record<string, unknown> = {};
  for (const i of m.inputs) {
    if (i.type === 'image') {
      if (!image) return null;
      inputs[i.name] = { data: image.data, width: image.width, height: image.height, channels: 3 };
    } else if (i.type === 'tensor') inputs[i.name] = { type: 'float32', dims: [3], data: new Float32Array([1, 2, 3]) };
    else if (!i.optional) return null;
  }
  return inputs;
}

interface Box {
  box: number[];
  class?: number;
  label?: string;
  score: number;
}

/** Largest coordinate difference between matched boxes (same class, best IoU), or why they do not match. */
export function compareBoxes(a: Box[], b: Box[]): { ok: boolean; maxPx: number; detail?: string } {
  if (a.length !== b.length)
    return { ok: false, maxPx: Number.POSITIVE_INFINITY, detail: `${a.length} vs ${b.length} boxes` };
  const iou = (p: number[], q: number[]) => {
    const w = Math.max(0, Math.min(p[2], q[2]) - Math.max(p[0], q[0]));
    const h = Math.max(0, Math.min(p[3], q[3]) - Math.max(p[1], q[1]));
    const u = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - w * h;
    return u > 0 ? (w * h) / u : 0;
  };
  const used = new Set<number>();
  let maxPx = 0;
  for (const x of a) {
    let best = -1;
    let bestIou = 0;
    b.forEach((y, j) => {
      if (used.has(j) || y.class !== x.class) return;
      const v = iou(x.box, y.box);
      if (v > bestIou) [best, bestIou] = [j, v];
    });
    if (best < 0) return { ok: false, maxPx: Number.POSITIVE_INFINITY, detail: `no match for ${JSON.stringify(x)}` };
    used.add(best);
    for (let k = 0; k < 4; k++) maxPx = Math.max(maxPx, Math.abs(x.box[k] - b[best].box[k]));
  }
  return { ok: maxPx <= 0.5, maxPx };
}

/** GPU vs CPU outputs, per the manifest's declared output types. */
export function compareOutputs(
  m: Manifest,
  gpu: Record<string, unknown>,
  cpu: Record<string, unknown>,
): { ok: boolean; detail: Record<string, unknown> } {
  const detail: Record<string, unknown> = {};
  let ok = true;
  for (const o of m.outputs) {
    const g = gpu[o.name] as never;
    const c = cpu[o.name] as never;
    if (o.type === 'text-lines') {
      const gt = (g as { text: string }[]).map((l) => l.text);
      const ct = (c as { text: string }[]).map((l) => l.text);
      const same = JSON.stringify(gt) === JSON.stringify(ct);
      detail[o.name] = { identical: same, lines: gt.length, ...(same ? {} : { gpu: gt, cpu: ct }) };
      ok &&= same;
    } else if (o.type === 'boxes') {
      const r = compareBoxes(g, c);
      detail[o.name] = { boxes: (g as unknown[]).length, maxPx: r2(r.maxPx), ...(r.detail ? { why: r.detail } : {}) };
      ok &&= r.ok;
    } else if (o.type === 'tensor') {
      const gd = (g as { data: ArrayLike<number> }).data;
      const cd = (c as { data: ArrayLike<number> }).data;
      let d = 0;
      let scale = 0;
      for (let i = 0; i < cd.length; i++) {
        d = Math.max(d, Math.abs(Number(gd[i]) - Number(cd[i])));
        scale = Math.max(scale, Math.abs(Number(cd[i])));
      }
      const rel = scale ? d / scale : d;
      detail[o.name] = { maxAbs: d, rel };
      ok &&= gd.length === cd.length && rel <= 1e-2;
    } else {
      const same = JSON.stringify(g) === JSON.stringify(c);
      detail[o.name] = { identical: same };
      ok &&= same;
    }
  }
  return { ok, detail };
}
