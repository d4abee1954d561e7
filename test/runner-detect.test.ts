/**
 * Detector and segmenter heads in the pipeline: `preprocess` (letterbox) → `infer` → `detect-decode`
 * / `segment-argmax`, with the results mapped back to the original image. Real (tiny) ONNX models
 * from fixtures/onnx-tiny.ts: an identity "segmenter" whose score map is the normalised image
 * (channel = class), and an identity "detector" fed a YOLOv8-style head in letterbox coordinates.
 */
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeModel } from '../fixtures/onnx-tiny.js';
import {
  type DetectedBox,
  type LocalContext,
  type Mask,
  openLocalContext,
  runPipeline,
} from '../runner/pipeline/index.js';
import { Runner } from '../runner/runner.js';
import type { ManifestSource, Step } from '../spec/schema.js';
import {
  accumulateConfusion,
  type Detections,
  type GroundTruth,
  meanAveragePrecision,
  meanIou,
} from './helpers/metrics.js';
import { tempDir } from './helpers/source.js';

let dir: string;
const contexts: LocalContext[] = [];
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xpkg-detect-'));
});
afterAll(async () => {
  for (const c of contexts) await c.release();
  await rm(dir, { recursive: true, force: true });
});

/** Y = X for a float32 tensor of the given rank. */
const identity = (rank: number) => {
  const shape = ['A', 'B', 'C', 'D'].slice(0, rank);
  return encodeModel({
    name: 'identity',
    nodes: [{ op: 'Identity', inputs: ['X'], outputs: ['Y'] }],
    inputs: [{ name: 'X', type: 'float32', shape }],
    outputs: [{ name: 'Y', type: 'float32', shape }],
  });
};

async function pkg(
  name: string,
  rank: number,
  m: Partial<ManifestSource> & { pipeline: { steps: Step[] } },
): Promise<LocalContext> {
  const d = join(dir, name);
  await mkdir(join(d, 'models'), { recursive: true });
  await writeFile(join(d, 'models', 'id.onnx'), identity(rank));
  const manifest = {
    name,
    version: '1.0.0',
    sequence: 1,
    license: 'MIT',
    task: 'test',
    inputs: [{ name: 'image', type: 'image' }],
    models: [
      { id: 'net', variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['models/id.onnx'] }] },
    ],
    ...m,
  };
  await writeFile(join(d, 'xpkg.json'), JSON.stringify(manifest));
  const ctx = await openLocalContext(d, { threads: 1 });
  contexts.push(ctx);
  return ctx;
}

/** 120×60: red left third, green middle third, blue right third. */
function stripes(): { data: Uint8Array; width: number; height: number; channels: 3 } {
  const w = 120,
    h = 60,
    data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[(y * w + x) * 3 + Math.floor((3 * x) / w)] = 255;
  return { data, width: w, height: h, channels: 3 };
}

describe('segment-argmax', () => {
  it('labels every original pixel through the letterbox (identity model: class = dominant channel)', async () => {
    const ctx = await pkg('seg', 4, {
      outputs: [{ name: 'mask', type: 'mask' }],
      pipeline: {
        steps: [
          { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
          {
            op: 'preprocess',
            params: { input: 'rgb', output: 'x', mode: 'letterbox', width: 64, height: 64, padValue: 0 },
          },
          { op: 'infer', model: 'net', params: { inputs: 'x', outputs: 'scores' } },
          {
            op: 'segment-argmax',
            params: { input: 'scores', output: 'mask', image: 'x', labels: ['red', 'green', 'blue'] },
          },
        ],
      },
    });
    const m = (await runPipeline(ctx, { image: stripes() })).outputs.mask as Mask;
    expect([m.width, m.height]).toEqual([120, 60]);
    expect(m.labels).toEqual(['red', 'green', 'blue']);
    let wrong = 0;
    for (let y = 0; y < 60; y++)
      for (let x = 0; x < 120; x++) {
        const want = Math.floor((3 * x) / 120);
        // the 64-pixel plane resolves the stripe borders to about a pixel of the original (~2 px)
        if (m.data[y * 120 + x] !== want && Math.abs(x - 40) > 2 && Math.abs(x - 80) > 2) wrong++;
      }
    expect(wrong).toBe(0);
  });
});

describe('detect-decode', () => {
  const N = 6,
    C = 3;
  /** YOLOv8 layout [1, 4 + C, N] in the 64×64 letterbox plane of a 120×60 image (scale 64/120, pad y 16). */
  function head(): Float32Array {
    const h = new Float32Array((4 + C) * N);
    const s = 64 / 120,
      pad = 16;
    // [cx, cy, w, h] in original pixels, class, score
    const boxes: [number, number, number, number, number, number][] = [
      [30, 20, 20, 10, 0, 0.9],
      [31, 20, 20, 10, 0, 0.8], // overlaps the first, same class: suppressed
      [31, 21, 20, 10, 1, 0.7], // overlaps, other class: kept (class-aware)
      [90, 40, 30, 20, 2, 0.6],
      [90, 40, 30, 20, 2, 0.1], // below the score threshold
      [118, 58, 10, 10, 1, 0.5], // crosses the image corner: clipped
    ];
    boxes.forEach(([cx, cy, w, hh, c, score], i) => {
      h[i] = cx * s;
      h[N + i] = cy * s + pad;
      h[2 * N + i] = w * s;
      h[3 * N + i] = hh * s;
      h[(4 + c) * N + i] = score;
    });
    return h;
  }

  it('decodes, suppresses per class and maps boxes back through the letterbox, clipped to the image', async () => {
    const ctx = await pkg('det', 3, {
      inputs: [
        { name: 'image', type: 'image' },
        { name: 'head', type: 'tensor' },
      ],
      outputs: [{ name: 'boxes', type: 'boxes' }],
      pipeline: {
        steps: [
          { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
          { op: 'preprocess', params: { input: 'rgb', output: 'x', mode: 'letterbox', width: 64, height: 64 } },
          { op: 'infer', model: 'net', params: { inputs: 'head', outputs: 'out' } },
          {
            op: 'detect-decode',
            params: {
              input: 'out',
              output: 'boxes',
              image: 'x',
              layout: 'attrs-first',
              scoreThreshold: 0.25,
              iouThreshold: 0.5,
              labels: ['a', 'b', 'c'],
            },
          },
        ],
      },
    });
    const r = await runPipeline(ctx, {
      image: stripes(),
      head: { type: 'float32', dims: [1, 4 + C, N], data: head() },
    });
    const boxes = r.outputs.boxes as DetectedBox[];
    expect(boxes.map((b) => [b.class, b.label])).toEqual([
      [0, 'a'],
      [1, 'b'],
      [2, 'c'],
      [1, 'b'],
    ]);
    expect(boxes.map((b) => b.score)).toEqual([0.9, 0.7, 0.6, 0.5].map(Math.fround));
    const close = (got: number[], want: number[]) => got.forEach((v, i) => expect(v).toBeCloseTo(want[i], 3));
    close(boxes[0].box as number[], [20, 15, 40, 25]);
    close(boxes[2].box as number[], [75, 30, 105, 50]);
    close(boxes[3].box as number[], [113, 53, 120, 60]);
  });
});

/**
 * The trained fixtures end to end: fixtures/dist/{detector,segmenter}.xpkg (built by `npm run
 * fixtures`, signed with the test key) through Runner on their committed evaluation images, scored
 * with test/helpers/metrics.ts against their labels, within 0.03 of what metrics.json reports.
 */
describe('trained detector and segmenter packages', () => {
  const TRUST = ['fixtures/keys/test.pub'];
  const read = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

  it('detector: mAP@0.5 on fixtures/detector/eval within 0.03 of metrics.json', async () => {
    const metrics = read('fixtures/detector/metrics.json');
    const labels = read('fixtures/detector/eval/labels.json') as {
      classes: string[];
      images: { file: string; boxes: number[][]; labels: number[] }[];
    };
    await using runner = await Runner.open('fixtures/dist/detector.xpkg', {
      trust: TRUST,
      stateDir: tempDir('xpkg-state-'),
    });
    const dets: Detections[] = [];
    const gts: GroundTruth[] = [];
    for (const im of labels.images) {
      const boxes = (await runner.run({ image: `fixtures/detector/eval/${im.file}` })).outputs.boxes as DetectedBox[];
      for (const b of boxes) expect(b.label).toBe(labels.classes[b.class!]);
      dets.push({
        boxes: boxes.flatMap((b) => b.box as number[]),
        scores: boxes.map((b) => b.score),
        classes: boxes.map((b) => b.class!),
      });
      gts.push({ boxes: im.boxes.flat(), labels: im.labels });
    }
    expect(labels.images.length).toBe(metrics.committed.images);
    const { mAP50 } = meanAveragePrecision(dets, gts, labels.classes.length);
    expect(mAP50).toBeGreaterThanOrEqual(metrics.committed.mAP50 - 0.03);
  });

  it('segmenter: mIoU on fixtures/segmenter/eval within 0.03 of metrics.json', async () => {
    const metrics = read('fixtures/segmenter/metrics.json');
    const labels = read('fixtures/segmenter/eval/labels.json') as { images: { file: string; mask: string }[] };
    const nl = metrics.classes.length;
    await using runner = await Runner.open('fixtures/dist/segmenter.xpkg', {
      trust: TRUST,
      stateDir: tempDir('xpkg-state-'),
    });
    const conf = new Float64Array(nl * nl);
    for (const im of labels.images) {
      const m = (await runner.run({ image: `fixtures/segmenter/eval/${im.file}` })).outputs.mask as Mask;
      const { data, info } = await sharp(`fixtures/segmenter/eval/${im.mask}`)
        .raw()
        .toBuffer({ resolveWithObject: true });
      expect([m.width, m.height]).toEqual([info.width, info.height]);
      const truth = new Uint8Array(info.width * info.height);
      for (let i = 0; i < truth.length; i++) truth[i] = data[i * info.channels];
      accumulateConfusion(conf, m.data, truth, nl);
    }
    expect(labels.images.length).toBe(metrics.committed.images);
    const { mIoU } = meanIou(conf, nl);
    expect(mIoU).toBeGreaterThanOrEqual(metrics.committed.mIoU - 0.03);
  });
});
