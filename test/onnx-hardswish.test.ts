/**
 * fixtures/onnx-hardswish.ts and onnx-opset.ts: raising a graph to opset 14 keeps what it computes (Squeeze axes as
 * inputs, the old Softmax's flattening), HardSigmoid(1/6, ½) × x becomes one HardSwish only where
 * that is the whole use of the HardSigmoid, and on the three PaddleOCR models the fused graphs give
 * onnxruntime's outputs unchanged. Ops the raise does not know, and opsets it does not start from,
 * are refused.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { foldAffineConv } from '../fixtures/onnx-fold.js';
import { floatAttr, type GNode, intAttr, intsAttr, OnnxGraph } from '../fixtures/onnx-graph.js';
import { fuseHardSwish } from '../fixtures/onnx-hardswish.js';
import { atOpset, raiseToOpset14 } from '../fixtures/onnx-opset.js';
import { encodeModel } from '../fixtures/onnx-tiny.js';
import { FILES, modelsDir } from '../fixtures/paddleocr-v4/build.js';
import { rng } from '../fixtures/random.js';

const options: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 2, interOpNumThreads: 1 };

/** A float32 graph X [2, 3, 4] → Y [2, 3, 4] of `nodes` (built with OnnxGraph.node) at `opset`. */
function graph(opset: number, nodes: (g: OnnxGraph) => GNode[], outputs = ['Y']): OnnxGraph {
  const g = OnnxGraph.decode(
    encodeModel({
      name: 't',
      opset,
      nodes: [],
      inputs: [{ name: 'X', type: 'float32', shape: [2, 3, 4] }],
      outputs: outputs.map((name) => ({ name, type: 'float32', shape: [2, 3, 4] })),
    }),
  );
  g.nodes = nodes(g);
  return g;
}

/** The raised and fused model (opset 14) beside the original, both run on the same input. */
async function same(before: Uint8Array, after: Uint8Array, dims: number[], seed = 1): Promise<number> {
  const [a, b] = await Promise.all([
    ort.InferenceSession.create(before, options),
    ort.InferenceSession.create(after, options),
  ]);
  try {
    const r = rng(seed);
    const x = new Float32Array(dims.reduce((p, d) => p * d, 1)).map(() => 8 * r() - 4);
    const feeds = { [a.inputNames[0]]: new ort.Tensor('float32', x, dims) };
    const [ra, rb] = await Promise.all([a.run(feeds), b.run(feeds)]);
    let max = 0;
    for (const k of a.outputNames) {
      expect(rb[k].dims).toEqual(ra[k].dims);
      const da = ra[k].data as Float32Array;
      const db = rb[k].data as Float32Array;
      for (let i = 0; i < da.length; i++) max = Math.max(max, Math.abs(da[i] - db[i]));
    }
    return max;
  } finally {
    await Promise.all([a.release(), b.release()]);
  }
}

/** Raised to 14 (through 11 for older graphs) and fused: the new bytes and the count. */
function raiseAndFuse(g: OnnxGraph): { bytes: Uint8Array; fused: number; graph: OnnxGraph } {
  const h = atOpset(g, 14);
  const fused = fuseHardSwish(h);
  return { bytes: h.encode(), fused, graph: h };
}

const hs = (g: OnnxGraph, x: string, y: string, alpha = 1 / 6, beta = 0.5) =>
  g.node('HardSigmoid', [x], [y], [floatAttr('alpha', alpha), floatAttr('beta', beta)]);

describe('fuseHardSwish', () => {
  it('fuses x × HardSigmoid(1/6, ½)(x) and computes the same', async () => {
    const g = graph(14, (g) => [hs(g, 'X', 'h'), g.node('Mul', ['h', 'X'], ['Y'])]);
    const before = g.encode();
    expect(fuseHardSwish(g)).toBe(1);
    expect(g.nodes.map((n) => [n.opType, n.input, n.output])).toEqual([['HardSwish', ['X'], ['Y']]]);
    expect(await same(before, g.encode(), [2, 3, 4])).toBeLessThan(1e-6);
  });

  it('leaves other slopes, shared HardSigmoids, graph outputs and other products alone', () => {
    const cases: [string, (g: OnnxGraph) => GNode[], string[]][] = [
      ['alpha 0.2 (a gate)', (g) => [hs(g, 'X', 'h', 0.2), g.node('Mul', ['h', 'X'], ['Y'])], ['Y']],
      [
        'read twice',
        (g) => [hs(g, 'X', 'h'), g.node('Mul', ['h', 'X'], ['Y']), g.node('Add', ['h', 'X'], ['Z'])],
        ['Y', 'Z'],
      ],
      ['a graph output', (g) => [hs(g, 'X', 'Z'), g.node('Mul', ['Z', 'X'], ['Y'])], ['Y', 'Z']],
      [
        'times something else',
        (g) => [hs(g, 'X', 'h'), g.node('Neg', ['X'], ['n']), g.node('Mul', ['h', 'n'], ['Y'])],
        ['Y'],
      ],
      ['squared', (g) => [hs(g, 'X', 'h'), g.node('Mul', ['h', 'h'], ['Y'])], ['Y']],
    ];
    for (const [what, nodes, outputs] of cases) {
      const g = graph(14, nodes, outputs);
      expect(fuseHardSwish(g), what).toBe(0);
      expect(
        g.nodes.some((n) => n.opType === 'HardSwish'),
        what,
      ).toBe(false);
    }
  });

  it('refuses a graph below opset 14', () => {
    const g = graph(13, (g) => [hs(g, 'X', 'h'), g.node('Mul', ['h', 'X'], ['Y'])]);
    expect(() => fuseHardSwish(g)).toThrow(/opset 14/);
  });
});

describe('raiseToOpset14', () => {
  it('keeps the old Softmax: one softmax over everything from its axis on', async () => {
    const g = graph(11, (g) => [g.node('Softmax', ['X'], ['Y'], [intAttr('axis', 1)])]);
    const before = g.encode();
    const { bytes, graph: h } = raiseAndFuse(g);
    expect(h.opset).toBe(14);
    expect(h.nodes.map((n) => n.opType)).toEqual(['Flatten', 'Softmax', 'Shape', 'Reshape']);
    expect(await same(before, bytes, [2, 3, 4])).toBeLessThan(1e-6);
  });

  it('moves Squeeze and ReduceSum axes to inputs, same values', async () => {
    const g = graph(11, (g) => [
      g.node('Unsqueeze', ['X'], ['u'], [intsAttr('axes', [0])]),
      g.node('ReduceSum', ['u'], ['s'], [intsAttr('axes', [2]), intAttr('keepdims', 1)]),
      g.node('Squeeze', ['s'], ['q'], [intsAttr('axes', [0])]),
      g.node('Add', ['X', 'q'], ['Y']),
    ]);
    const before = g.encode();
    const { bytes, graph: h } = raiseAndFuse(g);
    for (const n of h.nodes.filter((n) => n.opType !== 'Add')) expect(n.input, n.opType).toHaveLength(2);
    expect(await same(before, bytes, [2, 3, 4])).toBe(0);
  });

  it('refuses what it does not know, and opsets below 11', () => {
    expect(() => raiseToOpset14(graph(11, (g) => [g.node('Upsample', ['X'], ['Y'])]))).toThrow(/Upsample/);
    expect(() => raiseToOpset14(graph(10, (g) => [g.node('Relu', ['X'], ['Y'])]))).toThrow(/opset 10/);
  });
});

describe('on the PaddleOCR models', () => {
  const file = (name: string) => Object.keys(FILES).find((f) => f.includes(`_${name}_`))!;
  for (const [name, dims, hardSwishes] of [
    ['rec', [2, 3, 48, 200], 28],
    ['det', [1, 3, 96, 128], 24],
    ['cls', [4, 3, 48, 192], 18],
  ] as const) {
    it(`${name}: every hard-swish fused (${hardSwishes}), the same outputs`, async () => {
      const folded = foldAffineConv(new Uint8Array(readFileSync(join(modelsDir(), file(name))))).bytes;
      const { bytes, fused, graph: h } = raiseAndFuse(OnnxGraph.decode(folded));
      expect(fused).toBe(hardSwishes);
      // the gates (HardSigmoid 0.2) stay; no 1/6 one is left
      expect(h.nodes.filter((n) => n.opType === 'HardSwish')).toHaveLength(hardSwishes);
      expect(await same(folded, bytes, [...dims])).toBeLessThan(1e-5);
    }, 60_000);
  }
});
