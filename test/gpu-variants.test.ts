/**
 * The GPU variants of the shipped OCR and detector packages (fixtures/dist, built by `npm run
 * fixtures`), on this CPU machine: they are in the packages, selection picks them on GPU host
 * profiles and never on CPU ones, and their real models — uint8 input normalised
 * in the graph, outputs reduced in the graph — run by onnxruntime's CPU provider through the
 * packages' pipelines (their step patches applied) read the same text and find the same boxes as
 * the CPU variants, while returning a fraction of the bytes.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BEST_ROWS } from '../fixtures/detector/build.js';
import { pages, renderPng } from '../fixtures/images/render.js';
import { PackageReader } from '../pack/reader.js';
import { BackendRegistry, OnnxruntimeBackend } from '../runner/backends/index.js';
import { loadHostProfile } from '../runner/host-profile.js';
import type { DetectedBox, TextLine } from '../runner/pipeline/index.js';
import { Runner, type RunnerOptions } from '../runner/runner.js';
import { ONE_SHOT_PRECISION, type PrecisionPolicy, selectVariants } from '../runner/select.js';
import type { Manifest } from '../spec/schema.js';
import { gpuVariantsOnCpu } from './helpers/gpu-on-cpu.js';
import { meanAveragePrecision, pairBoxes } from './helpers/metrics.js';
import { recVariantFor } from './helpers/ocr-variants.js';
import { tempDir } from './helpers/source.js';

const OCR = 'fixtures/dist/paddleocr-v4.xpkg';
const DETECTOR = 'fixtures/dist/detector.xpkg';
const host = (name: string) => loadHostProfile(`fixtures/hosts/${name}.json`);
const base = (): RunnerOptions => ({ trust: ['fixtures/keys/test.pub'], stateDir: tempDir('xpkg-state-'), threads: 2 });

async function manifestOf(path: string): Promise<Manifest> {
  const r = await PackageReader.open(path);
  try {
    return r.manifest;
  } finally {
    await r.close();
  }
}

let ocr: Manifest;
let detector: Manifest;
beforeAll(async () => {
  ocr = await manifestOf(OCR);
  detector = await manifestOf(DETECTOR);
});

describe('GPU variants in the built packages', () => {
  it('each model has CUDA variants after its CPU ones: the detector’s and OCR recogniser’s half ones half the size, OCR’s float32 ones the same', () => {
    for (const [m, gpuIds] of [
      [ocr, [['det-cuda-fp32'], ['cls-cuda-fp32'], ['rec-cuda-fp32', 'rec-cuda-fp16']]],
      [detector, [['cuda-fp16']]],
    ] as const) {
      m.models.forEach((model, i) => {
        const gpus = model.variants.filter((v) => v.requires?.accelerator);
        expect(gpus.map((v) => v.id)).toEqual(gpuIds[i]);
        expect(model.variants.slice(-gpus.length)).toEqual(gpus);
        const size = (v: (typeof model.variants)[number]) => m.files.find((f) => f.path === v.files[0])!.size;
        const fp32 = model.variants.find((v) => v.precision === 'fp32' && !v.requires?.accelerator)!;
        for (const gpu of gpus) {
          expect(gpu).toMatchObject({ requires: { executionProviders: ['cuda'] } });
          expect(gpu.requires?.accelerator).toMatchObject({ kind: 'gpu', vendor: 'nvidia' });
          expect(gpu.steps && Object.keys(gpu.steps).length).toBeGreaterThan(0);
          const [lo, hi] = gpu.precision === 'fp16' ? [0.45, 0.56] : [0.98, 1.02];
          expect(size(gpu) / size(fp32), gpu.id).toBeGreaterThan(lo);
          expect(size(gpu) / size(fp32), gpu.id).toBeLessThan(hi);
        }
      });
    }
    // both recognisers patch the pipeline the same way
    const [a, b] = ocr.models[2].variants.slice(-2);
    expect(a.steps).toEqual(b.steps);
  });

  it('ocr-script, whose pipeline lacks the steps they change, has none', async () => {
    const m = await manifestOf('fixtures/dist/ocr-script.xpkg');
    expect(m.models.flatMap((x) => x.variants.map((v) => v.id))).toEqual([
      'det-cpu-fp32',
      'cls-cpu-fp32',
      'rec-cpu-fp32',
      'rec-cpu-int8',
    ]);
  });
});

describe('selection with injected host profiles', () => {
  const chosen = (m: Manifest, h: string, precision?: Partial<PrecisionPolicy>) =>
    selectVariants(m, host(h), { backends: ['onnxruntime'], ...(precision ? { precision } : {}) }).models.map(
      (x) => x.chosen?.variant.id,
    );

  it.each(['h100', 'rtx4090', 'rtx3050-laptop'])(
    '%s (NVIDIA, CUDA provider) runs every model on its GPU variant, the half recogniser unless one-shot',
    (h) => {
      expect(chosen(ocr, h)).toEqual(['det-cuda-fp32', 'cls-cuda-fp32', 'rec-cuda-fp16']);
      expect(chosen(detector, h)).toEqual(['cuda-fp16']);
      // one-shot runs put float32 first on GPUs; the detector's only GPU variant is half, and stays
      expect(chosen(ocr, h, ONE_SHOT_PRECISION)).toEqual(['det-cuda-fp32', 'cls-cuda-fp32', 'rec-cuda-fp32']);
      expect(chosen(detector, h, ONE_SHOT_PRECISION)).toEqual(['cuda-fp16']);
    },
  );

  it.each(['x64-avx2', 'x64-avx512-vnni', 'apple-m2', 'graviton3', 'jetson-orin', 'gpu-no-cuda'])(
    '%s keeps the CPU variants',
    (h) => {
      // the recogniser's int8 variant where the CPU has int8 dot products (all of these but x64-avx2)
      expect(chosen(ocr, h)).toEqual(['det-cpu-fp32', 'cls-cpu-fp32', recVariantFor(host(h).cpu.features)]);
      expect(chosen(detector, h)).toEqual(['cpu-fp32']);
    },
  );

  it('says why not: no CUDA provider, or an NVIDIA GPU older than sm_75', () => {
    const reasons = (h: ReturnType<typeof host>) =>
      selectVariants(detector, h, { backends: ['onnxruntime'] })
        .models[0].variants.find((v) => v.variant.id === 'cuda-fp16')!
        .reasons.map((r) => r.code);
    expect(reasons(host('gpu-no-cuda'))).toEqual(['provider']);
    const v100 = host('h100');
    v100.gpus = v100.gpus.map((g) => ({ ...g, name: 'Tesla V100', arch: 'sm_70' }));
    expect(reasons(v100)).toEqual(['accelerator-arch']);
  });
});

describe('the GPU variants on onnxruntime CPU match the CPU variants', () => {
  const gpu = gpuVariantsOnCpu();
  let cpuRunner: Runner;
  /** The pre-warming runner's variants (half recogniser), and a one-shot runner's (float32 recogniser). */
  const gpuRunners: Record<'fp16' | 'fp32', Runner> = {} as never;
  beforeAll(async () => {
    // the float32 CPU variants, which the GPU models are made from (not the int8 recogniser a VNNI CPU picks)
    cpuRunner = await Runner.open(OCR, { ...base(), precision: 'fp32' });
    const gpuHost = { ...base(), host: host('h100'), registry: gpu.registry, prewarm: 'off' as const };
    gpuRunners.fp16 = await Runner.open(OCR, gpuHost);
    gpuRunners.fp32 = await Runner.open(OCR, { ...gpuHost, oneShot: true });
  });
  afterAll(async () => {
    await cpuRunner?.close();
    for (const r of Object.values(gpuRunners)) await r?.close();
  });

  const corpus = pages();
  const images: [string, () => Promise<Buffer>][] = [
    ['example.png', async () => readFileSync('fixtures/images/example.png')],
    // upside-down and rotated lines exercise the classifier and the 180° turn; receipt and
    // two-column, small text and many lines
    // dense: the page whose spaces went when the recogniser read its padding
    ...['upside-down', 'rotated-90', 'receipt', 'two-column', 'dense'].map(
      (n) => [n, () => renderPng(corpus.find((p) => p.name === n)!)] as [string, () => Promise<Buffer>],
    ),
  ];

  it.each(images.flatMap(([name, load]) => (['fp16', 'fp32'] as const).map((rec) => [name, rec, load] as const)))(
    'OCR %s, %s recogniser: the same lines, boxes within a pixel, far fewer bytes back',
    async (name, precision, load) => {
      const image = await load();
      gpu.bytes.reset();
      const a = await cpuRunner.run({ image });
      const b = await gpuRunners[precision].run({ image });
      const recVariant = `rec-cuda-${precision}`;
      expect(b.variant).toEqual({ det: 'det-cuda-fp32', cls: 'cls-cuda-fp32', rec: recVariant });
      const la = a.outputs.lines as TextLine[];
      const lb = b.outputs.lines as TextLine[];
      expect(la.length).toBeGreaterThan(0);
      // the recogniser masks its bucket padding (fixtures/onnx-pad-mask.ts): without that, dense's
      // two borderline spaces ("show close", "neighbours run") went with 32 columns of grey
      expect(lb.map((l) => l.text)).toEqual(la.map((l) => l.text));
      // the mean character score moves (8-bit packed scores, padding) by up to 0.03
      lb.forEach((l, i) => {
        expect(Math.abs(l.score - la[i].score)).toBeLessThan(0.03);
        l.box.forEach(([x, y], k) => {
          expect(Math.abs(x - la[i].box[k][0])).toBeLessThanOrEqual(1);
          expect(Math.abs(y - la[i].box[k][1])).toBeLessThanOrEqual(1);
        });
      });
      // det: the thresholded map as sparse 8×8 mask blocks; rec: 4 bytes a step instead of 4 × 6625
      const det = gpu.bytes.byVariant.get('det-cuda-fp32')!;
      const rec = gpu.bytes.byVariant.get(recVariant)!;
      expect(det).toBeGreaterThan(0);
      expect(rec).toBeGreaterThan(0);
      expect(rec).toBeLessThan(64 * 1024);
    },
  );
});

describe('a one-shot runner on a GPU', () => {
  it('runs the later models once in the background (the first touch), not the first one, and close waits for it', async () => {
    const touched = async (o: Partial<RunnerOptions>) => {
      const gpu = gpuVariantsOnCpu();
      const r = await Runner.open(OCR, { ...base(), host: host('h100'), registry: gpu.registry, ...o });
      await r.close();
      return [gpu.loads.map((l) => l.variant), [...gpu.bytes.byVariant.keys()].sort()];
    };
    expect(await touched({ oneShot: true })).toEqual([
      ['cls-cuda-fp32', 'rec-cuda-fp32'],
      ['cls-cuda-fp32', 'rec-cuda-fp32'],
    ]);
    expect(await touched({ prewarm: 'off' })).toEqual([[], []]);
  });
});

describe('a GPU host whose CUDA provider fails to load', () => {
  it('falls back to the CPU variants, recorded, and runs their own pipeline (not the GPU patches)', async () => {
    // onnxruntime really attempts CUDA here and fails (no provider libraries on this machine)
    const registry = new BackendRegistry();
    registry.register(new OnnxruntimeBackend({ attemptProviders: ['cuda'] }), 100);
    await using gpuHost = await Runner.open(OCR, { ...base(), host: host('h100'), registry });
    // the h100 profile's CPU has VNNI: its CPU fallback is the int8 recogniser, compared with the same here
    await using cpu = await Runner.open(OCR, { ...base(), precision: 'int8' });
    const image = readFileSync('fixtures/images/example.png');
    const r = await gpuHost.run({ image });
    expect(r.variant).toEqual({ det: 'det-cpu-fp32', cls: 'cls-cpu-fp32', rec: 'rec-cpu-int8' });
    expect(Object.keys(r.fallbacks).sort()).toEqual(['cls', 'det', 'rec']);
    // every GPU variant tried, best first: the half recogniser, then the float32 one
    expect(r.fallbacks.rec.map((f) => f.variant)).toEqual(['rec-cuda-fp16', 'rec-cuda-fp32']);
    expect(r.fallbacks.rec[0]).toMatchObject({ variant: 'rec-cuda-fp16', code: 'E_RUN_LOAD' });
    expect(r.outputs.lines).toEqual((await cpu.run({ image })).outputs.lines);
  });
});

describe('detector GPU variant on onnxruntime CPU', () => {
  it('finds the boxes of cpu-fp32 within 0.5 px, of the same classes, and its mAP, on the committed eval set', async () => {
    const labels = JSON.parse(readFileSync('fixtures/detector/eval/labels.json', 'utf8')) as {
      images: { file: string; boxes: number[][]; labels: number[] }[];
    };
    const gpu = gpuVariantsOnCpu();
    await using cpu = await Runner.open(DETECTOR, { ...base(), variant: 'cpu-fp32' });
    await using gpuRunner = await Runner.open(DETECTOR, { ...base(), host: host('h100'), registry: gpu.registry });
    const dets = { cpu: [] as DetectedBox[][], gpu: [] as DetectedBox[][] };
    let worst = 0;
    for (const e of labels.images) {
      const image = `fixtures/detector/eval/${e.file}`;
      const a = (await cpu.run({ image })).outputs.boxes as DetectedBox[];
      const r = await gpuRunner.run({ image });
      expect(r.variant).toEqual({ detector: 'cuda-fp16' });
      const b = r.outputs.boxes as DetectedBox[];
      const p = pairBoxes(b as { box: number[]; class?: number }[], a as { box: number[]; class?: number }[]);
      expect(p.paired, e.file).toBe(true);
      worst = Math.max(worst, p.worst);
      dets.cpu.push(a);
      dets.gpu.push(b);
    }
    expect(worst).toBeLessThanOrEqual(0.5);
    const map = (d: DetectedBox[][]) =>
      meanAveragePrecision(
        d.map((bs) => ({
          boxes: bs.flatMap((x) => x.box as number[]),
          scores: bs.map((x) => x.score),
          classes: bs.map((x) => x.class!),
        })),
        labels.images.map((e) => ({ boxes: e.boxes.flat(), labels: e.labels })),
        4,
      ).mAP50;
    expect(map(dets.gpu)).toBe(map(dets.cpu));
    // the 1000 best rows of 8 floats come back per image, instead of 2100 × 8 (within #12's 64 KB)
    expect(gpu.bytes.byVariant.get('cuda-fp16')! / labels.images.length).toBe(BEST_ROWS * 8 * 4);
  });
});
