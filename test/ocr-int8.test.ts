/**
 * The int8 recogniser of the OCR package (variant rec-cpu-int8, fixtures/onnx-int8.ts): chosen
 * where the CPU has int8 dot products and not elsewhere, built reproducibly from the checked-in
 * calibration table, its graph edits exact where they claim to be, and reading the rendered pages
 * as well as the float32 recogniser through the real signed package.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { charAccuracy, expectedLines, pages, renderPng } from '../fixtures/images/render.js';
import { foldAffineConv } from '../fixtures/onnx-fold.js';
import { OnnxGraph } from '../fixtures/onnx-graph.js';
import {
  activationParams,
  alignAffineRanges,
  foldBatchNorms,
  quantizableConvs,
  quantizeConvs,
  quantizeHardSwish,
  type Ranges,
  withOpsets,
} from '../fixtures/onnx-int8.js';
import { upgradeToOpset11 } from '../fixtures/onnx-opset.js';
import { tensorFloat32 } from '../fixtures/onnx-proto.js';
import { INT8_REC_FILE, int8Float, int8Recogniser, modelsDir, RANGES_FILE } from '../fixtures/paddleocr-v4/build.js';
import { PackageReader } from '../pack/reader.js';
import { type HostProfile, loadHostProfile } from '../runner/host-profile.js';
import type { TextLine } from '../runner/pipeline/index.js';
import { Runner } from '../runner/runner.js';
import { selectVariants } from '../runner/select.js';
import { validateManifestSource } from '../spec/manifest.js';

const FIX = fileURLToPath(new URL('../fixtures/', import.meta.url));
const PACKAGE = join(FIX, 'dist', 'paddleocr-v4.xpkg');
const KEY = join(FIX, 'keys', 'test.pub');
const manifest = validateManifestSource(JSON.parse(readFileSync(join(FIX, 'paddleocr-v4', 'xpkg.json'), 'utf8')));
const host = (name: string): HostProfile => loadHostProfile(join(FIX, 'hosts', `${name}.json`));
const recOn = (h: HostProfile, precision?: 'fp32') =>
  selectVariants(manifest, h, { backends: ['onnxruntime'], ...(precision ? { precision } : {}) }).models.find(
    (m) => m.model === 'rec',
  )?.chosen?.variant.id;

describe('rec-cpu-int8 selection', () => {
  it('is chosen on CPUs with int8 dot products, the float32 recogniser elsewhere', () => {
    expect(recOn(host('x64-avx512-vnni'))).toBe('rec-cpu-int8');
    expect(recOn(host('graviton3'))).toBe('rec-cpu-int8');
    expect(recOn(host('x64-avx2'))).toBe('rec-cpu-fp32');
    expect(recOn(host('arm64-rpi4'))).toBe('rec-cpu-fp32');
    // a user's --precision fp32 wins over the CPU's preference
    expect(recOn(host('x64-avx512-vnni'), 'fp32')).toBe('rec-cpu-fp32');
  });

  it('leaves det and cls on their float32 variants', () => {
    const sel = selectVariants(manifest, host('x64-avx512-vnni'), { backends: ['onnxruntime'] });
    expect(Object.fromEntries(sel.models.map((m) => [m.model, m.chosen?.variant.id]))).toEqual({
      det: 'det-cpu-fp32',
      cls: 'cls-cpu-fp32',
      rec: 'rec-cpu-int8',
    });
  });
});

describe('the int8 graph edits (fixtures/onnx-int8.ts)', () => {
  let folded: Uint8Array;
  beforeAll(async () => {
    folded = foldAffineConv(await readFile(join(modelsDir(), 'ch_PP-OCRv4_rec_infer.onnx'))).bytes;
  });

  it('the package holds exactly the bytes the build makes from the checked-in calibration table', async () => {
    const built = await int8Recogniser(folded);
    const pkg = await PackageReader.open(PACKAGE);
    try {
      const entry = pkg.manifest.files.find((f) => f.path === INT8_REC_FILE);
      expect(entry?.sha256).toBe(createHash('sha256').update(built).digest('hex'));
    } finally {
      await pkg.close();
    }
    // every convolution is quantized: each reads a dequantized input and weight
    const g = OnnxGraph.decode(built);
    const convs = g.nodes.filter((n) => n.opType === 'Conv');
    expect(convs.length).toBeGreaterThan(30);
    for (const c of convs) {
      expect(g.producer(c.input[0])?.opType).toBe('DequantizeLinear');
      expect(g.producer(c.input[1])?.opType).toBe('DequantizeLinear');
    }
  });

  it('folding BatchNormalization into its convolution keeps the recogniser output (float32)', async () => {
    const g = OnnxGraph.decode(folded);
    upgradeToOpset11(g);
    const before = g.nodes.filter((n) => n.opType === 'BatchNormalization').length;
    expect(foldBatchNorms(g)).toBeGreaterThan(0);
    expect(g.nodes.filter((n) => n.opType === 'BatchNormalization').length).toBeLessThan(before);
    const x = new Float32Array(3 * 48 * 160);
    for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37) * 0.9;
    const run = async (bytes: Uint8Array) => {
      const s = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, graphOptimizationLevel: 'disabled' });
      const out = await s.run({ x: new ort.Tensor('float32', x, [1, 3, 48, 160]) });
      await s.release();
      return Object.values(out)[0].data as Float32Array;
    };
    const a = await run(folded);
    const b = await run(withOpsets(g.encode()));
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    expect(worst).toBeLessThan(1e-4);
  });

  it('hard-swish on the uint8 values reads like the float chain it replaces, every affine step exact', async () => {
    const { ranges } = JSON.parse(await readFile(RANGES_FILE, 'utf8')) as { ranges: Ranges };
    const float = int8Float(folded);
    const aligned = alignAffineRanges(float, ranges);
    // each affine's b is a whole number of its value's steps where the ranges were aligned
    const moved = Object.keys(aligned).filter((k) => aligned[k] !== ranges[k]);
    expect(moved.length).toBeGreaterThan(5);
    for (const v of moved) {
      const add = float.nodes.find((n) => n.output[0] === v)!;
      const b = tensorFloat32(float.inits.get(add.input.find((x) => float.inits.has(x))!)!.msg)![0];
      const steps = b / activationParams(aligned[v]).scale;
      expect(Math.abs(steps - Math.round(steps)), v).toBeLessThan(1e-3);
      expect(Math.abs(activationParams(aligned[v]).scale / activationParams(ranges[v]).scale - 1)).toBeLessThanOrEqual(
        0.25,
      );
    }
    const before = int8Float(folded);
    quantizeConvs(before, aligned);
    const after = int8Float(folded);
    quantizeConvs(after, aligned);
    const n = quantizeHardSwish(after);
    const count = (g: OnnxGraph, op: string) => g.nodes.filter((x) => x.opType === op).length;
    expect(n).toBeGreaterThan(20);
    expect(count(after, 'QLinearMul')).toBe(n);
    expect(count(after, 'HardSigmoid')).toBe(count(before, 'HardSigmoid') - n);
    // the same text read from a synthetic line: the argmax of each time step agrees
    const x = new Float32Array(3 * 48 * 320);
    for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.05) * 0.8 + Math.sin(i * 0.71) * 0.2;
    const run = async (g: OnnxGraph) => {
      const s = await ort.InferenceSession.create(withOpsets(g.encode()), { intraOpNumThreads: 1 });
      const out = await s.run({ x: new ort.Tensor('float32', x, [1, 3, 48, 320]) });
      await s.release();
      return Object.values(out)[0] as ort.Tensor;
    };
    const [a, b] = [await run(before), await run(after)];
    const classes = a.dims[2];
    const argmax = (t: ort.Tensor, step: number) => {
      const d = t.data as Float32Array;
      let best = 0;
      for (let c = 1; c < classes; c++) if (d[step * classes + c] > d[step * classes + best]) best = c;
      return best;
    };
    let same = 0;
    for (let t = 0; t < a.dims[1]; t++) same += argmax(a, t) === argmax(b, t) ? 1 : 0;
    expect(same / a.dims[1]).toBeGreaterThanOrEqual(0.97);
  });

  it('refuses an op whose definition changed before opset 11 rather than guessing', () => {
    const g = OnnxGraph.decode(folded);
    g.nodes.push(g.node('Clip', [g.nodes[0].output[0]], ['clipped']));
    expect(() => upgradeToOpset11(g)).toThrow(/Clip/);
  });

  it('activation ranges always hold zero exactly', () => {
    for (const r of [
      [-1, 1],
      [0.5, 7],
      [-9, -2],
      [-0.375, 26.2],
    ] as [number, number][]) {
      const { scale, zeroPoint } = activationParams(r);
      expect(Number.isInteger(zeroPoint) && zeroPoint >= 0 && zeroPoint <= 255).toBe(true);
      expect(scale).toBeGreaterThan(0);
      // the quantized zero dequantizes to 0, and both ends of the range are representable
      expect(Math.max(r[1], 0)).toBeLessThanOrEqual((255 - zeroPoint) * scale * (1 + 1e-6) + scale);
      expect(Math.min(r[0], 0)).toBeGreaterThanOrEqual(-zeroPoint * scale * (1 + 1e-6) - scale);
    }
    expect(quantizableConvs(OnnxGraph.decode(folded)).length).toBeGreaterThan(30);
  });
});

describe('rec-cpu-int8 reads like the float32 recogniser (signed package, real pipeline)', () => {
  const names = ['paragraph', 'small-line', 'fonts', 'colours', 'inverted', 'dense', 'receipt'];
  const corpus = pages().filter((p) => names.includes(p.name));
  let dir: string;
  const files: string[] = [];
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'xpkg-ocr-int8-'));
    for (const p of corpus) {
      const f = join(dir, `${p.name}.png`);
      await writeFile(f, await renderPng(p));
      files.push(f);
    }
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const read = async (precision: 'fp32' | 'int8') => {
    const runner = await Runner.open(PACKAGE, { trust: [KEY], precision });
    try {
      const out: { variant: string; accuracy: number[] } = { variant: '', accuracy: [] };
      for (const [i, f] of files.entries()) {
        const r = await runner.run({ image: f });
        out.variant = r.variant.rec;
        const lines = (r.outputs.lines as TextLine[]).map((l) => l.text);
        out.accuracy.push(charAccuracy(lines, expectedLines(corpus[i])));
      }
      return out;
    } finally {
      await runner.close();
    }
  };

  it('character accuracy at least the float32 recogniser’s on each page, ≥ 0.99 in all', async () => {
    const fp32 = await read('fp32');
    const int8 = await read('int8');
    expect(fp32.variant).toBe('rec-cpu-fp32');
    expect(int8.variant).toBe('rec-cpu-int8');
    for (const [i, a] of int8.accuracy.entries())
      expect(a, corpus[i].name).toBeGreaterThanOrEqual(fp32.accuracy[i] - 0.01);
    expect(int8.accuracy.reduce((a, b) => a + b, 0) / int8.accuracy.length).toBeGreaterThanOrEqual(0.99);
  }, 120_000);
});
