/**
 * The pipeline executor on a real (tiny) ONNX model through the local folder context: validation
 * errors name the step, values flow through batches and per-region lists, outputs are typed,
 * timings are charged per stage.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeModel } from '../fixtures/onnx-tiny.js';
import {
  type Classification,
  type LocalContext,
  openLocalContext,
  runPipeline,
  validatePipeline,
} from '../runner/pipeline/index.js';
import { RunnerError } from '../spec/errors.js';
import type { ManifestSource, Step } from '../spec/schema.js';

/** Class scores = softmax of the per-channel mean: the dominant colour wins. */
const colourModel = () =>
  encodeModel({
    name: 'colour',
    nodes: [
      { op: 'GlobalAveragePool', inputs: ['x'], outputs: ['pooled'] },
      { op: 'Flatten', inputs: ['pooled'], outputs: ['flat'] },
      { op: 'Softmax', inputs: ['flat'], outputs: ['probs'] },
    ],
    inputs: [{ name: 'x', type: 'float32', shape: ['N', 3, 'H', 'W'] }],
    outputs: [{ name: 'probs', type: 'float32', shape: ['N', 3] }],
  });

const base = (steps: Step[], extra: Partial<ManifestSource> = {}): ManifestSource => ({
  name: 'pipeline-test',
  version: '1.0.0',
  sequence: 1,
  license: 'MIT',
  task: 'image-classification',
  inputs: [{ name: 'image', type: 'image' }],
  outputs: [{ name: 'colour', type: 'classification' }],
  models: [
    {
      id: 'clf',
      variants: [{ id: 'clf-cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['models/colour.onnx'] }],
    },
  ],
  assets: [{ id: 'labels', path: 'assets/labels.txt', kind: 'labels' }],
  pipeline: { steps },
  ...extra,
});

const classify: Step[] = [
  { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
  { op: 'resize', params: { input: 'rgb', output: 'small', mode: 'fixed', width: 8, height: 8 } },
  { op: 'normalize', params: { input: 'small', output: 'x' } },
  { op: 'infer', model: 'clf', params: { inputs: 'x', outputs: 'probs' } },
  { op: 'top-k', params: { input: 'probs', output: 'colour', k: 2, labelsAsset: 'labels' } },
];

let dir: string;
const contexts: LocalContext[] = [];

async function pkg(name: string, manifest: ManifestSource): Promise<LocalContext> {
  const d = join(dir, name);
  await mkdir(join(d, 'models'), { recursive: true });
  await mkdir(join(d, 'assets'), { recursive: true });
  await writeFile(join(d, 'models', 'colour.onnx'), colourModel());
  await writeFile(join(d, 'assets', 'labels.txt'), 'red\ngreen\nblue\n');
  await writeFile(join(d, 'xpkg.json'), JSON.stringify(manifest));
  const ctx = await openLocalContext(d, { threads: 1 });
  contexts.push(ctx);
  return ctx;
}

const solid = (w: number, h: number, rgb: [number, number, number]) => {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) data.set(rgb, i * 3);
  return { data, width: w, height: h, channels: 3 as const };
};

function pipelineError(f: () => unknown): RunnerError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(RunnerError);
    return e as RunnerError;
  }
  throw new Error('expected a RunnerError');
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xpkg-pipeline-'));
});
afterAll(async () => {
  for (const c of contexts) await c.release();
  await rm(dir, { recursive: true, force: true });
});

describe('validatePipeline', () => {
  const cases: [string, Step[], number, Partial<ManifestSource>?][] = [
    ['unknown op', [classify[0], { op: 'sharpen', params: {} }, ...classify.slice(1)], 1],
    [
      'param of the wrong type',
      [
        classify[0],
        { op: 'resize', params: { input: 'rgb', output: 'small', mode: 'fixed', width: 'eight', height: 8 } },
        ...classify.slice(2),
      ],
      1,
    ],
    [
      'unknown param',
      [
        classify[0],
        { op: 'resize', params: { input: 'rgb', output: 'small', mode: 'fixed', width: 8, height: 8, sharpen: true } },
        ...classify.slice(2),
      ],
      1,
    ],
    [
      'cross-field rule (fixed needs width)',
      [
        classify[0],
        { op: 'resize', params: { input: 'rgb', output: 'small', mode: 'fixed', height: 8 } },
        ...classify.slice(2),
      ],
      1,
    ],
    [
      'infer without a model',
      [...classify.slice(0, 3), { op: 'infer', params: { inputs: 'x', outputs: 'probs' } }, classify[4]],
      3,
    ],
    [
      'infer with an unknown model',
      [...classify.slice(0, 3), { op: 'infer', model: 'nope', params: { inputs: 'x', outputs: 'probs' } }, classify[4]],
      3,
    ],
    ['a model on an op that takes none', [{ ...classify[0], model: 'clf' }, ...classify.slice(1)], 0],
    ['reading a value before it is written', [classify[0], classify[2], classify[1], ...classify.slice(3)], 1],
    [
      'an unknown asset',
      [...classify.slice(0, 4), { op: 'top-k', params: { input: 'probs', output: 'colour', labelsAsset: 'missing' } }],
      4,
    ],
    ['a script hook on a built-in op', [{ ...classify[0], hook: 'pre' }, ...classify.slice(1)], 0],
    ['an output no step writes', classify.slice(0, 4), 3],
    ['no steps at all', [], 0],
  ];
  it.each(cases)('%s → E_RUN_PIPELINE at the step', (_name, steps, index, extra) => {
    const m = base(steps, extra) as never;
    const e = pipelineError(() => validatePipeline(m));
    expect(e.code).toBe('E_RUN_PIPELINE');
    expect((e.detail as { step: number }).step).toBe(index);
  });

  it('reports the failing param paths', () => {
    const e = pipelineError(() => validatePipeline(base(cases[1][1]) as never));
    expect((e.detail as { problems: { path: string }[] }).problems[0].path).toBe('/params/width');
  });

  it('accepts the classifier and the shipped OCR pipeline', async () => {
    expect(() => validatePipeline(base(classify) as never)).not.toThrow();
    const { readFile } = await import('node:fs/promises');
    const ocr = JSON.parse(await readFile(new URL('../fixtures/paddleocr-v4/xpkg.json', import.meta.url), 'utf8'));
    expect(() => validatePipeline(ocr)).not.toThrow();
  });
});

describe('runPipeline', () => {
  it('classifies from a path, an encoded Buffer and raw pixels alike, with typed output and stage timings', async () => {
    const ctx = await pkg('single', base(classify));
    const png = await sharp(solid(20, 10, [40, 200, 10]).data, { raw: { width: 20, height: 10, channels: 3 } })
      .png()
      .toBuffer();
    const file = join(dir, 'green.png');
    await writeFile(file, png);
    ctx.resetTimings();
    const fromPath = await runPipeline(ctx, { image: file });
    const c = fromPath.outputs.colour as Classification;
    expect(c.labels).toEqual(['green', 'red']);
    expect(c.indices).toEqual([1, 0]);
    expect(c.scores[0]).toBeGreaterThan(c.scores[1]);
    expect(Object.keys(fromPath.timings).sort()).toEqual(['decode', 'infer:clf', 'post', 'pre']);
    expect(ctx.timings['infer:clf']).toBeCloseTo(fromPath.timings['infer:clf'], 6);
    expect((await runPipeline(ctx, { image: png })).outputs).toEqual(fromPath.outputs);
    expect((await runPipeline(ctx, { image: new Uint8Array(png) })).outputs).toEqual(fromPath.outputs);
    expect((await runPipeline(ctx, { image: solid(20, 10, [40, 200, 10]) })).outputs).toEqual(fromPath.outputs);
    // grey + alpha raw input is converted to RGB
    const grey = { data: new Uint8Array(4 * 4 * 2).fill(255), width: 4, height: 4, channels: 2 as const };
    expect(((await runPipeline(ctx, { image: grey })).outputs.colour as Classification).scores[0]).toBeCloseTo(
      1 / 3,
      3,
    );
  });

  it('rejects bad caller inputs with E_RUN_INPUT', async () => {
    const ctx = await pkg('inputs', base(classify));
    const code = async (inputs: Record<string, unknown>) => (await runPipeline(ctx, inputs).catch((e) => e)).code;
    expect(await code({})).toBe('E_RUN_INPUT');
    expect(await code({ image: solid(2, 2, [0, 0, 0]), extra: 1 })).toBe('E_RUN_INPUT');
    expect(await code({ image: Buffer.from('not an image') })).toBe('E_RUN_INPUT_FORMAT');
    expect(await code({ image: join(dir, 'missing.png') })).toBe('E_RUN_INPUT');
    expect(await code({ image: { data: new Uint8Array(5), width: 2, height: 2, channels: 3 } })).toBe('E_RUN_INPUT');
    expect(await code({ image: 42 })).toBe('E_RUN_INPUT');
  });

  it('a value of the wrong kind fails at run time naming the step', async () => {
    const steps: Step[] = [
      classify[0],
      classify[1],
      classify[2],
      { op: 'resize', params: { input: 'x', output: 'y', mode: 'fixed', width: 2, height: 2 } },
      classify[3],
      classify[4],
    ];
    const ctx = await pkg('kind', base(steps));
    const e = await runPipeline(ctx, { image: solid(4, 4, [1, 2, 3]) }).catch((x) => x);
    expect(e.code).toBe('E_RUN_PIPELINE');
    expect(e.detail).toMatchObject({ step: 3, op: 'resize', kind: 'tensor' });
  });

  /** Regions from a probability-map input → crops → one batched call, or one call per crop. */
  const regionSteps = (normalize: Record<string, unknown>, infer: Record<string, unknown> = {}): Step[] => [
    { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
    {
      op: 'db-postprocess',
      params: { input: 'prob', output: 'regions', threshold: 0.5, boxThreshold: 0.5, unclipRatio: 0 },
    },
    { op: 'order-regions', params: { input: 'regions', output: 'regions' } },
    { op: 'crop-regions', params: { image: 'rgb', regions: 'regions', output: 'crops' } },
    { op: 'resize', params: { input: 'crops', output: 'small', mode: 'fixed-height', height: 6 } },
    { op: 'normalize', params: { input: 'small', output: 'x', ...normalize } },
    { op: 'infer', model: 'clf', params: { inputs: 'x', outputs: 'probs', ...infer } },
    { op: 'top-k', params: { input: 'probs', output: 'colour', labels: ['red', 'green', 'blue'] } },
  ];
  const regionManifest = (steps: Step[]) =>
    base(steps, {
      inputs: [
        { name: 'image', type: 'image' },
        { name: 'prob', type: 'tensor' },
      ],
    });

  /** Three coloured bars, top to bottom: blue, red, green; the map marks them. */
  function scene() {
    const w = 60,
      h = 40;
    const img = solid(w, h, [255, 255, 255]);
    const prob = new Float32Array(w * h);
    const bars: [number, [number, number, number]][] = [
      [4, [0, 0, 255]],
      [16, [255, 0, 0]],
      [28, [0, 255, 0]],
    ];
    for (const [y0, rgb] of bars)
      for (let y = y0; y < y0 + 8; y++)
        for (let x = 5; x < 55; x++) {
          img.data.set(rgb, (y * w + x) * 3);
          prob[y * w + x] = 1;
        }
    return { image: img, prob: { type: 'float32', dims: [1, 1, h, w], data: prob } };
  }

  it('runs a model once on the padded batch of regions, per region, or in chunks: same classes', async () => {
    const want = ['blue', 'red', 'green'];
    for (const [name, norm, infer] of [
      ['batched', {}, {}],
      ['per-region', { batch: false }, {}],
      ['chunked', {}, { maxBatch: 2 }],
    ] as const) {
      const ctx = await pkg(`regions-${name}`, regionManifest(regionSteps(norm, infer)));
      const r = await runPipeline(ctx, scene());
      const list = r.outputs.colour as Classification[];
      expect(list.map((c) => c.labels[0])).toEqual(want);
    }
  });

  it('rotate-images turns only the images whose classification matches; a count mismatch or a label without classes is refused', async () => {
    const turnRed = (extra: Record<string, unknown>): Step => ({
      op: 'rotate-images',
      params: { input: 'crops', output: 'turned', classes: 'colour', label: 'red', angle: 90, ...extra },
    });
    const manifest = (rotate: Step) => ({
      ...regionManifest([...regionSteps({}), rotate]),
      outputs: [{ name: 'turned', type: 'json' as const }],
    });
    const sizes = async (name: string, rotate: Step) => {
      const r = await runPipeline(await pkg(name, manifest(rotate)), scene());
      return (r.outputs.turned as { items: { width: number; height: number }[] }).items.map((i) => [i.width, i.height]);
    };
    const bars = await sizes('rotate-none', turnRed({ minScore: 1.1 }));
    expect(bars).toHaveLength(3);
    for (const [w, h] of bars) expect(w).toBeGreaterThan(h);
    // top to bottom: blue, red, green; only red is turned
    expect(await sizes('rotate-red', turnRed({}))).toEqual([bars[0], [bars[1][1], bars[1][0]], bars[2]]);
    const mismatch = await runPipeline(
      await pkg(
        'rotate-count',
        manifest({ op: 'rotate-images', params: { input: 'rgb', output: 'turned', classes: 'colour', angle: 90 } }),
      ),
      scene(),
    ).catch((e) => e);
    expect(mismatch.code).toBe('E_RUN_PIPELINE');
    expect(mismatch.detail).toMatchObject({ op: 'rotate-images' });
    const noClasses = pipelineError(() =>
      validatePipeline(
        manifest({ op: 'rotate-images', params: { input: 'crops', output: 'turned', label: 'red', angle: 90 } }),
      ),
    );
    expect(noClasses.code).toBe('E_RUN_PIPELINE');
  });

  it('zero regions flow through every step without calling the model', async () => {
    const ctx = await pkg('empty', regionManifest(regionSteps({})));
    const s = scene();
    s.prob.data.fill(0);
    const r = await runPipeline(ctx, s);
    expect(r.outputs.colour).toEqual([]);
  });

  it('returns declared tensor and boxes outputs, and refuses a value of another type', async () => {
    const steps = regionSteps({}).slice(0, 7);
    const m = regionManifest(steps);
    m.outputs = [
      { name: 'probs', type: 'tensor' },
      { name: 'regions', type: 'boxes' },
    ];
    const ctx = await pkg('outputs', m);
    const r = await runPipeline(ctx, scene());
    const t = r.outputs.probs as { dims: number[]; data: Float32Array };
    expect(t.dims).toEqual([3, 3]);
    const boxes = r.outputs.regions as { box: [number, number][]; score: number }[];
    expect(boxes).toHaveLength(3);
    // the first bar covers pixels x 5…54, y 4…11; corners at pixel centres (pixel i spans [i, i + 1))
    expect(boxes[0].box[0]).toEqual([5.5, 4.5]);
    expect(boxes[0].score).toBeCloseTo(1);
    const mismatch = regionManifest(steps);
    mismatch.outputs = [{ name: 'regions', type: 'text-lines' }];
    const bad = await runPipeline(await pkg('mismatch', mismatch), scene()).catch((e) => e);
    expect(bad.code).toBe('E_RUN_PIPELINE');
  });

  it('post-processing ops on tensor inputs: softmax, nms through a letterbox, argmax mask', async () => {
    const steps: Step[] = [
      { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
      { op: 'resize', params: { input: 'rgb', output: 'boxed', mode: 'letterbox', width: 100, height: 100 } },
      { op: 'softmax', params: { input: 'logits', output: 'probs' } },
      {
        op: 'nms',
        params: {
          input: 'dets',
          output: 'boxes',
          iouThreshold: 0.5,
          layout: 'box-class-scores',
          format: 'cxcywh',
          transpose: true,
          classAware: true,
          image: 'boxed',
          labels: ['cat', 'dog'],
        },
      },
      { op: 'argmax', params: { input: 'seg', output: 'mask', labels: ['bg', 'fg'] } },
    ];
    const m = base(steps, {
      inputs: [
        { name: 'image', type: 'image' },
        { name: 'logits', type: 'tensor' },
        { name: 'dets', type: 'tensor' },
        { name: 'seg', type: 'tensor' },
      ],
      outputs: [
        { name: 'probs', type: 'tensor' },
        { name: 'boxes', type: 'boxes' },
        { name: 'mask', type: 'mask' },
      ],
    });
    const ctx = await pkg('post', m);
    // three detections [1, 4 + 2 classes, 3] (YOLO layout): two overlapping cats, one dog
    const dets = [
      [50, 52, 20], // cx
      [30, 31, 70], // cy
      [20, 20, 10], // w
      [20, 20, 10], // h
      [0.9, 0.8, 0.1], // cat
      [0.1, 0.1, 0.7], // dog
    ].flat();
    const seg = [0.9, 0.1, 0.2, 0.8, 0.1, 0.9, 0.8, 0.2]; // [1, 2, 2, 2]
    const r = await runPipeline(ctx, {
      image: solid(200, 100, [0, 0, 0]),
      logits: { type: 'float32', dims: [1, 2], data: new Float32Array([0, Math.log(3)]) },
      dets: { type: 'float32', dims: [1, 6, 3], data: Float32Array.from(dets) },
      seg: { type: 'float32', dims: [1, 2, 2, 2], data: Float32Array.from(seg) },
    });
    expect(Array.from((r.outputs.probs as { data: Float32Array }).data).map((v) => +v.toFixed(4))).toEqual([
      0.25, 0.75,
    ]);
    const boxes = r.outputs.boxes as { box: number[]; score: number; label: string }[];
    expect(boxes.map((b) => b.label)).toEqual(['cat', 'dog']);
    // letterbox: 200×100 → 100×50 at y offset 25; back-mapped ×2 and clipped to the image
    expect(boxes[0].box.map((v) => Math.round(v))).toEqual([80, 0, 120, 30]);
    expect(boxes[0].score).toBeCloseTo(0.9);
    const mask = r.outputs.mask as { width: number; height: number; data: Int32Array; labels: string[] };
    expect([mask.width, mask.height, Array.from(mask.data)]).toEqual([2, 2, [0, 1, 1, 0]]);
  });
});
