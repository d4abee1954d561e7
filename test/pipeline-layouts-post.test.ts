import { describe, expect, it } from 'vitest';
import { encodeModel, type OnnxElem } from '../fixtures/onnx-tiny.js';
import { setNativeBackend } from '../native/index.js';
import { type DetectedBox, type Mask, runPipeline } from '../runner/pipeline/index.js';
import type { Tensor } from '../runner/types.js';
import type { Step } from '../spec/schema.js';
import {
  BACKENDS,
  close,
  DETS,
  detSteps,
  echo,
  P,
  pkg,
  stripes,
  toPlane,
  useLayoutPackages,
  yolo,
} from './helpers/layouts.js';

useLayoutPackages();

/** The two ways to decode the YOLO-style head [1, 4 + C, A] into boxes mapped back through `image: x`. */
const YOLO_POSTS: Record<string, Step> = {
  'detect-decode': {
    op: 'detect-decode',
    params: { input: 'out', output: 'boxes', image: 'x', layout: 'attrs-first', iouThreshold: 0.5 },
  },
  nms: {
    op: 'nms',
    params: {
      input: 'out',
      output: 'boxes',
      image: 'x',
      transpose: true,
      format: 'cxcywh',
      layout: 'box-class-scores',
      iouThreshold: 0.5,
      classAware: true,
    },
  },
};

describe('detector outputs: boxes mapped back to the original image', () => {
  const rows6 = () => DETS.flatMap(([b, c, s]) => [...toPlane(b), s, c]);

  for (const dims of [
    [1, 4, 6],
    [4, 6],
  ] as number[][])
    it(`nms on [${dims}] rows (x1 y1 x2 y2 score class) with the preprocess tensor as image`, async () => {
      const ctx = await pkg(
        echo(
          'float32',
          dims.map((_, i) => `d${i}`),
        ),
        detSteps([
          {
            op: 'nms',
            params: {
              input: 'out',
              output: 'boxes',
              layout: 'box-score-class',
              iouThreshold: 0.5,
              image: 'x',
              classAware: true,
            },
          },
        ]),
        [{ name: 'boxes', type: 'boxes' }],
        ['head'],
      );
      const r = await runPipeline(ctx, {
        image: await stripes(),
        head: { type: 'float32', dims, data: Float32Array.from(rows6()) },
      });
      const boxes = r.outputs.boxes as DetectedBox[];
      expect(boxes.map((b) => b.class)).toEqual([0, 1, 2]);
      close(boxes[0].box as number[], DETS[0][0]);
      close(boxes[1].box as number[], DETS[2][0]);
      close(boxes[2].box as number[], DETS[3][0]);
    });
});

describe('detector outputs through resize → normalize (the unfused pre-processing)', () => {
  const head = () => {
    // YOLOv8 [1, 4 + 3, A] attributes first, cxcywh in the plane
    const A = DETS.length,
      h = new Float32Array(7 * A);
    DETS.forEach(([b, c, s], i) => {
      const [x1, y1, x2, y2] = toPlane(b);
      [h[i], h[A + i], h[2 * A + i], h[3 * A + i]] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1];
      h[(4 + c) * A + i] = s;
    });
    return h;
  };
  const unfused: Step[] = [
    { op: 'resize', params: { input: 'rgb', output: 'lb', mode: 'letterbox', width: P, height: P } },
    { op: 'normalize', params: { input: 'lb', output: 'x', layout: 'nhwc' } },
  ];
  for (const op of ['detect-decode', 'nms'])
    it(`${op} with the normalize tensor as image maps boxes back through the letterbox`, async () => {
      const post = YOLO_POSTS[op];
      const ctx = await pkg(
        echo('float32', ['a', 'b', 'c']),
        detSteps([post], unfused),
        [{ name: 'boxes', type: 'boxes' }],
        ['head'],
      );
      const r = await runPipeline(ctx, {
        image: await stripes(),
        head: { type: 'float32', dims: [1, 7, DETS.length], data: head() },
      });
      const boxes = r.outputs.boxes as DetectedBox[];
      expect(boxes.map((b) => b.class)).toEqual([0, 1, 2]);
      close(boxes[0].box as number[], DETS[0][0]);
      close(boxes[2].box as number[], DETS[3][0]);
    });
});

describe('float16 detector outputs (an fp16 model)', () => {
  for (const [op, post] of Object.entries(YOLO_POSTS))
    it(`${op} reads float16 scores and boxes`, async () => {
      const ctx = await pkg(
        echo('float32', ['a', 'b', 'c'], 'float16'),
        detSteps([post]),
        [{ name: 'boxes', type: 'boxes' }],
        ['head'],
      );
      const head = yolo();
      const r = await runPipeline(ctx, { image: await stripes(), head: { type: 'float32', ...head } });
      const boxes = r.outputs.boxes as DetectedBox[];
      expect(boxes.map((b) => b.class)).toEqual([0, 1, 2]);
      // half precision: ~0.05 px in the 64 plane, ~0.1 px back in the image
      (boxes[0].box as number[]).forEach((v, i) => expect(Math.abs(v - DETS[0][0][i])).toBeLessThan(0.15));
      expect(boxes[0].score).toBeCloseTo(0.9, 3);
    });

  it('top-k and segment-argmax read float16 scores', async () => {
    const ctx = await pkg(
      echo('float32', ['a', 'b', 'c', 'd'], 'float16'),
      [
        { op: 'infer', model: 'net', params: { inputs: 'head', outputs: 'out' } },
        { op: 'segment-argmax', params: { input: 'out', output: 'mask', layout: 'nhwc' } },
      ],
      [{ name: 'mask', type: 'mask' }],
      ['head'],
    );
    // [1, 1, 3, 2] NHWC: per pixel the best of 2 classes
    const data = Float32Array.of(0.1, 0.9, 0.8, 0.2, 0.3, 0.4);
    const r = await runPipeline(ctx, { image: await stripes(), head: { type: 'float32', dims: [1, 1, 3, 2], data } });
    expect(Array.from((r.outputs.mask as Mask).data)).toEqual([1, 0, 1]);
    const ctx2 = await pkg(
      echo('float32', ['a', 'b'], 'float16'),
      [
        { op: 'infer', model: 'net', params: { inputs: 'head', outputs: 'out' } },
        { op: 'top-k', params: { input: 'out', output: 'top', k: 2 } },
      ],
      [{ name: 'top', type: 'classification' }],
      ['head'],
    );
    const r2 = await runPipeline(ctx2, {
      image: await stripes(),
      head: { type: 'float32', dims: [1, 3], data: Float32Array.of(0.25, 2, -1) },
    });
    expect(r2.outputs.top).toMatchObject({ indices: [1, 0], scores: [2, 0.25] });
  });
});

describe('detect-decode layouts it cannot tell apart', () => {
  it('refuses a square head without layout (YOLOv8 at 64×64: [1, 84, 84])', async () => {
    const ctx = await pkg(
      echo('float32', ['a', 'b', 'c']),
      detSteps([{ op: 'detect-decode', params: { input: 'out', output: 'boxes', image: 'x' } }]),
      [{ name: 'boxes', type: 'boxes' }],
      ['head'],
    );
    const head = yolo(80, 80); // 84 attributes × 84 anchors
    const err = await runPipeline(ctx, { image: await stripes(), head: { type: 'float32', ...head } }).catch((e) => e);
    expect(err).toMatchObject({ code: 'E_RUN_PIPELINE' });
    expect(err.message).toMatch(/layout/);
  });

  it('decodes the square head with layout attrs-first', async () => {
    const ctx = await pkg(
      echo('float32', ['a', 'b', 'c']),
      detSteps([
        {
          op: 'detect-decode',
          params: { input: 'out', output: 'boxes', image: 'x', layout: 'attrs-first', iouThreshold: 0.5 },
        },
      ]),
      [{ name: 'boxes', type: 'boxes' }],
      ['head'],
    );
    const head = yolo(80, 80);
    const boxes = (await runPipeline(ctx, { image: await stripes(), head: { type: 'float32', ...head } })).outputs
      .boxes as DetectedBox[];
    expect(boxes.map((b) => b.class)).toEqual([0, 1, 2]);
    close(boxes[2].box as number[], DETS[3][0]);
  });

  it('refuses a batch of 2 heads (its boxes would be one list, the images mixed)', async () => {
    const ctx = await pkg(
      echo('float32', ['a', 'b', 'c']),
      detSteps([{ op: 'detect-decode', params: { input: 'out', output: 'boxes', layout: 'attrs-first' } }]),
      [{ name: 'boxes', type: 'boxes' }],
      ['head'],
    );
    const one = yolo();
    const data = new Float32Array(one.data.length * 2);
    data.set(one.data);
    data.set(one.data, one.data.length);
    const err = await runPipeline(ctx, {
      image: await stripes(),
      head: { type: 'float32', dims: [2, ...one.dims.slice(1)], data },
    }).catch((e) => e);
    expect(err).toMatchObject({ code: 'E_RUN_PIPELINE' });
    expect(err.message).toMatch(/batch/);
  });
});

describe('YOLO [1, 84, A] (transposed) and NMS per class or across classes', () => {
  for (const agnostic of [false, true])
    it(`detect-decode and nms (transpose, box-class-scores) agree, ${agnostic ? 'class-agnostic' : 'per class'}`, async () => {
      const head = yolo(80, 200); // [1, 84, 204]: four detections and 200 empty anchors
      const out: DetectedBox[][] = [];
      for (const post of [
        {
          op: 'detect-decode',
          params: { input: 'out', output: 'boxes', image: 'x', iouThreshold: 0.5, agnostic },
        },
        { ...YOLO_POSTS.nms, params: { ...YOLO_POSTS.nms.params, scoreThreshold: 0.25, classAware: !agnostic } },
      ] as Step[]) {
        const ctx = await pkg(
          echo('float32', ['a', 'b', 'c']),
          detSteps([post]),
          [{ name: 'boxes', type: 'boxes' }],
          ['head'],
        );
        const r = await runPipeline(ctx, { image: await stripes(), head: { type: 'float32', ...head } });
        out.push(r.outputs.boxes as DetectedBox[]);
      }
      // per class: the other-class overlap survives; agnostic: only the best of the cluster
      const want = agnostic ? [DETS[0], DETS[3]] : [DETS[0], DETS[2], DETS[3]];
      for (const boxes of out) {
        expect(boxes.map((b) => b.class)).toEqual(want.map((d) => d[1]));
        boxes.forEach((b, i) => close(b.box as number[], want[i][0]));
      }
    });
});

describe('split detector outputs: boxes, scores (and classes) as separate tensors', () => {
  /** Y_i = X_i for each of these (type, rank) inputs. */
  const echoes = (io: [OnnxElem, number][]) =>
    encodeModel({
      name: 'echoes',
      nodes: io.map((_, i) => ({ op: 'Identity', inputs: [`X${i}`], outputs: [`Y${i}`] })),
      inputs: io.map(([type, rank], i) => ({
        name: `X${i}`,
        type,
        shape: Array.from({ length: rank }, (_, r) => `d${i}${r}`),
      })),
      outputs: io.map(([type, rank], i) => ({
        name: `Y${i}`,
        type,
        shape: Array.from({ length: rank }, (_, r) => `d${i}${r}`),
      })),
    });
  const N = DETS.length,
    C = 3;
  const planeBoxes = DETS.map(([b]) => toPlane(b));

  async function run(io: [OnnxElem, number][], feeds: Record<string, Tensor>, nms: Record<string, unknown>) {
    const names = Object.keys(feeds);
    const steps: Step[] = [
      { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
      { op: 'preprocess', params: { input: 'rgb', output: 'x', mode: 'letterbox', width: P, height: P } },
      {
        op: 'infer',
        model: 'net',
        params: {
          inputs: Object.fromEntries(names.map((n, i) => [`X${i}`, n])),
          outputs: Object.fromEntries(names.map((n, i) => [`Y${i}`, `o_${n}`])),
        },
      },
      { op: 'nms', params: { output: 'boxes', image: 'x', iouThreshold: 0.5, ...nms } },
    ];
    const ctx = await pkg(echoes(io), steps, [{ name: 'boxes', type: 'boxes' }], names);
    return (await runPipeline(ctx, { image: await stripes(), ...feeds })).outputs.boxes as DetectedBox[];
  }

  it('boxes [1, N, 4] + per-class scores [1, N, C] (YOLO-NAS)', async () => {
    const scores = new Float32Array(N * C);
    DETS.forEach(([, c, s], i) => {
      scores[i * C + c] = s;
    });
    const boxes = await run(
      [
        ['float32', 3],
        ['float32', 3],
      ],
      {
        hb: { type: 'float32', dims: [1, N, 4], data: Float32Array.from(planeBoxes.flat()) },
        hs: { type: 'float32', dims: [1, N, C], data: scores },
      },
      { input: 'o_hb', scores: 'o_hs', classAware: true },
    );
    expect(boxes.map((b) => b.class)).toEqual([0, 1, 2]);
    close(boxes[1].box as number[], DETS[2][0]);
  });

  it('boxes [4, N] + scores [C, N], transposed', async () => {
    const bt = new Float32Array(4 * N),
      st = new Float32Array(C * N);
    planeBoxes.forEach((b, i) => b.forEach((v, j) => (bt[j * N + i] = v)));
    DETS.forEach(([, c, s], i) => (st[c * N + i] = s));
    const boxes = await run(
      [
        ['float32', 2],
        ['float32', 2],
      ],
      {
        hb: { type: 'float32', dims: [4, N], data: bt },
        hs: { type: 'float32', dims: [C, N], data: st },
      },
      { input: 'o_hb', scores: 'o_hs', transpose: true, classAware: false },
    );
    // class-agnostic: the other-class overlap goes too
    expect(boxes.map((b) => b.class)).toEqual([0, 2]);
    close(boxes[1].box as number[], DETS[3][0]);
  });

  it('boxes [N, 4] + scores [N] + int64 labels [N] (torchvision-style)', async () => {
    const boxes = await run(
      [
        ['float32', 2],
        ['float32', 1],
        ['int64', 1],
      ],
      {
        hb: { type: 'float32', dims: [N, 4], data: Float32Array.from(planeBoxes.flat()) },
        hs: { type: 'float32', dims: [N], data: Float32Array.from(DETS.map((d) => d[2])) },
        hc: { type: 'int64', dims: [N], data: BigInt64Array.from(DETS.map((d) => BigInt(d[1]))) },
      },
      { input: 'o_hb', scores: 'o_hs', classes: 'o_hc', classAware: true },
    );
    expect(boxes.map((b) => b.class)).toEqual([0, 1, 2]);
    expect(boxes.map((b) => b.score)).toEqual([0.9, 0.7, 0.6].map(Math.fround));
    close(boxes[2].box as number[], DETS[3][0]);
  });

  it('refuses scores that are not one per box', async () => {
    const err = await run(
      [
        ['float32', 2],
        ['float32', 2],
      ],
      {
        hb: { type: 'float32', dims: [N, 4], data: Float32Array.from(planeBoxes.flat()) },
        hs: { type: 'float32', dims: [C, N], data: new Float32Array(C * N) },
      },
      { input: 'o_hb', scores: 'o_hs' },
    ).catch((e) => e);
    expect(err).toMatchObject({ code: 'E_RUN_PIPELINE', detail: { step: 3 } });
    expect(err.message).toMatch(/not \[4\] or \[4, C\]/);
  });
});

describe('argmax on an NHWC heatmap [1, H, W, C]', () => {
  // 2×3 pixels, 4 classes: pixel i's best class is i % 4, and class 0 scores 0.9 on pixel 4 only
  const H = 2,
    W = 3,
    C = 4;
  const data = new Float32Array(H * W * C);
  for (let i = 0; i < H * W; i++) data[i * C + (i % C)] = 0.5 + i / 100;
  data[4 * C] = 0.9;
  for (const backend of BACKENDS)
    for (const threshold of [undefined, 0.7])
      it(`${threshold === undefined ? 'best class' : 'channel 0 > threshold'} per pixel (${backend})`, async () => {
        const ctx = await pkg(
          echo('float32', ['a', 'b', 'c', 'd']),
          [
            { op: 'infer', model: 'net', params: { inputs: 'head', outputs: 'out' } },
            {
              op: 'argmax',
              params: { input: 'out', output: 'mask', layout: 'nhwc', ...(threshold ? { threshold } : {}) },
            },
          ],
          [{ name: 'mask', type: 'mask' }],
          ['head'],
        );
        setNativeBackend(backend);
        const r = await runPipeline(ctx, {
          image: await stripes(),
          head: { type: 'float32', dims: [1, H, W, C], data },
        });
        const m = r.outputs.mask as Mask;
        expect([m.width, m.height]).toEqual([W, H]);
        expect(Array.from(m.data)).toEqual(threshold === undefined ? [0, 1, 2, 3, 0, 1] : [0, 0, 0, 0, 1, 0]);
      });
});
