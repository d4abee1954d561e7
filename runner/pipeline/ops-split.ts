/**
 * The `split` op: runs the head of a split model (FORMAT.md §4.2) here, then its tail here or on a
 * peer. The tail goes to a peer when the declared condition holds (the head's score below a
 * threshold) or when this host has no variant of the tail; the offload has a deadline, and on any
 * failure the tail runs here, or the run fails with the offload's E_FABRIC_* code when it cannot.
 * The run result says where each part ran (RunResult.split).
 */
import type { OffloadAnswer } from '../../fabric/contract.js';
import { FabricError, toXpkgError } from '../../spec/errors.js';
import { Type } from '../../spec/typebox-lite.js';
import type { ModelSession, SplitPlacement, Tensor } from '../types.js';
import { Binding, bare, bind, checkFeeds } from './ops-model.js';
import { defineOp, RestartPipeline } from './registry.js';
import { type TensorValue, tensorValue } from './values.js';

const When = Type.Object(
  {
    output: Type.String({ minLength: 1, maxLength: 256, description: "a head output (not a cut tensor's name)" }),
    reduce: Type.Union([Type.Literal('max'), Type.Literal('min'), Type.Literal('mean')]),
    below: Type.Number(),
  },
  { additionalProperties: false },
);

const SplitParams = Type.Object(
  {
    inputs: Binding,
    outputs: Binding,
    when: Type.Optional(When),
    deadlineMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000 })),
  },
  { additionalProperties: false },
);

const DEFAULT_DEADLINE_MS = 2000;
const names = (b: string | Record<string, string>) => (typeof b === 'string' ? [b] : Object.values(b));

function reduce(t: Tensor, how: 'max' | 'min' | 'mean'): number {
  const d = t.data;
  if (d.length === 0 || typeof d[0] !== 'number') return Number.NaN;
  let acc = how === 'max' ? -Infinity : how === 'min' ? Infinity : 0;
  for (let i = 0; i < d.length; i++) {
    const v = d[i] as number;
    acc = how === 'max' ? Math.max(acc, v) : how === 'min' ? Math.min(acc, v) : acc + v;
  }
  return how === 'mean' ? acc / d.length : acc;
}

const DTYPES = new Set(['float32', 'float16', 'int64', 'int32', 'uint8', 'int8', 'bool']);

/** Why a peer's outputs do not fit the tail's declared ones (element type, rank, fixed dims), or undefined. */
function misfitOutput(got: Record<string, Tensor>, declared: ModelSession['outputShapes']): string | undefined {
  for (const d of declared ?? []) {
    const t = Object.hasOwn(got, d.name) ? got[d.name] : undefined;
    if (!t) continue;
    if (DTYPES.has(d.type) && t.type !== d.type) return `${d.name} as ${t.type}, not ${d.type}`;
    const fixed = d.shape.every((n, i) => typeof n !== 'number' || n < 0 || t.dims[i] === n);
    if (t.dims.length !== d.shape.length || !fixed)
      return `${d.name} of shape [${t.dims.join(', ')}], not [${d.shape.join(', ')}]`;
  }
  return undefined;
}

defineOp({
  op: 'split',
  stage: 'infer',
  model: true,
  summary:
    "Runs the step's model (the head of a split) here, then its tail here or on a peer when `when` holds (the head's score reduced below a threshold) or this host has no tail variant; falls back to the local tail on a failed or late offload.",
  params: SplitParams,
  reads: (p) => names(p.inputs),
  writes: (p) => names(p.outputs),
  async run(p, x) {
    const headId = x.step.model!;
    const split = x.ctx.manifest.models.find((m) => m.id === headId)?.split;
    if (!split) return x.fail(`model ${headId} declares no split`);
    const head = await x.ctx.session(headId);
    const ins = bind(p.inputs, head.inputNames, 'input', x);
    const feeds = Object.fromEntries(ins.map(([m, env]) => [m, bare(x.get(env, 'tensor'))]));
    // as infer's: a feed the head does not take fails here, never by a fallback to a variant that takes it
    checkFeeds(head, feeds, false, x);
    let out: Record<string, Tensor>;
    try {
      out = await head.run(feeds);
    } catch (e) {
      if (e instanceof RestartPipeline) throw e;
      return x.fail(`model ${headId} failed: ${(e as Error).message}`);
    }
    const cut: Record<string, Tensor> = {};
    for (const n of split.at) {
      if (!out[n]) return x.fail(`the head returned no cut tensor ${JSON.stringify(n)}`);
      cut[n] = out[n];
    }
    let score: number | undefined;
    if (p.when) {
      const s = out[p.when.output];
      if (!s) return x.fail(`the head has no output ${JSON.stringify(p.when.output)} for the condition`);
      // float16 arrives as raw bits and int64 as bigints: a score is a float32 (or a small integer type)
      if (s.type === 'float16' || s.type === 'int64' || s.type === 'bool')
        return x.fail(`the condition's output ${p.when.output} is ${s.type}; it must be float32 or int32/uint8/int8`);
      score = reduce(s, p.when.reduce);
    }
    const localOk = x.ctx.canRun?.(split.tail) ?? true;
    const decision: SplitPlacement['decision'] = !localOk
      ? { offload: true, reason: `this host has no variant of ${split.tail}` }
      : score !== undefined && p.when && score < p.when.below
        ? { offload: true, reason: `${p.when.reduce} of ${p.when.output} ${score} < ${p.when.below}`, score }
        : {
            offload: false,
            reason: p.when ? `${p.when.reduce} of ${p.when.output} ${score} ≥ ${p.when.below}` : 'no condition holds',
            ...(score !== undefined ? { score } : {}),
          };
    const headVariant = await x.ctx.variant?.(headId);
    const placement: SplitPlacement = {
      head: { where: 'local', ...(headVariant ? { variant: headVariant.id } : {}), provider: head.provider ?? 'cpu' },
      tail: { where: 'local', ms: 0 },
      decision,
    };
    let result: Record<string, Tensor> | undefined;
    const t0 = performance.now();
    if (decision.offload) {
      const failed = (code: string, message: string) => {
        if (!localOk)
          throw new FabricError(code.startsWith('E_FABRIC_') ? (code as never) : 'E_FABRIC_PEER', message, {
            step: x.index,
            model: headId,
            tail: split.tail,
          });
        decision.fallback = { code, message };
      };
      if (!x.ctx.offloader || !x.ctx.packageId) failed('E_FABRIC_NO_PEER', 'no peers are configured');
      else {
        const deadlineMs = p.deadlineMs ?? DEFAULT_DEADLINE_MS;
        const tailModel = x.ctx.manifest.models.find((m) => m.id === split.tail);
        let answer: OffloadAnswer | undefined;
        try {
          answer = await x.ctx.offloader.run({
            packageId: x.ctx.packageId,
            model: headId,
            ...(tailModel ? { tail: tailModel } : {}),
            inputs: cut,
            deadline: Date.now() + deadlineMs,
            signal: AbortSignal.timeout(deadlineMs),
          });
        } catch (e) {
          const err = toXpkgError(e);
          failed(err.code, err.message);
        }
        // a peer's answer lacking what the step binds is a failed offload (local fallback), not a failed run
        if (answer) {
          // a peer's answer lacking what the step binds is a failed offload (local fallback), not a failed run;
          // a single binding names the tail's first output, which only the local tail knows
          const got = answer.outputs;
          // The local tail declares what its outputs are, and a peer's must match them. It is loaded
          // here only where the binding needs its first output's name anyway: tails are not loaded up
          // front (runner.ts), and a device that offloads spares that memory. With outputs bound by
          // name, a misfit answer fails in the step that reads it instead of falling back.
          const tail = localOk && typeof p.outputs === 'string' ? await x.ctx.session(split.tail) : undefined;
          const first = tail?.outputNames[0];
          const want = typeof p.outputs === 'string' ? (first ? [first] : []) : Object.keys(p.outputs);
          const missing = want.filter((n) => !Object.hasOwn(got, n));
          const misfit = tail ? misfitOutput(got, tail.outputShapes) : undefined;
          if (missing.length || !Object.keys(got).length) {
            failed('E_FABRIC_MESSAGE', `peer ${answer.peer} answered without the tail's outputs ${missing.join(', ')}`);
            answer = undefined;
          } else if (misfit) {
            failed('E_FABRIC_MESSAGE', `peer ${answer.peer} answered ${misfit}`);
            answer = undefined;
          } else if (first) answer.outputs = { [first]: got[first], ...got };
        }
        if (answer) {
          result = answer.outputs;
          placement.tail = {
            where: answer.peer,
            variant: answer.variant,
            provider: answer.provider,
            bytesOut: answer.bytesOut,
            bytesIn: answer.bytesIn,
            ms: 0,
          };
        }
      }
    }
    if (!result) {
      const tail = await x.ctx.session(split.tail);
      try {
        result = await tail.run(cut);
      } catch (e) {
        if (e instanceof RestartPipeline) throw e;
        return x.fail(`model ${split.tail} failed: ${(e as Error).message}`);
      }
      const v = await x.ctx.variant?.(split.tail);
      placement.tail = { where: 'local', ...(v ? { variant: v.id } : {}), provider: tail.provider ?? 'cpu', ms: 0 };
    }
    placement.tail.ms = performance.now() - t0;
    x.placed(headId, placement);
    const outs = bind(p.outputs, Object.keys(result), 'output', x);
    for (const [m, env] of outs) x.set(env, tensorValue(result[m]) as TensorValue);
  },
});
