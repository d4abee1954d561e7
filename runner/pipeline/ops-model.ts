/**
 * The `infer` op: runs a model of the package on tensors from the environment. A batch tensor
 * runs in one call (or in chunks of `maxBatch` along dim 0); a `tensors` list runs once per item.
 */
import { Type } from '../../spec/typebox-lite.js';
import type { ModelSession, Tensor, TypedData } from '../types.js';
import { defineOp, Name, type OpRun, RestartPipeline } from './registry.js';
import { type TensorsValue, type TensorValue, tensorValue } from './values.js';

export const Binding = Type.Union([Name, Type.Record(Type.String({ minLength: 1, maxLength: 256 }), Name)]);

const InferParams = Type.Object(
  { inputs: Binding, outputs: Binding, maxBatch: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })) },
  { additionalProperties: false },
);

function names(b: string | Record<string, string>): string[] {
  return typeof b === 'string' ? [b] : Object.values(b);
}

/** Model-side name → environment name, a bare string meaning the model's first input/output. */
export function bind(
  b: string | Record<string, string>,
  modelNames: readonly string[],
  what: string,
  x: OpRun,
): [string, string][] {
  if (typeof b === 'string') {
    if (!modelNames.length) x.fail(`model has no ${what}s`);
    return [[modelNames[0], b]];
  }
  return Object.entries(b).map(([m, env]) => {
    if (!modelNames.includes(m))
      x.fail(`model has no ${what} named ${JSON.stringify(m)}`, { available: [...modelNames] });
    return [m, env];
  });
}

/** The backend-neutral tensor, without the environment's tag. */
export function bare(v: TensorValue): Tensor {
  return { type: v.type, dims: v.dims, data: v.data };
}

function sliceBatch(t: Tensor, start: number, end: number): Tensor {
  const per = t.dims.slice(1).reduce((a, b) => a * b, 1);
  return {
    type: t.type,
    dims: [end - start, ...t.dims.slice(1)],
    data: t.data.subarray(start * per, end * per) as TypedData,
  };
}

function concatBatch(parts: Tensor[]): Tensor {
  if (parts.length === 1) return parts[0];
  const total = parts.reduce((a, p) => a + p.data.length, 0);
  const Ctor = parts[0].data.constructor as new (n: number) => TypedData;
  const data = new Ctor(total);
  let o = 0;
  for (const p of parts) {
    (data as Float32Array).set(p.data as Float32Array, o);
    o += p.data.length;
  }
  return { type: parts[0].type, dims: [parts.reduce((a, p) => a + p.dims[0], 0), ...parts[0].dims.slice(1)], data };
}

const bytesOf = (ts: Tensor[]) => ts.reduce((n, t) => n + t.data.byteLength, 0);

async function runOnce(
  session: ModelSession,
  feeds: Record<string, Tensor>,
  maxBatch: number | undefined,
): Promise<Record<string, Tensor>> {
  const first = Object.values(feeds)[0];
  const n = first?.dims[0] ?? 0;
  if (!maxBatch || n <= maxBatch) return session.run(feeds);
  const chunks: Record<string, Tensor>[] = [];
  for (let s = 0; s < n; s += maxBatch) {
    const part: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(feeds)) part[k] = sliceBatch(t, s, Math.min(n, s + maxBatch));
    chunks.push(await session.run(part));
  }
  const out: Record<string, Tensor> = {};
  for (const k of Object.keys(chunks[0])) out[k] = concatBatch(chunks.map((c) => c[k]));
  return out;
}

defineOp({
  op: 'infer',
  stage: 'infer',
  model: true,
  summary:
    "Runs the step's `model` on environment tensors: a batch in one call (or chunks of maxBatch), a tensor list once per item. An empty batch skips the model.",
  params: InferParams,
  reads: (p) => names(p.inputs),
  writes: (p) => names(p.outputs),
  async run(p, x) {
    const session = await x.ctx.session(x.step.model!);
    const ins = bind(p.inputs, session.inputNames, 'input', x);
    const outs = bind(p.outputs, session.outputNames, 'output', x);
    const values = ins.map(([m, env]) => [m, x.get(env, 'tensor', 'tensors')] as const);
    const lists = values.filter(([, v]) => v.kind === 'tensors');
    if (lists.length && lists.length !== values.length) x.fail('inputs mix a tensor list with single tensors');
    const call = async (feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> => {
      // An empty batch (no regions found) can't go through most runtimes; its outputs are empty.
      if (Object.values(feeds).some((t) => t.dims[0] === 0))
        return Object.fromEntries(
          outs.map(([m]) => [m, { type: 'float32', dims: [0], data: new Float32Array(0) } as Tensor]),
        );
      let out: Record<string, Tensor>;
      try {
        out = await runOnce(session, feeds, p.maxBatch);
      } catch (e) {
        if (e instanceof RestartPipeline) throw e;
        return x.fail(`model ${x.step.model} failed: ${(e as Error).message}`);
      }
      // read after the run: a session that failed while running may have been replaced by a CPU one
      if (session.provider && session.provider !== 'cpu')
        x.copied(x.step.model!, bytesOf(Object.values(feeds)), bytesOf(Object.values(out)));
      return out;
    };
    const pick = (r: Record<string, Tensor>, m: string): TensorValue => {
      const t = r[m];
      if (!t) x.fail(`model ${x.step.model} returned no ${JSON.stringify(m)}`);
      return tensorValue(t);
    };
    if (!lists.length) {
      const feeds = Object.fromEntries(values.map(([m, v]) => [m, bare(v as TensorValue)]));
      const r = await call(feeds);
      for (const [m, env] of outs) x.set(env, pick(r, m));
      return;
    }
    const count = (values[0][1] as TensorsValue).items.length;
    if (values.some(([, v]) => (v as TensorsValue).items.length !== count))
      x.fail('tensor lists have different lengths');
    const results: TensorValue[][] = outs.map(() => []);
    for (let i = 0; i < count; i++) {
      const r = await call(Object.fromEntries(values.map(([m, v]) => [m, bare((v as TensorsValue).items[i])])));
      outs.forEach(([m], k) => results[k].push(pick(r, m)));
    }
    outs.forEach(([, env], k) => x.set(env, { kind: 'tensors', items: results[k] }));
  },
});
