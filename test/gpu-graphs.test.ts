/**
 * The build-time graph surgery of the GPU variants, each edit on a small graph run by the real
 * onnxruntime (CPU provider) against what the host-side step computes: uint8 NHWC input normalised
 * in the model (fixtures/onnx-prepost.ts imageInput), the quantised DB map whose threshold is exact
 * (quantizedMap) and its sparse 8×8-block form (sparseMap), in-graph best class (bestClass), in-graph detection selection against the
 * runner's own detect-decode kernel (bestRows), and the float16 converter (fixtures/onnx-fp16.ts).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { foldAffineConv } from '../fixtures/onnx-fold.js';
import { convertToFloat16, simulateFloat16 } from '../fixtures/onnx-fp16.js';
import { DT, OnnxGraph } from '../fixtures/onnx-graph.js';
import {
  bestClass,
  bestClassPacked,
  bestRows,
  classGroups,
  imageInput,
  quantizedMap,
  SPARSE_MAP,
  sparseMap,
} from '../fixtures/onnx-prepost.js';
import { encodeModel, type OnnxElem } from '../fixtures/onnx-tiny.js';
import { FILES, modelsDir } from '../fixtures/paddleocr-v4/build.js';
import { rng } from '../fixtures/random.js';
import { dbPostprocess, decodeDetections, preprocess } from '../native/index.js';
import { denseFromSparse } from '../runner/ops/sparse-map.js';

const OPTIONS: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, logSeverityLevel: 3 };

/** Y = Identity(X) at `opset`, X of `shape`. */
function identity(opset: number, shape: (number | string)[], type: OnnxElem = 'float32'): OnnxGraph {
  return OnnxGraph.decode(
    encodeModel({
      name: 'identity',
      opset,
      nodes: [{ op: 'Identity', inputs: ['X'], outputs: ['Y'] }],
      inputs: [{ name: 'X', type, shape }],
      outputs: [{ name: 'Y', type, shape }],
    }),
  );
}

async function run(g: OnnxGraph, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const s = await ort.InferenceSession.create(g.encode(), OPTIONS);
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

describe('imageInput', () => {
  it('turns uint8 NHWC pixels into the float NCHW tensor the host kernel makes, in opset 9', async () => {
    const g = identity(9, ['N', 3, 'H', 'W']);
    const mean = [0.485, 0.456, 0.406];
    const std = [0.229, 0.224, 0.225];
    imageInput(g, { mean, std });
    expect(g.inputs[0]).toMatchObject({ name: 'X', elemType: DT.UINT8, shape: ['N', 'H', 'W', 3] });
    const [h, w] = [5, 7];
    const r = rng(1);
    const px = Uint8Array.from({ length: h * w * 3 }, () => Math.floor(r() * 256));
    const y = (await run(g, { X: new ort.Tensor('uint8', px, [1, h, w, 3]) })).Y;
    expect(y.dims).toEqual([1, 3, h, w]);
    // the same pixels through the native preprocess kernel at their own size (no resampling)
    const host = await preprocess(
      { data: px, width: w, height: h, format: 'rgb' },
      { resize: { mode: 'stretch', width: w, height: h }, mean, std },
    );
    const got = y.data as Float32Array;
    for (let i = 0; i < got.length; i++) expect(Math.abs(got[i] - host.data[i])).toBeLessThan(1e-5);
  });
});

describe('quantizedMap', () => {
  it('q / 255 > threshold exactly where p > threshold, and q = round(255 p) elsewhere', async () => {
    const g = identity(11, [1, 1, 1, 'W']);
    quantizedMap(g, 0.3);
    expect(g.outputs[0].elemType).toBe(DT.UINT8);
    const t = Math.fround(0.3);
    const near = [t, t + 1e-7, t - 1e-7, 0.3005, 0.2995, 76.5 / 255, 77 / 255, 0.2999, 0.30001];
    const p = Float32Array.from([...near, 0, 1, 0.5, 0.1, 0.9999, 0.0001, 0.75]);
    const q = (await run(g, { X: new ort.Tensor('float32', p, [1, 1, 1, p.length]) }))[g.outputs[0].name]
      .data as Uint8Array;
    p.forEach((v, i) => {
      expect(q[i] / 255 > 0.3, `p = ${v}`).toBe(v > t);
      expect(Math.abs(q[i] - v * 255)).toBeLessThanOrEqual(1);
    });
    expect([q[9], q[10], q[11]]).toEqual([0, 255, 128]); // 127.5 rounds to even
  });

  it('refuses a model older than Round (opset 11) and a threshold on the 1/255 grid', () => {
    expect(() => quantizedMap(identity(9, [1, 1, 2, 2]), 0.3)).toThrow(/opset 11/);
    expect(() => quantizedMap(identity(11, [1, 1, 2, 2]), 51 / 255)).toThrow(/integer/);
  });
});

describe('sparseMap', () => {
  /** A DB-like map: a few bright text bars, soft edges, faint noise; H and W multiples of 32. */
  function map(h: number, w: number, seed: number): Float32Array {
    const r = rng(seed);
    const p = Float32Array.from({ length: h * w }, () => r() * 0.05);
    for (let k = 0; k < 6; k++) {
      const y0 = Math.floor(r() * (h - 12)),
        x0 = Math.floor(r() * (w - 60)),
        bh = 3 + Math.floor(r() * 9),
        bw = 10 + Math.floor(r() * 50);
      for (let y = y0; y < y0 + bh; y++)
        for (let x = x0; x < x0 + bw; x++) p[y * w + x] = y === y0 || x === x0 ? 0.2 + r() * 0.3 : 0.6 + r() * 0.4;
    }
    p[0] = Math.fround(0.3);
    p[1] = 0.30001;
    return p;
  }

  it('sends exactly the mask in the blocks holding text, with their mean; db-postprocess finds the same boxes', async () => {
    const g = identity(11, [1, 1, 'H', 'W']);
    sparseMap(g, 0.3);
    expect(g.outputs.map((o) => [o.name, o.elemType])).toEqual([
      [SPARSE_MAP.flags, DT.UINT8],
      [SPARSE_MAP.blocks, DT.UINT8],
      [SPARSE_MAP.means, DT.UINT8],
    ]);
    for (const [h, w, seed] of [
      [96, 160, 1],
      [64, 32, 2],
      [32, 288, 3],
    ]) {
      const p = map(h, w, seed);
      const o = await run(g, { X: new ort.Tensor('float32', p, [1, 1, h, w]) });
      const flags = o[SPARSE_MAP.flags];
      expect(flags.dims).toEqual([h / 32, w / 16]);
      const s = denseFromSparse(
        {
          flags: flags.data as Uint8Array,
          flagDims: flags.dims,
          blocks: o[SPARSE_MAP.blocks].data as Uint8Array,
          means: o[SPARSE_MAP.means].data as Uint8Array,
        },
        0.3,
      );
      expect([s.height, s.width]).toEqual([h, w]);
      let sent = 0;
      for (let i = 0; i < p.length; i++) expect(s.prob[i] > 0.3, `pixel ${i}`).toBe(p[i] > 0.3);
      // a block is sent where it holds text, and its value is the mean of its text pixels
      for (let by = 0; by < h / 8; by++)
        for (let bx = 0; bx < w / 8; bx++) {
          let sum = 0,
            n = 0;
          for (let y = by * 8; y < by * 8 + 8; y++)
            for (let x = bx * 8; x < bx * 8 + 8; x++) if (p[y * w + x] > 0.3) (sum += p[y * w + x]), n++;
          if (!n) continue;
          sent++;
          const y = by * 8,
            x = bx * 8;
          const at = [...Array(64).keys()].find((i) => p[(y + (i >> 3)) * w + x + (i & 7)] > 0.3)!;
          expect(Math.abs(s.prob[(y + (at >> 3)) * w + x + (at & 7)] - sum / n)).toBeLessThanOrEqual(0.5 / 255 + 1e-6);
        }
      expect(o[SPARSE_MAP.means].dims).toEqual([sent]);
      expect(o[SPARSE_MAP.blocks].dims).toEqual([sent, 8]);
      const opts = { width: w, height: h, threshold: 0.3, boxThreshold: 0, unclipRatio: 2 };
      const a = await dbPostprocess(p, opts);
      const b = await dbPostprocess(s.prob, opts);
      expect(b.quads).toEqual(a.quads);
      // every box (boxThreshold 0): the mask is exact, so the same boxes; the scores lose only the
      // sub-threshold pixels inside each box (this map's soft edges: real DB maps are sharper)
      expect(a.count).toBeGreaterThan(0);
      for (let i = 0; i < a.count; i++) expect(Math.abs(b.scores[i] - a.scores[i])).toBeLessThan(0.03);
    }
  });

  it('refuses a model older than Compress with an axis (opset 11)', () => {
    expect(() => sparseMap(identity(9, [1, 1, 'H', 'W']), 0.3)).toThrow(/opset 11/);
  });
});

describe('bestClass', () => {
  it('gives int32 ids (first on ties) and their scores, in opset 9', async () => {
    const g = identity(9, ['N', 'T', 5]);
    bestClass(g);
    expect(g.outputs.map((o) => [o.name, o.elemType])).toEqual([
      ['ids', DT.INT32],
      ['scores', DT.FLOAT],
    ]);
    const x = Float32Array.from([0.1, 0.5, 0.2, 0.1, 0.1, 0.3, 0.3, 0.1, 0.2, 0.1, 0, 0, 0, 0, 1]);
    const r = await run(g, { X: new ort.Tensor('float32', x, [1, 3, 5]) });
    expect([...(r.ids.data as Int32Array)]).toEqual([1, 0, 4]);
    expect([...(r.scores.data as Float32Array)]).toEqual([0.5, Math.fround(0.3), 1]);
  });
});

describe('bestClassPacked', () => {
  it.each([
    [11, 300, 15],
    [13, 6625, 53],
    [13, 307, 0],
  ])(
    'in opset %i over %i classes (%i groups) finds the first best class and its probability, as a scan does',
    async (opset, C, groups) => {
      expect(classGroups(C)).toBe(groups);
      // groups that do not divide the classes are refused when the graph is built
      expect(() => bestClassPacked(identity(opset, ['N', 'T', C]), '', 8)).toThrow(/do not divide/);
      const g = identity(opset, ['N', 'T', C]);
      bestClassPacked(g);
      const [N, T] = [2, 9];
      const r = rng(C);
      const x = Float32Array.from({ length: N * T * C }, () => Math.round(r() * 50) / 50);
      // ties across and inside groups: the step's maximum at several places
      for (let s = 0; s < N * T; s++) {
        const peak = 1 + (s % 3);
        for (const k of [(s * 37) % C, (s * 37 + 125) % C, (s * 37 + 3) % C]) x[s * C + k] = peak;
      }
      const best = (await run(g, { X: new ort.Tensor('float32', x, [N, T, C]) })).best;
      expect(best.dims).toEqual([N, T]);
      const want = Array.from({ length: N * T }, (_, s) => {
        const row = x.subarray(s * C, s * C + C);
        let k = 0;
        for (let i = 1; i < C; i++) if (row[i] > row[k]) k = i;
        return k * 256 + Math.min(255, Math.floor(Math.fround(Math.fround(row[k] * 255) + 0.5)));
      });
      expect([...(best.data as Int32Array)]).toEqual(want);
    },
  );

  it.each([9, 13])('gives id × 256 + round(255 p) in one int32 (first on ties), in opset %i', async (opset) => {
    const g = identity(opset, ['N', 'T', 5]);
    bestClassPacked(g);
    expect(g.outputs.map((o) => [o.name, o.elemType])).toEqual([['best', DT.INT32]]);
    const x = Float32Array.from([
      0.1, 0.5, 0.2, 0.1, 0.1, 0.3, 0.3, 0.1, 0.2, 0.1, 0, 0, 0, 0, 1, 0.2, 0.2, 0.2, 0.2, 0.2,
    ]);
    const best = (await run(g, { X: new ort.Tensor('float32', x, [2, 2, 5]) })).best;
    expect(best.dims).toEqual([2, 2]);
    // 0.5 × 255 = 127.5 rounds up; 0.3 × 255 = 76.5 (in float32 a hair above) rounds up
    expect([...(best.data as Int32Array)]).toEqual([1 * 256 + 128, 0 * 256 + 77, 4 * 256 + 255, 0 * 256 + 51]);
  });
});

describe('bestRows', () => {
  it.each(['cxcywh', 'xyxy'] as const)(
    'returns fixed [1, k, 4 + C] rows from which detect-decode finds exactly the boxes it finds in the whole output (%s)',
    async (box) => {
      const [A, C, k] = [400, 3, 200];
      const g = identity(17, [1, A, 4 + C]);
      bestRows(g, k);
      const o = { scoreThreshold: 0.25, iouThreshold: 0.5, maxOutput: 20, box };
      const r = rng(7);
      const out = new Float32Array(A * (4 + C));
      for (let a = 0; a < A; a++) {
        // clusters of overlapping boxes, so NMS has work; ~30% of the rows pass the threshold
        const q = a % 25;
        const [cx, cy, w, h] = [
          40 + (q % 5) * 50 + r() * 12,
          40 + Math.floor(q / 5) * 50 + r() * 12,
          20 + r() * 30,
          20 + r() * 30,
        ];
        out.set(box === 'cxcywh' ? [cx, cy, w, h] : [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], a * 7);
        for (let c = 0; c < C; c++) out[a * 7 + 4 + c] = r() ** 12;
      }
      const rows = (await run(g, { X: new ort.Tensor('float32', out, [1, A, 4 + C]) }))[g.outputs[0].name];
      expect(rows.dims).toEqual([1, k, 4 + C]);
      const decode = (data: Float32Array, anchors: number) =>
        decodeDetections(data, { dims: [1, anchors, 4 + C], layout: 'anchors-first', ...o });
      const want = await decode(out, A);
      const got = await decode(rows.data as Float32Array, k);
      const passing = Array.from({ length: A }, (_, a) => Math.max(...out.subarray(a * 7 + 4, a * 7 + 7))).filter(
        (v) => v > o.scoreThreshold,
      ).length;
      expect(passing).toBeGreaterThan(20);
      expect(passing).toBeLessThanOrEqual(k);
      expect(want.scores.length).toBeGreaterThan(5);
      expect([...got.boxes]).toEqual([...want.boxes]);
      expect([...got.scores]).toEqual([...want.scores]);
      expect([...got.classes]).toEqual([...want.classes]);
    },
  );

  it('keeps the rows best first by their best class score', async () => {
    const g = identity(17, [1, 6, 6]);
    bestRows(g, 3);
    // rows 0..5, best class scores 0.1, 0.9, 0.3, 0.8, 0.2, 0.7 (in either class column)
    const best = [0.1, 0.9, 0.3, 0.8, 0.2, 0.7];
    const x = new Float32Array(36);
    best.forEach((v, a) => x.set([a, a, 1, 1, a % 2 ? v : 0.05, a % 2 ? 0.05 : v], a * 6));
    const rows = (await run(g, { X: new ort.Tensor('float32', x, [1, 6, 6]) }))[g.outputs[0].name];
    expect(rows.dims).toEqual([1, 3, 6]);
    expect([0, 1, 2].map((i) => (rows.data as Float32Array)[i * 6])).toEqual([1, 3, 5]);
  });
});

describe('float16 conversion', () => {
  const cls = () => {
    const from = Object.keys(FILES).find((f) => f.includes('_cls_'))!;
    return foldAffineConv(readFileSync(join(modelsDir(), from))).bytes;
  };

  it('halves the weights, keeps opset and float32 I/O, and the outputs within half rounding', async () => {
    const f32 = cls();
    const g = OnnxGraph.decode(f32);
    const stats = convertToFloat16(g);
    expect(stats.half).toBeGreaterThan(100);
    expect(stats.keptForRange).toBe(0);
    const f16 = g.encode();
    expect(f16.length / f32.length).toBeLessThan(0.55);
    const back = OnnxGraph.decode(f16);
    expect(back.opset).toBe(OnnxGraph.decode(f32).opset);
    expect([...back.inputs, ...back.outputs].map((v) => v.elemType)).toEqual([DT.FLOAT, DT.FLOAT]);
    const r = rng(3);
    const x = new ort.Tensor(
      'float32',
      Float32Array.from({ length: 2 * 3 * 48 * 192 }, () => r() * 2 - 1),
      [2, 3, 48, 192],
    );
    const a = await ort.InferenceSession.create(f32, OPTIONS);
    const b = await ort.InferenceSession.create(f16, OPTIONS);
    const ya = Object.values(await a.run({ x }))[0].data as Float32Array;
    const yb = Object.values(await b.run({ x }))[0].data as Float32Array;
    await a.release();
    await b.release();
    for (let i = 0; i < ya.length; i++) expect(Math.abs(ya[i] - yb[i])).toBeLessThan(0.02);
  });

  it('keeps float32 a node whose weights do not fit in half, and the node feeding it', async () => {
    const f32 = (name: string, dims: number[], v: number[]) => ({
      name,
      type: 'float32' as const,
      dims,
      raw: new Uint8Array(Float32Array.from(v).buffer),
    });
    const model = encodeModel({
      name: 'wide',
      opset: 11,
      nodes: [
        { op: 'Mul', inputs: ['X', 'k'], outputs: ['big'] },
        { op: 'BatchNormalization', inputs: ['big', 'one', 'zero', 'zero', 'var'], outputs: ['norm'] },
        { op: 'Relu', inputs: ['norm'], outputs: ['Y'] },
      ],
      inputs: [{ name: 'X', type: 'float32', shape: [1, 2, 1, 1] }],
      outputs: [{ name: 'Y', type: 'float32', shape: [1, 2, 1, 1] }],
      initializers: [
        f32('k', [], [1e4]),
        f32('one', [2], [1, 1]),
        f32('zero', [2], [0, 0]),
        f32('var', [2], [1e8, 1e8]),
      ],
    });
    const g = OnnxGraph.decode(model);
    expect(convertToFloat16(g)).toMatchObject({ half: 1, keptForRange: 2 });
    expect(g.inits.get('var')!.dataType).toBe(DT.FLOAT);
    // 7 × 1e4 overflows half; the float32 Mul and BatchNormalization get (7e4 / 1e4) = 7 right
    const y = (await run(g, { X: new ort.Tensor('float32', Float32Array.from([7, -3]), [1, 2, 1, 1]) })).Y;
    expect(Math.abs((y.data as Float32Array)[0] - 7)).toBeLessThan(0.01);
    expect((y.data as Float32Array)[1]).toBe(0);
  });

  it('simulates half storage on a float32 graph: Cast pairs after each half node, weights on the half grid', () => {
    const g = OnnxGraph.decode(cls());
    const nodes = g.nodes.length;
    const stats = simulateFloat16(g);
    expect(g.nodes.length).toBe(nodes + stats.casts);
    expect(stats.casts).toBeGreaterThan(2 * 100);
    expect([...g.inits.values()].every((t) => t.dataType !== DT.FLOAT16)).toBe(true);
  });
});
