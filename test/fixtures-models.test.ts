/**
 * The trained fixtures (fixtures/detector, fixtures/segmenter; trained on the GPU machine by their
 * train.py): each ONNX model loads in onnxruntime-node, reproduces the PyTorch reference output,
 * and reaches the accuracy its metrics.json reports on the committed evaluation set — with the
 * straightforward reference post-processing of test/helpers/metrics.ts, and end to end through
 * the package's own pipeline.
 */

import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GPU_FILE as DETECTOR_GPU_FILE } from '../fixtures/detector/build.js';
import {
  type DetectedBox,
  type LocalContext,
  type Mask,
  openLocalContext,
  runPipeline,
  validatePipeline,
} from '../runner/pipeline/index.js';
import { referencedPaths, validateManifestSource } from '../spec/manifest.js';
import {
  accumulateConfusion,
  argmaxChannels,
  averagePrecision,
  boxIou,
  type Detections,
  decodeDetections,
  type GroundTruth,
  meanAveragePrecision,
  meanIou,
} from './helpers/metrics.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const TOL = 0.02;

interface EvalImage {
  file: string;
  boxes: number[][];
  labels: number[];
  mask?: string;
}

function load<T>(name: string, file: string): T {
  return JSON.parse(readFileSync(join(FIXTURES, name, file), 'utf8')) as T;
}

async function pixels(path: string): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const { data, info } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

/** A label mask PNG (8-bit grey; sharp would hand it back as sRGB without the explicit colourspace). */
async function labelMask(path: string): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const { data, info } = await sharp(path).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

/** RGB HWC u8 → [1, 3, H, W] f32 in [0, 1], the models' input. */
function toInput(rgb: Buffer, width: number, height: number): ort.Tensor {
  const n = width * height;
  const out = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) out[c * n + i] = rgb[3 * i + c] / 255;
  return new ort.Tensor('float32', out, [1, 3, height, width]);
}

async function session(name: string, file: string): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(join(FIXTURES, name, file), {
    intraOpNumThreads: 2,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
}

async function runOne(s: ort.InferenceSession, input: ort.Tensor): Promise<ort.Tensor> {
  const out = await s.run({ [s.inputNames[0]]: input });
  return out[s.outputNames[0]];
}

describe('metric helpers (hand-computed cases)', () => {
  it('all-point AP of hit, miss, hit over two ground-truth boxes is 5/6', () => {
    // recall 0.5, 0.5, 1; precision 1, 0.5, 2/3 → envelope 1 up to recall 0.5, 2/3 after.
    expect(averagePrecision([1, 0, 1], 2)).toBeCloseTo(0.5 * 1 + 0.5 * (2 / 3), 12);
    expect(averagePrecision([1, 1], 2)).toBe(1);
    expect(averagePrecision([0, 0], 2)).toBe(0);
  });

  it('decode keeps the best class, suppresses same-class overlaps only, and respects the threshold', () => {
    // rows: cx cy w h s0 s1
    const out = Float32Array.from([
      50,
      50,
      20,
      20,
      0.9,
      0.1, // kept, class 0
      51,
      50,
      20,
      20,
      0.8,
      0.2, // IoU ≈ 0.9 with row 0, same class: suppressed
      51,
      51,
      20,
      20,
      0.1,
      0.7, // same place, class 1: kept (class-aware)
      10,
      10,
      4,
      4,
      0.05,
      0.01, // under the threshold
    ]);
    const d = decodeDetections(out, 4, 6, { scoreThreshold: 0.1, iouThreshold: 0.5, maxDetections: 10 });
    expect(d.classes).toEqual([0, 1]);
    expect(d.boxes.slice(0, 4)).toEqual([40, 40, 60, 60]);
    expect(d.scores[1]).toBeCloseTo(0.7, 6);
  });

  it('mAP counts a duplicate as a false positive and a wrong class as a miss', () => {
    const gts: GroundTruth[] = [{ boxes: [0, 0, 10, 10, 20, 20, 30, 30], labels: [0, 1] }];
    const dets: Detections[] = [
      { boxes: [0, 0, 10, 10, 0, 0, 10, 10, 20, 20, 30, 30], scores: [0.9, 0.8, 0.7], classes: [0, 0, 0] },
    ];
    const r = meanAveragePrecision(dets, gts, 2);
    expect(r.AP50).toEqual([1, 0]);
    expect(r.mAP50).toBe(0.5);
  });

  it('mIoU from a confusion matrix', () => {
    const conf = new Float64Array(4);
    accumulateConfusion(conf, [0, 0, 1, 1], [0, 1, 1, 1], 2); // truth 0→0, 1→0, 1→1, 1→1
    const r = meanIou(conf, 2);
    expect(r.IoU).toEqual([1 / 2, 2 / 3]);
    expect(argmaxChannels(Float32Array.from([1, 0, 0, 2]), 2, 2)).toEqual(Uint8Array.from([0, 1]));
  });
});

interface Metrics {
  classes: string[];
  postprocess?: { scoreThreshold: number; iouThreshold: number; maxDetections: number };
  committed: { images: number; mAP50?: number; mIoU?: number };
  committedFp16?: { mAP50?: number; mIoU?: number };
}

interface Reference {
  input: string;
  output: { shape: number[]; file: string; stride: number };
}

describe.each(['detector', 'segmenter'])('trained fixture %s', (name) => {
  const metrics = load<Metrics>(name, 'metrics.json');
  const labels = load<{ images: EvalImage[] }>(name, 'eval/labels.json');
  const manifest = validateManifestSource(load(name, 'xpkg.json'));
  const dir = join(FIXTURES, name);

  it('has a valid manifest source whose files exist, models ≤ 10 MB, eval set ≤ 3 MB', () => {
    validatePipeline(manifest as Parameters<typeof validatePipeline>[0]);
    // the GPU variant's model is made by the fixture's build script (fixtures/detector/build.ts)
    const built = name === 'detector' ? [DETECTOR_GPU_FILE] : [];
    for (const p of referencedPaths(manifest).keys()) expect(existsSync(join(dir, p)), p).toBe(!built.includes(p));
    for (const v of manifest.models[0].variants)
      if (!built.includes(v.files[0]))
        expect(statSync(join(dir, v.files[0])).size).toBeLessThanOrEqual(10 * 1024 * 1024);
    const evalBytes = ['labels.json', ...labels.images.flatMap((e) => [e.file, ...(e.mask ? [e.mask] : [])])].reduce(
      (s, f) => s + statSync(join(dir, 'eval', f)).size,
      0,
    );
    expect(evalBytes).toBeLessThanOrEqual(3 * 1024 * 1024);
    expect(labels.images.length).toBe(metrics.committed.images);
    expect(readFileSync(join(dir, 'labels.txt'), 'utf8').trim().split('\n')).toEqual(metrics.classes);
  });

  it('reproduces the PyTorch reference output within 1e-4 (relative above 1)', async () => {
    const ref = load<Reference>(name, 'reference.json');
    const want = new Float32Array(readFileSync(join(dir, ref.output.file)).buffer.slice(0));
    const img = await pixels(join(dir, ref.input));
    const s = await session(name, 'model.onnx');
    const got = (await runOne(s, toInput(img.data, img.width, img.height))).data as Float32Array;
    await s.release();
    expect(got.length).toBe(ref.output.shape.reduce((a, b) => a * b, 1));
    expect(want.length).toBe(Math.ceil(got.length / ref.output.stride));
    let worst = 0;
    for (let i = 0; i < want.length; i++)
      worst = Math.max(worst, Math.abs(got[i * ref.output.stride] - want[i]) / Math.max(1, Math.abs(want[i])));
    expect(worst).toBeLessThanOrEqual(1e-4);
  });

  /** The committed set's metric with the reference post-processing, for one model file. */
  async function score(file: string): Promise<number> {
    const s = await session(name, file);
    try {
      if (name === 'detector') {
        const dets: Detections[] = [];
        const gts: GroundTruth[] = [];
        for (const e of labels.images) {
          const img = await pixels(join(dir, 'eval', e.file));
          const out = await runOne(s, toInput(img.data, img.width, img.height));
          dets.push(decodeDetections(out.data as Float32Array, out.dims[1], out.dims[2], metrics.postprocess!));
          gts.push({ boxes: e.boxes.flat(), labels: e.labels });
        }
        return meanAveragePrecision(dets, gts, metrics.classes.length).mAP50;
      }
      const n = metrics.classes.length;
      const conf = new Float64Array(n * n);
      for (const e of labels.images) {
        const img = await pixels(join(dir, 'eval', e.file));
        const truth = await labelMask(join(dir, 'eval', e.mask!));
        expect(truth.channels).toBe(1);
        const out = await runOne(s, toInput(img.data, img.width, img.height));
        accumulateConfusion(conf, argmaxChannels(out.data as Float32Array, n, img.width * img.height), truth.data, n);
      }
      return meanIou(conf, n).mIoU;
    } finally {
      await s.release();
    }
  }

  const key = name === 'detector' ? 'mAP50' : 'mIoU';

  it(`fp32 model reaches metrics.json's ${key} on the committed eval set (±${TOL})`, async () => {
    const want = metrics.committed[key]!;
    expect(want).toBeGreaterThan(0.95);
    expect(Math.abs((await score('model.onnx')) - want)).toBeLessThanOrEqual(TOL);
  });

  it(`fp16 model reaches metrics.json's ${key} on the committed eval set (±${TOL})`, async () => {
    expect(Math.abs((await score('model-fp16.onnx')) - metrics.committedFp16![key]!)).toBeLessThanOrEqual(TOL);
  });

  describe('end to end through the package pipeline', () => {
    let ctx: LocalContext;
    beforeAll(async () => {
      ctx = await openLocalContext(dir, { threads: 2 });
    });
    afterAll(async () => ctx?.release());

    it(`reaches the reported ${key} on the committed eval set`, async () => {
      if (name === 'detector') {
        const dets: Detections[] = [];
        const gts: GroundTruth[] = [];
        for (const e of labels.images) {
          const boxes = (await runPipeline(ctx, { image: join(dir, 'eval', e.file) })).outputs.boxes as DetectedBox[];
          expect(boxes.every((b) => b.label === metrics.classes[b.class!])).toBe(true);
          dets.push({
            boxes: boxes.flatMap((b) => b.box as number[]),
            scores: boxes.map((b) => b.score),
            classes: boxes.map((b) => b.class!),
          });
          gts.push({ boxes: e.boxes.flat(), labels: e.labels });
        }
        // The package keeps scores ≥ 0.25 (metrics.json: ≥ 0.001), which can only cut the AP's tail.
        expect(meanAveragePrecision(dets, gts, metrics.classes.length).mAP50).toBeGreaterThanOrEqual(
          metrics.committed.mAP50! - TOL,
        );
        return;
      }
      const n = metrics.classes.length;
      const conf = new Float64Array(n * n);
      for (const e of labels.images) {
        const mask = (await runPipeline(ctx, { image: join(dir, 'eval', e.file) })).outputs.mask as Mask;
        const truth = await labelMask(join(dir, 'eval', e.mask!));
        expect([mask.width, mask.height]).toEqual([truth.width, truth.height]);
        accumulateConfusion(conf, mask.data, truth.data, n);
      }
      expect(Math.abs(meanIou(conf, n).mIoU - metrics.committed.mIoU!)).toBeLessThanOrEqual(TOL);
    });

    it('maps results of a letterboxed, non-square image back to that image', async () => {
      // Each eval image scaled 2× and cut to 4:3: the pipeline letterboxes it (grey bars top and
      // bottom, shapes back at their trained size) and must map its answer onto the 2× picture.
      // (Shapes the letterbox would shrink below the trained size range, ~12 px, are missed.)
      const size = name === 'detector' ? 320 : 256;
      const w = 2 * size,
        h = (3 * w) / 4;
      let found = 0,
        total = 0;
      const n = metrics.classes.length;
      const conf = new Float64Array(n * n);
      for (const e of labels.images.slice(0, 6)) {
        const big = await sharp(join(dir, 'eval', e.file))
          .resize(w, w)
          .png()
          .toBuffer();
        const image = await sharp(big).extract({ left: 0, top: 0, width: w, height: h }).png().toBuffer();
        const outputs = (await runPipeline(ctx, { image })).outputs;
        if (name === 'detector') {
          const boxes = outputs.boxes as DetectedBox[];
          const got = boxes.flatMap((b) => b.box as number[]);
          e.labels.forEach((label, g) => {
            const want = e.boxes[g].map((v) => v * 2);
            if (want[3] > h) return; // cut by the crop
            total++;
            if (boxes.some((b, j) => b.class === label && boxIou(got, j, want, 0) >= 0.5)) found++;
          });
        } else {
          const mask = outputs.mask as Mask;
          expect([mask.width, mask.height]).toEqual([w, h]);
          const truth = await sharp(join(dir, 'eval', e.mask!))
            .toColourspace('b-w')
            .resize(w, w, { kernel: 'nearest' })
            .raw()
            .toBuffer();
          accumulateConfusion(conf, mask.data, truth.subarray(0, w * h), n);
        }
      }
      if (name === 'detector') expect(found / total).toBeGreaterThanOrEqual(0.95);
      else expect(meanIou(conf, n).mIoU).toBeGreaterThanOrEqual(0.9);
    });
  });
});
