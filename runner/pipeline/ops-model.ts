/**
 * The `infer` op: runs a model of the package on tensors from the environment. A batch tensor
 * runs in one call (or in chunks of `maxBatch` along dim 0); a `tensors` list runs once per item.
 */
import { Type } from '../../spec/typebox-lite.js';
import type { DType, ModelSession, Tensor, TypedData } from '../types.js';
import { defineOp, Name, type OpRun, RestartPipeline } from './registry.js';
import { type TensorsValue, type TensorValue, tensorValue } from './values.js';

export const Binding = Type.Union([Name, Type.Record(Type.String({ minLength: 1, maxLength: 256 }), Name)]);

const InferParams = Type.Object(
  {
    inputs: Binding,
    outputs: Binding,
    maxBatch: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
    // A tensor list's items of one shape run together (up to maxBatch a call), in one call each.
    batchList: Type.Optional(Type.Boolean()),
    // Every call carries exactly maxBatch items (zero items added, their outputs dropped): one
    // shape for an accelerator to prepare instead of one per count.
    padBatch: Type.Optional(Type.Boolean()),
    // A list's items (or batchList's groups) run all at once: on an accelerator the shapes have a
    // session each (backends/shape-sessions.ts), so small calls overlap instead of queueing.
    parallel: Type.Optional(Type.Boolean()),
  },
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

/** `t` with zero items appended up to `n` along dim 0. */
function padTo(t: Tensor, n: number): Tensor {
  const have = t.dims[0];
  if (have >= n) return t;
  const Ctor = t.data.constructor as new (n: number) => TypedData;
  const data = new Ctor((t.data.length / Math.max(1, have)) * n);
  (data as Float32Array).set(t.data as Float32Array);
  return { type: t.type, dims: [n, ...t.dims.slice(1)], data };
}

/** Bytes a session's runs read and returned, padding included (on a GPU: copied each way). */
interface Moved {
  in: number;
  out: number;
}

/** Runs one chunk, padded to `pad` items when asked; the outputs keep the chunk's own items. */
async function runChunk(session: ModelSession, feeds: Record<string, Tensor>, pad: number | undefined, moved: Moved) {
  const n = Object.values(feeds)[0]?.dims[0] ?? 0;
  const padded =
    !pad || n >= pad ? feeds : Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, padTo(t, pad)]));
  const out = await session.run(padded);
  moved.in += bytesOf(Object.values(padded));
  moved.out += bytesOf(Object.values(out));
  if (padded === feeds) return out;
  for (const [k, t] of Object.entries(out)) {
    if (t.dims[0] !== pad) throw new Error(`output ${k} has ${t.dims[0]} items for a batch of ${pad}`);
    out[k] = sliceBatch(t, 0, n);
  }
  return out;
}

async function runOnce(
  session: ModelSession,
  feeds: Record<string, Tensor>,
  maxBatch: number | undefined,
  padBatch: boolean | undefined,
  moved: Moved,
): Promise<Record<string, Tensor>> {
  const first = Object.values(feeds)[0];
  const n = first?.dims[0] ?? 0;
  const pad = padBatch ? maxBatch : undefined;
  if (!maxBatch || n <= maxBatch) return runChunk(session, feeds, pad, moved);
  const chunks: Record<string, Tensor>[] = [];
  for (let s = 0; s < n; s += maxBatch) {
    const part: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(feeds)) part[k] = sliceBatch(t, s, Math.min(n, s + maxBatch));
    chunks.push(await runChunk(session, part, pad, moved));
  }
  const out: Record<string, Tensor> = {};
  for (const k of Object.keys(chunks[0])) {
    // Concatenated along dim 0: each chunk's output must hold its chunk's items, of one shape and type.
    const parts = chunks.map((c) => c[k]);
    const tail = parts[0]?.dims.slice(1).join(',');
    parts.forEach((t, i) => {
      const items = Math.min(n, (i + 1) * maxBatch) - i * maxBatch;
      if (!t || t.dims[0] !== items || t.dims.slice(1).join(',') !== tail || t.type !== parts[0].type)
        throw new Error(
          `output ${k} is ${t ? `${t.type} [${t.dims.join(', ')}]` : 'missing'} for a chunk of ${items} items: it can't be joined along the batch`,
        );
    });
    out[k] = concatBatch(parts);
  }
  return out;
}

/**
 * Waits for every call; then a restart (a session failed and was replaced by another provider's)
 * wins over the other calls' errors, which may only be that replacement seeing inputs made for
 * the failed one.
 */
async function settled(calls: Promise<void>[]): Promise<void> {
  const rs = await Promise.allSettled(calls);
  const failed = rs.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  if (failed.length) throw failed.find((e) => e instanceof RestartPipeline) ?? failed[0];
}

/** Indexes of a list's items grouped by their shapes (all inputs'), in first-seen order. */
function sameShapes(lists: readonly TensorsValue[], count: number): number[][] {
  const groups = new Map<string, number[]>();
  for (let i = 0; i < count; i++) {
    const key = lists.map((l) => l.items[i].dims.join('x')).join(';');
    groups.set(key, [...(groups.get(key) ?? []), i]);
  }
  return [...groups.values()];
}

/**
 * Feeds the model's declared inputs can't take (another dtype, rank or fixed dim) fail the step
 * before the model runs: a run failure makes the model fall back to its next variant, and one
 * that takes them (a variant of another dtype) would then serve every later run instead.
 * Dim 0 is the batch `maxBatch` cuts into chunks: with it, that dim is the chunks'.
 */
export function checkFeeds(session: ModelSession, feeds: Record<string, Tensor>, chunked: boolean, x: OpRun): void {
  for (const [name, t] of Object.entries(feeds)) {
    const want = session.inputShapes?.find((s) => s.name === name);
    if (!want) continue;
    const bad = (why: string): never =>
      x.fail(`input ${name} of model ${x.step.model} is ${t.type} [${t.dims.join(', ')}]: ${why}`, {
        input: name,
        dims: [...t.dims],
      });
    if (want.type !== t.type) bad(`the model takes ${want.type}`);
    if (want.shape.length > 0 && want.shape.length !== t.dims.length) bad(`the model takes rank ${want.shape.length}`);
    want.shape.forEach((d, i) => {
      if (typeof d === 'number' && d >= 0 && t.dims[i] !== d && !(i === 0 && chunked))
        bad(`the model takes ${d} at dim ${i}`);
    });
  }
}

/**
 * The feeds with a leading 1 left out where the model declares that input one rank lower: a model
 * exported without a batch dim (torchvision's detectors take [3, H, W]) given one item as the image
 * ops make it ([1, C, H, W]); refused as a rank mismatch before.
 */
function unbatched(session: ModelSession, feeds: Record<string, Tensor>): Record<string, Tensor> {
  let out = feeds;
  for (const [name, t] of Object.entries(feeds)) {
    const rank = session.inputShapes?.find((s) => s.name === name)?.shape.length ?? 0;
    if (rank > 0 && rank === t.dims.length - 1 && t.dims[0] === 1) {
      if (out === feeds) out = { ...feeds };
      out[name] = { ...t, dims: t.dims.slice(1) };
    }
  }
  return out;
}

const EMPTY: Record<DType, () => TypedData> = {
  float32: () => new Float32Array(0),
  float16: () => new Uint16Array(0),
  int64: () => new BigInt64Array(0),
  int32: () => new Int32Array(0),
  uint8: () => new Uint8Array(0),
  int8: () => new Int8Array(0),
  bool: () => new Uint8Array(0),
};

/**
 * A skipped model's output: no elements, of the element type and rank the model declares (a batch
 * of 0, open dimensions 0), as a run of an empty batch would give where a runtime takes one; float32
 * `[0]` where the backend declares nothing.
 */
function emptyOutput(session: ModelSession, name: string): Tensor {
  const d = session.outputShapes?.find((s) => s.name === name);
  const type: DType = d && Object.hasOwn(EMPTY, d.type) ? (d.type as DType) : 'float32';
  const rest = d?.shape.slice(1).map((n) => (typeof n === 'number' && n > 0 ? n : 0)) ?? [];
  return { type, dims: [0, ...rest], data: EMPTY[type]() };
}

defineOp({
  op: 'infer',
  stage: 'infer',
  model: true,
  summary:
    "Runs the step's `model` on environment tensors: a batch in one call (or chunks of maxBatch, padded to maxBatch with padBatch), a tensor list once per item (or items of one shape together with batchList; all at once with parallel). An empty batch skips the model.",
  params: InferParams,
  reads: (p) => names(p.inputs),
  writes: (p) => names(p.outputs),
  check: (p) => (p.padBatch && !p.maxBatch ? 'padBatch needs maxBatch' : undefined),
  async run(p, x) {
    const session = await x.ctx.session(x.step.model!);
    const ins = bind(p.inputs, session.inputNames, 'input', x);
    const outs = bind(p.outputs, session.outputNames, 'output', x);
    const values = ins.map(([m, env]) => [m, x.get(env, 'tensor', 'tensors')] as const);
    const lists = values.filter(([, v]) => v.kind === 'tensors');
    if (lists.length && lists.length !== values.length) x.fail('inputs mix a tensor list with single tensors');
    const call = async (given: Record<string, Tensor>): Promise<Record<string, Tensor>> => {
      // maxBatch cuts dim 0, which a model without a batch dim does not have: its rank is refused below
      const feeds = p.maxBatch ? given : unbatched(session, given);
      // An empty batch (no regions found) can't go through most runtimes; its outputs are empty.
      if (Object.values(feeds).some((t) => t.dims[0] === 0))
        return Object.fromEntries(outs.map(([m]) => [m, emptyOutput(session, m)]));
      // padBatch pads every call to maxBatch items: a tensor of that many items, whatever came in
      // (the chunks of a larger batch are that size too, each allocated only when it is padded)
      if (p.padBatch && p.maxBatch)
        for (const [m, t] of Object.entries(feeds)) {
          const per = t.data.byteLength / Math.max(1, t.dims[0]);
          x.fits({ bytes: per * p.maxBatch }, `input ${m} padded to ${p.maxBatch} items`);
        }
      checkFeeds(session, feeds, p.maxBatch !== undefined, x);
      let out: Record<string, Tensor>;
      const moved: Moved = { in: 0, out: 0 };
      try {
        out = await runOnce(session, feeds, p.maxBatch, p.padBatch, moved);
      } catch (e) {
        if (e instanceof RestartPipeline) throw e;
        return x.fail(`model ${x.step.model} failed: ${(e as Error).message}`);
      }
      // read after the run: a session that failed while running may have been replaced by a CPU one
      if (session.provider && session.provider !== 'cpu') x.copied(x.step.model!, moved.in, moved.out);
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
    const item = (i: number) => Object.fromEntries(values.map(([m, v]) => [m, bare((v as TensorsValue).items[i])]));
    if (!p.batchList) {
      const each = async (i: number) => {
        const r = await call(item(i));
        outs.forEach(([m], k) => {
          results[k][i] = pick(r, m);
        });
      };
      if (p.parallel) await settled(Array.from({ length: count }, (_, i) => each(i)));
      else for (let i = 0; i < count; i++) await each(i);
    } else {
      // Items of one shape concatenated along dim 0 (chunks of maxBatch), the outputs split back.
      const groups = sameShapes(
        values.map(([, v]) => v as TensorsValue),
        count,
      );
      const runGroup = async (group: number[]) => {
        const feeds = group.map(item);
        const joined = Object.fromEntries(ins.map(([m]) => [m, concatBatch(feeds.map((f) => f[m]))]));
        const rows = joined[ins[0][0]].dims[0];
        const r = await call(joined);
        outs.forEach(([m], k) => {
          const t = pick(r, m);
          if (rows && t.dims[0] !== rows)
            x.fail(`model ${x.step.model} returned ${t.dims[0]} items of ${m} for a batch of ${rows}`);
          let at = 0;
          for (const [j, i] of group.entries()) {
            const n = feeds[j][ins[0][0]].dims[0];
            results[k][i] = rows ? tensorValue(sliceBatch(t, at, at + n)) : t;
            at += n;
          }
        });
      };
      if (p.parallel) await settled(groups.map(runGroup));
      else for (const group of groups) await runGroup(group);
    }
    outs.forEach(([, env], k) => x.set(env, { kind: 'tensors', items: results[k] }));
  },
});
