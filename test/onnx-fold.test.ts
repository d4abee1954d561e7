/**
 * fixtures/onnx-fold.ts on the three real PaddleOCR models the OCR package ships: the folded
 * models compute the same outputs as the upstream ones in onnxruntime, fold what the Python
 * prototype (notes/fuse.py) folds, and come out byte-identical on every run; fixtures/onnx-proto.ts
 * round-trips the models byte-for-byte and rejects malformed protobuf with an Error.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FoldStats, foldAffineConv } from '../fixtures/onnx-fold.js';
import {
  decodeMessage,
  encodeMessage,
  fieldsOf,
  type Message,
  messageField,
  ONNX,
  sub,
} from '../fixtures/onnx-proto.js';
import { encodeModel, type GraphSpec, type Initializer } from '../fixtures/onnx-tiny.js';
import { FILES, modelsDir } from '../fixtures/paddleocr-v4/build.js';
import { rng } from '../fixtures/random.js';

type Name = 'det' | 'rec' | 'cls';
const file = (name: Name) => Object.keys(FILES).find((f) => f.includes(`_${name}_`))!;
/** What notes/fuse.py finds in each model. */
const EXPECTED: Record<Name, FoldStats> = {
  rec: { pre: 28, hardSwish: 28, post: 12 },
  det: { pre: 28, hardSwish: 24, post: 10 },
  cls: { pre: 0, hardSwish: 18, post: 0 },
};

const models = {} as Record<
  Name,
  { original: Uint8Array; folded: Uint8Array; stats: FoldStats; a: ort.InferenceSession; b: ort.InferenceSession }
>;
const options: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: 2,
  interOpNumThreads: 1,
  graphOptimizationLevel: 'all',
};

beforeAll(async () => {
  for (const name of ['det', 'rec', 'cls'] as const) {
    const original = new Uint8Array(readFileSync(join(modelsDir(), file(name))));
    const { bytes: folded, stats } = foldAffineConv(original);
    const [a, b] = await Promise.all([
      ort.InferenceSession.create(original, options),
      ort.InferenceSession.create(folded, options),
    ]);
    models[name] = { original, folded, stats, a, b };
  }
});

afterAll(async () => {
  for (const m of Object.values(models)) await Promise.all([m.a.release(), m.b.release()]);
});

function input(dims: number[], seed: number): ort.Tensor {
  const r = rng(seed);
  const data = new Float32Array(dims.reduce((a, d) => a * d, 1));
  for (let i = 0; i < data.length; i++) data[i] = 2 * r() - 1; // the pipeline's images are normalised to [-1, 1]
  return new ort.Tensor('float32', data, dims);
}

/**
 * Dark dashed strokes on a light background, with noise: the detector finds "text" here (plain
 * noise leaves its probability map at 0 everywhere, where any model would agree).
 */
function strokes(dims: number[], seed: number): ort.Tensor {
  const r = rng(seed);
  const [, c, h, w] = dims;
  const data = new Float32Array(c * h * w);
  for (let i = 0; i < data.length; i++) {
    const x = i % w;
    const y = Math.floor(i / w) % h;
    const ink = (y >> 3) % 2 === 0 && x > w / 8 && x < (7 * w) / 8 && (x >> 2) % 2 === 0;
    data[i] = (ink ? -1.5 : 1.5) + 0.2 * (r() - 0.5);
  }
  return new ort.Tensor('float32', data, dims);
}

/** Runs both sessions of `name` on one input; returns the outputs and the largest difference. */
async function compare(name: Name, dims: number[], seed: number, make = input) {
  const { a, b } = models[name];
  const feeds = { [a.inputNames[0]]: make(dims, seed) };
  const [ra, rb] = await Promise.all([a.run(feeds), b.run(feeds)]);
  const ya = ra[a.outputNames[0]];
  const yb = rb[b.outputNames[0]];
  expect(yb.dims).toEqual(ya.dims);
  const da = ya.data as Float32Array;
  const db = yb.data as Float32Array;
  let max = 0;
  for (let i = 0; i < da.length; i++) max = Math.max(max, Math.abs(da[i] - db[i]));
  return { da, db, dims: ya.dims, max };
}

/** Argmax over the last axis, per row. */
function argmax(data: Float32Array, classes: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < data.length / classes; r++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (data[r * classes + c] > data[r * classes + best]) best = c;
    out.push(best);
  }
  return out;
}

const graphOf = (model: Uint8Array): Message => sub(fieldsOf(decodeMessage(model), ONNX.model.graph)[0]);
const nodeCount = (model: Uint8Array) => fieldsOf(graphOf(model), ONNX.graph.node).length;

describe('foldAffineConv on the PaddleOCR models', () => {
  it('folds what the Python prototype folds, and the graphs shrink', () => {
    for (const name of ['det', 'rec', 'cls'] as const) {
      const m = models[name];
      expect(m.stats, name).toEqual(EXPECTED[name]);
      // Constants become initializers and each fold removes nodes.
      expect(nodeCount(m.folded), name).toBeLessThan(nodeCount(m.original) / 2);
    }
  });

  it('rec: same probabilities and the same best class per column, at several widths', async () => {
    for (const [width, seed] of [
      [8, 1],
      [40, 2],
      [160, 3],
      [320, 4],
    ]) {
      const r = await compare('rec', [2, 3, 48, width], seed);
      expect(r.max, `width ${width}`).toBeLessThanOrEqual(1e-4);
      const classes = r.dims[r.dims.length - 1];
      expect(argmax(r.db, classes)).toEqual(argmax(r.da, classes));
    }
  });

  it('cls: same probabilities and the same orientation', async () => {
    const r = await compare('cls', [2, 3, 48, 192], 5);
    expect(r.max).toBeLessThanOrEqual(1e-4);
    expect(argmax(r.db, 2)).toEqual(argmax(r.da, 2));
  });

  it('det: same probability map (opset 11: Clip bounds are inputs)', async () => {
    for (const [dims, seed] of [
      [[1, 3, 64, 96], 6],
      [[1, 3, 96, 64], 7],
    ] as const) {
      const r = await compare('det', [...dims], seed, strokes);
      expect(Math.max(...r.da)).toBeGreaterThan(0.9); // the map is not flat: the comparison means something
      expect(Math.min(...r.da)).toBeLessThan(0.1);
      expect(r.max).toBeLessThanOrEqual(1e-4);
    }
  });

  it('is deterministic: folding twice gives the same bytes, and a folded model has nothing left to fold', () => {
    for (const name of ['det', 'rec', 'cls'] as const) {
      const again = foldAffineConv(models[name].original);
      expect(Buffer.from(again.bytes).equals(Buffer.from(models[name].folded)), name).toBe(true);
      expect(foldAffineConv(models[name].folded).stats).toEqual({ pre: 0, hardSwish: 0, post: 0 });
    }
  });
});

describe('foldAffineConv on tiny graphs (the conditions)', () => {
  const f32 = (...v: number[]) => new Uint8Array(new Float32Array(v).buffer);
  const init = (name: string, dims: number[], values: number[]): Initializer => ({
    name,
    type: 'float32',
    dims,
    raw: f32(...values),
  });
  const W = init('W', [2, 2, 1, 1], [0.5, -1, 2, 0.25]);
  const base = (nodes: GraphSpec['nodes'], extra: Initializer[] = []) =>
    encodeModel({
      name: 'g',
      nodes,
      inputs: [{ name: 'X', type: 'float32', shape: [1, 2, 3, 3] }],
      outputs: [{ name: 'Y', type: 'float32', shape: [1, 2, 3, 3] }],
      initializers: [W, init('s', [], [1.5]), init('b', [1], [-0.75]), ...extra],
    });

  const quiet: ort.InferenceSession.SessionOptions = { logSeverityLevel: 3 }; // the tiny graphs leave some initializers unused
  async function same(model: Uint8Array, folded: Uint8Array): Promise<void> {
    const x = input([1, 2, 3, 3], 9);
    const [a, b] = await Promise.all([
      ort.InferenceSession.create(model, quiet),
      ort.InferenceSession.create(folded, quiet),
    ]);
    const [ya, yb] = [(await a.run({ X: x })).Y.data as Float32Array, (await b.run({ X: x })).Y.data as Float32Array];
    for (let i = 0; i < ya.length; i++) expect(Math.abs(ya[i] - yb[i])).toBeLessThanOrEqual(1e-6);
    await Promise.all([a.release(), b.release()]);
  }

  it('Conv → Mul → Add folds into the Conv', async () => {
    const m = base([
      { op: 'Conv', inputs: ['X', 'W'], outputs: ['c'] },
      { op: 'Mul', inputs: ['c', 's'], outputs: ['m'] },
      { op: 'Add', inputs: ['b', 'm'], outputs: ['a'] },
      { op: 'Relu', inputs: ['a'], outputs: ['Y'] },
    ]);
    const r = foldAffineConv(m);
    expect(r.stats).toEqual({ pre: 1, hardSwish: 0, post: 0 });
    expect(nodeCount(r.bytes)).toBe(2);
    await same(m, r.bytes);
  });

  it('a chain ending in a graph output is left alone', () => {
    const m = base([
      { op: 'Conv', inputs: ['X', 'W'], outputs: ['c'] },
      { op: 'Mul', inputs: ['c', 's'], outputs: ['Y'] },
    ]);
    expect(foldAffineConv(m).stats).toEqual({ pre: 0, hardSwish: 0, post: 0 });
  });

  it('Mul → Add → 1×1 Conv folds only into group-1 Convs', async () => {
    const nodes = (group: number): GraphSpec['nodes'] => [
      { op: 'Mul', inputs: ['X', 's'], outputs: ['m'] },
      { op: 'Add', inputs: ['m', 'b'], outputs: ['a'] },
      { op: 'Conv', inputs: ['a', group === 1 ? 'W' : 'Wg', 'B'], outputs: ['Y'], intAttrs: { group } },
    ];
    const extra = [init('B', [2], [0.125, -3]), init('Wg', [2, 1, 1, 1], [0.5, -2])];
    const folded = foldAffineConv(base(nodes(1), extra));
    expect(folded.stats).toEqual({ pre: 0, hardSwish: 0, post: 1 });
    await same(base(nodes(1), extra), folded.bytes);
    expect(foldAffineConv(base(nodes(2), extra)).stats.post).toBe(0);
  });

  it('a HardSwish chain with another offset, bound or divisor is not replaced', async () => {
    const chain = (hi: string, six: string, three = 'three'): GraphSpec['nodes'] => [
      { op: 'Add', inputs: ['X', three], outputs: ['a'] },
      { op: 'Clip', inputs: ['a', 'zero', hi], outputs: ['c'] },
      { op: 'Mul', inputs: ['X', 'c'], outputs: ['m'] },
      { op: 'Div', inputs: ['m', six], outputs: ['Y'] },
    ];
    const consts = [init('three', [1], [3]), init('zero', [], [0]), init('six', [], [6]), init('five', [], [5])];
    const good = base(chain('six', 'six'), consts);
    const r = foldAffineConv(good);
    expect(r.stats.hardSwish).toBe(1);
    await same(good, r.bytes);
    expect(foldAffineConv(base(chain('five', 'six'), consts)).stats.hardSwish).toBe(0);
    expect(foldAffineConv(base(chain('six', 'five'), consts)).stats.hardSwish).toBe(0);
    expect(foldAffineConv(base(chain('six', 'six', 'five'), consts)).stats.hardSwish).toBe(0);
  });
});

describe('onnx-proto', () => {
  /** Decodes the model, graph, nodes, attributes and tensors and encodes each level again. */
  function reencode(model: Uint8Array): Uint8Array {
    const deep = (m: Message, nested: Record<number, (inner: Message) => Message>): Message =>
      m.map((f) => (nested[f.no] ? messageField(f.no, nested[f.no](sub(f))) : f));
    const tensor = (t: Message) => deep(t, {});
    const attribute = (a: Message) => deep(a, { [ONNX.attribute.t]: tensor });
    const node = (n: Message) => deep(n, { [ONNX.node.attribute]: attribute });
    const graph = (g: Message) =>
      deep(g, {
        [ONNX.graph.node]: node,
        [ONNX.graph.initializer]: tensor,
        [ONNX.graph.input]: (v) => v,
        [ONNX.graph.output]: (v) => v,
      });
    return encodeMessage(deep(decodeMessage(model), { [ONNX.model.graph]: graph, [ONNX.model.opsetImport]: (o) => o }));
  }

  it('decode → encode without changes gives back the same bytes, for all three models', () => {
    for (const name of ['det', 'rec', 'cls'] as const) {
      const original = models[name].original;
      expect(Buffer.from(reencode(original)).equals(Buffer.from(original)), name).toBe(true);
    }
  });

  it('malformed protobuf throws an Error', () => {
    const cls = models.cls.original;
    expect(() => decodeMessage(cls.subarray(0, cls.length - 100))).toThrow(/truncated/);
    expect(() => foldAffineConv(cls.subarray(0, 5000))).toThrow(/truncated/);
    expect(() => decodeMessage(new Uint8Array([0x08, ...Array(10).fill(0xff), 0x01]))).toThrow(/varint/); // more than 10 bytes
    expect(() => decodeMessage(new Uint8Array([0x08, 0x80]))).toThrow(/truncated varint/);
    expect(() => decodeMessage(new Uint8Array([0x0b]))).toThrow(/wire type 3/); // groups
    expect(() => decodeMessage(new Uint8Array([0x0e, 0x00]))).toThrow(/wire type 6/);
    expect(() => decodeMessage(new Uint8Array([0x00]))).toThrow(/field number 0/);
    expect(() => decodeMessage(new Uint8Array([0x09, 1, 2, 3]))).toThrow(/truncated/); // fixed64 cut short
    expect(() => foldAffineConv(new Uint8Array([0x3a, 0x02, 0x0a, 0x05]))).toThrow(/truncated/); // a node inside the graph
  });

  it('arbitrary bytes decode or throw an Error, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          const m = decodeMessage(bytes);
          expect(Buffer.from(encodeMessage(m)).equals(Buffer.from(bytes))).toBe(true);
        } catch (e) {
          expect(e).toBeInstanceOf(Error);
          expect((e as Error).message).toMatch(/^message: /);
        }
      }),
    );
  });
});
