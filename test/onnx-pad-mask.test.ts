/**
 * fixtures/onnx-pad-mask.ts: the GPU recogniser, given each line's valid width, computes on a
 * padded line what the plain model computes on the unpadded one, whatever the padding holds; the
 * unmasked model does not. Graphs it can't reason about (a column-mixing node on a tensor whose
 * width is not followed, an opset without Range) are refused.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { foldAffineConv } from '../fixtures/onnx-fold.js';
import { convertToFloat16 } from '../fixtures/onnx-fp16.js';
import { f32Init, i64Init, intsAttr, OnnxGraph } from '../fixtures/onnx-graph.js';
import { atOpset } from '../fixtures/onnx-opset.js';
import { maskPadding } from '../fixtures/onnx-pad-mask.js';
import { imageInput } from '../fixtures/onnx-prepost.js';
import { encodeModel } from '../fixtures/onnx-tiny.js';
import { modelsDir } from '../fixtures/paddleocr-v4/build.js';
import { rng } from '../fixtures/random.js';

const options: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 2, interOpNumThreads: 1 };
const H = 48;

describe('maskPadding on the PP-OCRv4 recogniser', () => {
  let plain: ort.InferenceSession;
  let masked: ort.InferenceSession;
  let unmasked: ort.InferenceSession;
  let report: ReturnType<typeof maskPadding>;
  beforeAll(async () => {
    const folded = foldAffineConv(readFileSync(join(modelsDir(), 'ch_PP-OCRv4_rec_infer.onnx'))).bytes;
    const gpu = (mask: boolean) => {
      let g = OnnxGraph.decode(folded);
      imageInput(g, { mean: [0.5], std: [0.5] });
      g = atOpset(g, 11);
      if (mask) report = maskPadding(g);
      return atOpset(g, 14).encode();
    };
    [plain, masked, unmasked] = await Promise.all(
      [folded, gpu(true), gpu(false)].map((b) => ort.InferenceSession.create(b, options)),
    );
  });

  /** Probabilities [T, C] of a line `w` wide alone, and padded to `W` with noise (masked and not). */
  async function run(w: number, W: number, seed: number) {
    const r = rng(seed);
    const px = Uint8Array.from({ length: H * W * 3 }, () => Math.floor(256 * r()));
    const f = new Float32Array(3 * H * w);
    for (let y = 0; y < H; y++)
      for (let x = 0; x < w; x++)
        for (let c = 0; c < 3; c++) f[(c * H + y) * w + x] = (px[(y * W + x) * 3 + c] / 255 - 0.5) / 0.5;
    const x = new ort.Tensor('uint8', px, [1, H, W, 3]);
    const [a, b, u] = await Promise.all([
      plain.run({ x: new ort.Tensor('float32', f, [1, 3, H, w]) }),
      masked.run({ x, widths: new ort.Tensor('int32', Int32Array.from([w]), [1]) }),
      unmasked.run({ x }),
    ]);
    const out = (o: ort.InferenceSession.ReturnType) => Object.values(o)[0];
    return { a: out(a), b: out(b), u: out(u) };
  }

  /** Largest |Δp| over the steps of `a` (the unpadded line's), and how many steps' best class differs. */
  function diff(a: ort.Tensor, b: ort.Tensor) {
    const [, T, C] = a.dims;
    const da = a.data as Float32Array;
    const db = b.data as Float32Array;
    let max = 0;
    let classes = 0;
    for (let t = 0; t < T; t++) {
      let ia = 0;
      let ib = 0;
      for (let c = 0; c < C; c++) {
        max = Math.max(max, Math.abs(da[t * C + c] - db[t * C + c]));
        if (da[t * C + c] > da[t * C + ia]) ia = c;
        if (db[t * C + c] > db[t * C + ib]) ib = c;
      }
      if (ia !== ib) classes++;
    }
    return { max, classes };
  }

  it('per run, the masks compare thresholds made from shapes alone with the widths: no size arithmetic on the widths', () => {
    let g = OnnxGraph.decode(foldAffineConv(readFileSync(join(modelsDir(), 'ch_PP-OCRv4_rec_infer.onnx'))).bytes);
    imageInput(g, { mean: [0.5], std: [0.5] });
    g = atOpset(g, 11);
    maskPadding(g);
    // the mask nodes a run computes: from the widths, not on the image's path (a Shape is constant)
    const fromWidths = new Set(['widths']);
    const fromImage = new Set(['x']);
    const ops = new Set<string>();
    for (const n of g.nodes) {
      const image = n.opType !== 'Shape' && n.input.some((i) => fromImage.has(i));
      if (image) for (const o of n.output) fromImage.add(o);
      if (!n.input.some((i) => fromWidths.has(i))) continue;
      for (const o of n.output) fromWidths.add(o);
      if (!image) ops.add(n.opType);
    }
    expect(ops.has('Less')).toBe(true);
    for (const op of ['Floor', 'Add']) expect(ops.has(op)).toBe(false);
  });

  it('masks every column-mixing node (mostly by scaling the affine before it), both squeeze-excite pools and both attention blocks', () => {
    // 19 nodes with right padding: 16 fed by a multiply-add with constants, 3 by a Mul of their own;
    // the 3×2 pool has none
    expect(report).toEqual({ masked: 3, folded: 16, unpadded: 1, pools: 2, attention: 2 });
    expect(masked.inputNames).toEqual(['x', 'widths']);
  });

  // odd widths and widths that are no multiple of the strides; noise as padding
  it.each([
    [680, 864],
    [123, 160],
    [61, 128],
    [301, 320],
    [1001, 1056],
  ])('a line %i wide padded to %i reads as it does alone; unmasked it does not', async (w, W) => {
    const { a, b, u } = await run(w, W, w);
    expect(b.dims[1]).toBe(W / 8);
    const masked = diff(a, b);
    expect(masked.max).toBeLessThan(1e-4);
    expect(masked.classes).toBe(0);
    expect(diff(a, u).max).toBeGreaterThan(0.05);
  });

  it('the half model too: a padded line reads as the same line alone, within half rounding', async () => {
    let g = OnnxGraph.decode(foldAffineConv(readFileSync(join(modelsDir(), 'ch_PP-OCRv4_rec_infer.onnx'))).bytes);
    convertToFloat16(g);
    g = OnnxGraph.decode(g.encode());
    imageInput(g, { mean: [0.5], std: [0.5] });
    g = atOpset(g, 11);
    expect(maskPadding(g)).toEqual({ masked: 3, folded: 16, unpadded: 1, pools: 2, attention: 2 });
    const half = await ort.InferenceSession.create(atOpset(g, 14).encode(), options);
    const [w, W] = [301, 320];
    const r = rng(5);
    const px = Uint8Array.from({ length: H * W * 3 }, () => Math.floor(256 * r()));
    const own = new Uint8Array(H * w * 3);
    for (let y = 0; y < H; y++) own.set(px.subarray(y * W * 3, (y * W + w) * 3), y * w * 3);
    const widths = new ort.Tensor('int32', Int32Array.from([w]), [1]);
    const [a, b] = await Promise.all([
      half.run({ x: new ort.Tensor('uint8', own, [1, H, w, 3]), widths }),
      half.run({ x: new ort.Tensor('uint8', px, [1, H, W, 3]), widths }),
    ]);
    const d = diff(Object.values(a)[0], Object.values(b)[0]);
    expect(d.classes).toBe(0);
    expect(d.max).toBeLessThan(0.02);
  });

  it('an item of valid width 0 (a padBatch filler) gives finite outputs and leaves the others alone', async () => {
    const W = 160;
    const r = rng(3);
    const px = Uint8Array.from({ length: 2 * H * W * 3 }, () => Math.floor(256 * r()));
    const one = await masked.run({
      x: new ort.Tensor('uint8', px.subarray(0, H * W * 3), [1, H, W, 3]),
      widths: new ort.Tensor('int32', Int32Array.from([100]), [1]),
    });
    const two = await masked.run({
      x: new ort.Tensor('uint8', px, [2, H, W, 3]),
      widths: new ort.Tensor('int32', Int32Array.from([100, 0]), [2]),
    });
    const d1 = Object.values(one)[0].data as Float32Array;
    const d2 = Object.values(two)[0].data as Float32Array;
    expect(d2.every(Number.isFinite)).toBe(true);
    let max = 0;
    for (let i = 0; i < d1.length; i++) max = Math.max(max, Math.abs(d1[i] - d2[i]));
    expect(max).toBeLessThan(1e-5);
  });
});

describe('maskPadding on the PP-OCRv4 detector (height and width, FPN upsampling, transposed convolutions)', () => {
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  const folded = () => foldAffineConv(readFileSync(join(modelsDir(), 'ch_PP-OCRv4_det_infer.onnx'))).bytes;
  const gpu = (mask: boolean, multipleOf?: number) => {
    const g = OnnxGraph.decode(folded());
    imageInput(g, { mean, std });
    const report = mask ? maskPadding(g, { heights: 'heights', multipleOf, zeroOutputs: true }) : undefined;
    return { bytes: atOpset(g, 14).encode(), report };
  };

  it('a page padded to a bucket gives the unpadded page’s map, and zero in the padding; unmasked it does not', async () => {
    const m = gpu(true, 32);
    expect(m.report).toEqual({ masked: 16, folded: 15, unpadded: 0, pools: 10, attention: 0 });
    const [plain, masked, unmasked] = await Promise.all(
      [folded(), m.bytes, gpu(false).bytes].map((b) => ort.InferenceSession.create(b, options)),
    );
    const [h, w, Hp, Wp] = [96, 160, 160, 224];
    const r = rng(9);
    const px = Uint8Array.from({ length: Hp * Wp * 3 }, () => Math.floor(256 * r()));
    const f = new Float32Array(3 * h * w);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let c = 0; c < 3; c++) f[(c * h + y) * w + x] = (px[(y * Wp + x) * 3 + c] / 255 - mean[c]) / std[c];
    const x = new ort.Tensor('uint8', px, [1, Hp, Wp, 3]);
    const size = (v: number) => new ort.Tensor('int32', Int32Array.of(v), [1]);
    const [a, b, c] = (
      await Promise.all([
        plain.run({ x: new ort.Tensor('float32', f, [1, 3, h, w]) }),
        masked.run({ x, heights: size(h), widths: size(w) }),
        unmasked.run({ x }),
      ])
    ).map((o) => Object.values(o)[0].data as Float32Array);
    let [mb, mc, pad] = [0, 0, 0];
    for (let y = 0; y < Hp; y++)
      for (let xx = 0; xx < Wp; xx++) {
        if (y >= h || xx >= w) pad = Math.max(pad, Math.abs(b[y * Wp + xx]));
        else {
          mb = Math.max(mb, Math.abs(a[y * w + xx] - b[y * Wp + xx]));
          mc = Math.max(mc, Math.abs(a[y * w + xx] - c[y * Wp + xx]));
        }
      }
    expect(mb).toBeLessThan(1e-5);
    expect(pad).toBe(0);
    expect(mc).toBeGreaterThan(1e-4);
  });

  it('without multipleOf the FPN’s sums of an upsampled 1/32 map and a 1/16 one are refused (equal only on multiples of 32)', () => {
    expect(() => gpu(true)).toThrow(/joins tensors of different valid sizes/);
  });
});

describe('maskPadding refuses what it cannot follow', () => {
  /** x [N, 1, 4, W] → (nodes) → y, with a 3×3 convolution weight `k`. */
  const model = (opset: number, nodes: (g: OnnxGraph) => void) => {
    const g = OnnxGraph.decode(
      encodeModel({
        name: 't',
        opset,
        nodes: [],
        inputs: [{ name: 'x', type: 'float32', shape: ['N', 1, 4, 'W'] }],
        outputs: [{ name: 'y', type: 'float32', shape: ['N', 1, 4, 'W'] }],
        initializers: [{ name: 'k', type: 'float32', dims: [1, 1, 3, 3], raw: new Uint8Array(36) }],
      }),
    );
    nodes(g);
    return g;
  };
  const conv = (g: OnnxGraph, x: string, y: string) =>
    g.node('Conv', [x, 'k'], [y], [intsAttr('kernel_shape', [3, 3]), intsAttr('pads', [1, 1, 1, 1])]);

  it('masks a plain convolution', () => {
    const g = model(13, (g) => g.nodes.push(conv(g, 'x', 'y')));
    expect(maskPadding(g)).toEqual({ masked: 1, folded: 0, unpadded: 0, pools: 0, attention: 0 });
    expect(g.inputs.map((i) => i.name)).toEqual(['x', 'widths']);
  });

  it('folds the mask into a multiply-add with constants before it; a node without right padding needs none', () => {
    const g = model(13, (g) => {
      const [a, b] = [g.addInit(f32Init('a', [1], [2])), g.addInit(f32Init('b', [1, 1, 1, 1], [3]))];
      g.nodes.push(
        g.node('Mul', [a, 'x'], ['ax']),
        g.node('Add', ['ax', b], ['axb']),
        conv(g, 'axb', 'c'),
        // 1×2, stride 2, no padding: a valid output reads valid columns only
        g.node('AveragePool', ['c'], ['y'], [intsAttr('kernel_shape', [1, 2]), intsAttr('strides', [1, 2])]),
      );
    });
    expect(maskPadding(g)).toEqual({ masked: 0, folded: 1, unpadded: 1, pools: 0, attention: 0 });
    // the constants are scaled, and no Mul stands in front of the convolution
    const c = g.nodes.find((n) => n.opType === 'Conv')!;
    expect(c.input[0]).toBe('axb');
    expect(g.nodes.find((n) => n.output[0] === 'ax')!.input[0]).not.toBe('a');
  });

  it('refuses opsets before 11, a second widths input, and a graph whose columns never mix', () => {
    expect(() => maskPadding(model(10, (g) => g.nodes.push(conv(g, 'x', 'y'))))).toThrow(/opset 11/);
    expect(() =>
      maskPadding(
        model(13, (g) => g.nodes.push(conv(g, 'x', 'y'))),
        { widths: 'x' },
      ),
    ).toThrow(/already has input x/);
    expect(() => maskPadding(model(13, (g) => g.nodes.push(g.node('Relu', ['x'], ['y']))))).toThrow(/no node mixes/);
  });

  it('refuses a column-mixing node past a reshape it cannot follow', () => {
    const g = model(13, (g) => {
      const shape = g.addInit(i64Init('shape', [4], [0, 1, 4, -1]));
      g.nodes.push(g.node('Reshape', ['x', shape], ['r']), conv(g, 'r', 'y'));
    });
    expect(() => maskPadding(g)).toThrow(/valid size is not known/);
  });
});
