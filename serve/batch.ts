/**
 * Dynamic batching for models whose first dimension is the batch: every input and every output is a
 * tensor whose declared shape starts with the same named dimension (`["N", …]`). Requests with the
 * same trailing dimensions are joined along that dimension into one run and the outputs are cut back
 * into one slice per request. Only packages that declare it this way qualify; others run one by one.
 */

import type { Tensor } from '../runner/types.js';
import { ServeError } from '../spec/errors.js';
import type { Manifest } from '../spec/schema.js';
import type { RunReply } from './protocol.js';

export interface BatchPlan {
  axis: string;
  inputs: string[];
  outputs: string[];
  /** Requests with equal keys can share a batch (null: this request cannot be batched). */
  key(inputs: Record<string, unknown>): string | null;
}

const isTensor = (v: unknown): v is Tensor =>
  !!v && typeof v === 'object' && Array.isArray((v as Tensor).dims) && ArrayBuffer.isView((v as Tensor).data);

/** The batch plan of a package, or null when its inputs and outputs do not share a named first dimension. */
export function batchPlan(m: Manifest): BatchPlan | null {
  const all = [...m.inputs, ...m.outputs];
  const axis = all[0]?.shape?.[0];
  if (typeof axis !== 'string') return null;
  if (!all.every((s) => s.type === 'tensor' && s.shape?.[0] === axis && !s.optional)) return null;
  const inputs = m.inputs.map((i) => i.name);
  return {
    axis,
    inputs,
    outputs: m.outputs.map((o) => o.name),
    key(values) {
      const parts: string[] = [];
      for (const n of inputs) {
        const t = values[n];
        if (!isTensor(t) || t.dims.length === 0) return null;
        parts.push(`${t.type}[${t.dims.slice(1).join(',')}]`);
      }
      return parts.join(';');
    },
  };
}

type Typed = Tensor['data'];

function concat(parts: Typed[]): Typed {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new (parts[0].constructor as new (n: number) => Typed)(n);
  let o = 0;
  for (const p of parts) {
    (out as Uint8Array).set(p as Uint8Array, o);
    o += p.length;
  }
  return out;
}

/** One input set made of many requests' inputs, and each request's share of the batch dimension. */
export function joinBatch(
  plan: BatchPlan,
  items: Record<string, unknown>[],
): { inputs: Record<string, unknown>; sizes: number[] } {
  const sizes = items.map((it) => (it[plan.inputs[0]] as Tensor).dims[0]);
  const inputs: Record<string, unknown> = {};
  for (const n of plan.inputs) {
    const ts = items.map((it) => it[n] as Tensor);
    inputs[n] = {
      type: ts[0].type,
      dims: [ts.reduce((a, t) => a + t.dims[0], 0), ...ts[0].dims.slice(1)],
      data: concat(ts.map((t) => t.data)),
    } satisfies Tensor;
  }
  return { inputs, sizes };
}

/** The batch's result cut into one result per request (timings are shared: the run was shared). */
export function splitBatch(plan: BatchPlan, r: RunReply, sizes: number[]): RunReply[] {
  const total = sizes.reduce((a, b) => a + b, 0);
  const outs = plan.outputs.map((n) => {
    const t = r.outputs[n] as Tensor;
    if (!isTensor(t) || t.dims[0] !== total)
      throw new ServeError('E_SERVE_UNAVAILABLE', `batched output ${n} does not have ${total} rows`, {
        output: n,
        rows: isTensor(t) ? t.dims[0] : null,
        expected: total,
      });
    return t;
  });
  let row = 0;
  return sizes.map((size) => {
    const outputs: Record<string, unknown> = {};
    outs.forEach((t, i) => {
      const per = t.dims.slice(1).reduce((a, b) => a * b, 1);
      outputs[plan.outputs[i]] = {
        type: t.type,
        dims: [size, ...t.dims.slice(1)],
        data: t.data.slice(row * per, (row + size) * per),
      };
    });
    row += size;
    return { ...r, outputs };
  });
}
