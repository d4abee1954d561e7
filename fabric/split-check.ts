/**
 * Checks a cut with onnxruntime-node: on sample inputs (random ones of the whole model's declared
 * shapes, open dims taken as 1, or given tensors), tail(head(x)) must equal whole(x) within a
 * tolerance. Reports the largest difference and the bytes of the cut tensors per sample.
 */
import { randomFillSync } from 'node:crypto';
import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import { OnnxGraph } from '../runner/backends/onnx-graph.js';
import type { Tensor } from '../runner/types.js';
import { FabricError } from '../spec/errors.js';

export interface CheckReport {
  samples: number;
  /** Largest absolute difference between the whole model's outputs and the tail's, over all samples. */
  maxAbsDiff: number;
  /** Bytes of the cut tensors (what a device would send) per sample. */
  cutBytes: number;
  /** Shapes the cut tensors had on the first sample. */
  cutShapes: Record<string, number[]>;
  tolerance: number;
}

const ORT_TYPE: Record<number, OrtTensor.Type> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  6: 'int32',
  7: 'int64',
  9: 'bool',
  10: 'float16',
};

/**
 * Given samples (`--sample`) against the whole model's declared inputs: every input given, no other
 * name, its element type and rank, and its fixed dims. A sample that does not fit is the user's
 * input, not an internal error from onnxruntime (E_FABRIC_SPLIT, reason `sample`).
 */
export function checkSamples(model: Uint8Array, samples: Record<string, Tensor>[]): void {
  const inputs = OnnxGraph.decode(model).inputs;
  const bad = (summary: string, detail: Record<string, unknown>) => {
    throw new FabricError('E_FABRIC_SPLIT', summary, { reason: 'sample', ...detail });
  };
  for (const [k, sample] of samples.entries()) {
    for (const name of Object.keys(sample))
      if (!inputs.some((v) => v.name === name))
        bad(`sample ${k}: the model has no input ${JSON.stringify(name)}`, {
          sample: k,
          input: name,
          inputs: inputs.map((v) => v.name),
        });
    for (const v of inputs) {
      const x = Object.hasOwn(sample, v.name) ? sample[v.name] : undefined;
      if (!x) {
        bad(`sample ${k}: no value for the model's input ${v.name}`, { sample: k, input: v.name });
        continue;
      }
      const type = ORT_TYPE[v.elemType] ?? `onnx type ${v.elemType}`;
      if (x.type !== type)
        bad(`sample ${k}: input ${v.name} is ${type}, the sample ${x.type}`, {
          sample: k,
          input: v.name,
          expected: type,
          actual: x.type,
        });
      const shape = v.shape;
      if (
        shape &&
        (shape.length !== x.dims.length || shape.some((d, i) => typeof d === 'number' && d > 0 && d !== x.dims[i]))
      )
        bad(`sample ${k}: input ${v.name} has shape [${shape.join(',')}], the sample [${x.dims.join(',')}]`, {
          sample: k,
          input: v.name,
          expected: shape,
          actual: x.dims,
        });
    }
  }
}

/** The most elements of one random input (256 MiB of float32): a model declares its input shapes, any it likes. */
export const MAX_RANDOM_ELEMENTS = 2 ** 26;

/** Random feeds of the model's declared inputs (float: uniform [0, 1); integers: 0…9). */
export function randomFeeds(model: Uint8Array): Record<string, Tensor> {
  const g = OnnxGraph.decode(model);
  // no prototype: an input may be named `__proto__`
  const feeds: Record<string, Tensor> = Object.create(null);
  for (const v of g.inputs) {
    const dims = (v.shape ?? []).map((d) => (typeof d === 'number' && d > 0 ? d : 1));
    const n = dims.reduce((a, b) => a * b, 1);
    if (!(n <= MAX_RANDOM_ELEMENTS))
      throw new FabricError(
        'E_FABRIC_SPLIT',
        `input ${v.name}: its declared shape [${dims.join(',')}] is too large for random samples (more than ${MAX_RANDOM_ELEMENTS} elements); give .npy samples`,
        { reason: 'sample', input: v.name, dims },
      );
    const type = ORT_TYPE[v.elemType];
    if (type === 'float32') {
      const u = new Uint32Array(n);
      randomFillSync(u);
      feeds[v.name] = { type, dims, data: Float32Array.from(u, (x) => x / 2 ** 32) };
    } else if (type === 'uint8') {
      const d = new Uint8Array(n);
      randomFillSync(d);
      feeds[v.name] = { type, dims, data: d };
    } else if (type === 'int64')
      feeds[v.name] = { type, dims, data: BigInt64Array.from({ length: n }, (_, i) => BigInt(i % 10)) };
    else if (type === 'int32') feeds[v.name] = { type, dims, data: Int32Array.from({ length: n }, (_, i) => i % 10) };
    else
      throw new FabricError(
        'E_FABRIC_SPLIT',
        `input ${v.name}: no random samples for element type ${v.elemType}; give .npy samples`,
        {
          input: v.name,
        },
      );
  }
  return feeds;
}

export async function checkSplit(
  whole: Uint8Array,
  head: Uint8Array,
  tail: Uint8Array,
  samples: Record<string, Tensor>[],
  tolerance = 1e-4,
): Promise<CheckReport> {
  const ort = await import('onnxruntime-node');
  const open = (b: Uint8Array) => ort.InferenceSession.create(b, { executionProviders: ['cpu'] });
  const [w, h, t] = await Promise.all([open(whole), open(head), open(tail)]);
  const toOrt = (x: Tensor) => new ort.Tensor(x.type as OrtTensor.Type, x.data as never, x.dims as number[]);
  // onnxruntime refusing what it was fed is this check failing, not an internal error
  const run = (s: InferenceSession, feeds: Record<string, OrtTensor>, names: readonly string[]) =>
    s.run(Object.fromEntries(names.map((n) => [n, feeds[n]]))).catch((e: Error) => {
      throw new FabricError('E_FABRIC_SPLIT', `onnxruntime refused a check run: ${e.message}`, { reason: 'check' });
    });
  let maxAbsDiff = 0;
  let cutBytes = 0;
  const cutShapes: Record<string, number[]> = Object.create(null); // a cut tensor may be named `__proto__`
  try {
    for (const [k, sample] of samples.entries()) {
      const feeds = Object.fromEntries(Object.entries(sample).map(([n, x]) => [n, toOrt(x)]));
      const a = await run(w, feeds, w.inputNames);
      const mid = await run(h, feeds, h.inputNames);
      const b = await run(t, mid, t.inputNames);
      if (k === 0) {
        for (const n of t.inputNames) cutShapes[n] = [...mid[n].dims];
        cutBytes = t.inputNames.reduce((s, n) => s + (mid[n].data as ArrayBufferView).byteLength, 0);
      }
      for (const n of w.outputNames) {
        const x = a[n].data as ArrayLike<number>;
        const y = b[n]?.data as ArrayLike<number> | undefined;
        if (!y || y.length !== x.length || a[n].dims.join() !== b[n].dims.join())
          throw new FabricError('E_FABRIC_SPLIT', `output ${n}: the tail's shape differs from the whole model's`, {
            output: n,
            whole: a[n].dims,
            tail: b[n]?.dims ?? null,
          });
        for (let i = 0; i < x.length; i++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(Number(x[i]) - Number(y[i])));
      }
    }
  } finally {
    await Promise.all([w.release(), h.release(), t.release()]);
  }
  if (!(maxAbsDiff <= tolerance))
    throw new FabricError(
      'E_FABRIC_SPLIT',
      `head∘tail differs from the whole model by ${maxAbsDiff} (tolerance ${tolerance})`,
      {
        maxAbsDiff,
        tolerance,
      },
    );
  return { samples: samples.length, maxAbsDiff, cutBytes, cutShapes, tolerance };
}
