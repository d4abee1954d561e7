/**
 * The pipeline executor: interprets `manifest.pipeline.steps` over a small environment of named
 * values, each step as soon as the steps its dataflow depends on are done (schedule.ts; a chain runs
 * in list order), charging each step's time to its stage (decode, pre, infer:<model>, post).
 */
import { NativeError, RunnerError, XpkgError } from '../../spec/errors.js';
import { checkTensor } from '../backends/ort-tensor.js';
import type { PipelineContext, RunnerBudget, SplitPlacement, Tensor, Timings } from '../types.js';
import { overBudget, resolveBudget } from './budget.js';
import { convertOutput, type OutputValue } from './outputs.js';
import { patchingModels, withVariants } from './patch.js';
import { getOp, type OpRun, pipelineError, RestartPipeline, stepError } from './registry.js';
import { planSchedule, runScheduled, type StepPlan, serialPlans } from './schedule.js';
import { ScratchLease, ScratchPool } from './scratch.js';
import { validatePipeline } from './validate.js';
import type { Value, ValueKind } from './values.js';

/**
 * Bytes that crossed between host and accelerator memory in one run: the input tensors handed to,
 * and the output tensors taken back from, models whose session runs on an accelerator. Copies a
 * runtime makes inside a model (to nodes it placed on the CPU) are not seen here.
 */
export interface PipelineCopies {
  hostToDevice: number;
  deviceToHost: number;
  /** Per model id, only models that ran on an accelerator. */
  models: Record<string, { hostToDevice: number; deviceToHost: number }>;
}

export interface PipelineResult {
  /** Keyed by the manifest's output names, converted per their declared type. */
  outputs: Record<string, OutputValue>;
  /**
   * Milliseconds per stage (the sum of its steps' times); the same amounts were reported to
   * `ctx.time`. Steps of independent branches overlap, so the stages may add up to more than the run.
   */
  timings: Timings;
  copies: PipelineCopies;
  /** Where the parts of each split model ran, by head model id (only when a `split` step ran). */
  split: Record<string, SplitPlacement>;
}

/** Per-context caches (asset texts, parsed vocabularies): contexts live as long as a loaded package. */
const memos = new WeakMap<PipelineContext, Map<string, Promise<unknown>>>();
/** Each (patched) manifest's schedule, planned once. */
const schedules = new WeakMap<PipelineContext['manifest'], StepPlan[]>();

/** Each context's reused intermediate arrays (scratch.ts). */
const pools = new WeakMap<PipelineContext, ScratchPool>();

function memoOf(ctx: PipelineContext): Map<string, Promise<unknown>> {
  let m = memos.get(ctx);
  if (!m) memos.set(ctx, (m = new Map()));
  return m;
}

function inputValue(type: string, name: string, v: unknown, budget: Required<RunnerBudget>): Value {
  if (type === 'tensor') {
    const t = v as { type?: unknown; dims?: unknown; data?: unknown };
    if (
      !t ||
      typeof t !== 'object' ||
      typeof t.type !== 'string' ||
      !Array.isArray(t.dims) ||
      !ArrayBuffer.isView(t.data)
    ) {
      throw new RunnerError('E_RUN_INPUT', `input ${name} must be a tensor {type, dims, data}`, { input: name });
    }
    // the caller's tensor, like the caller's image, is refused above the budget before any step runs
    if (t.data.byteLength > budget.maxTensorBytes)
      throw new RunnerError(
        'E_RUN_INPUT',
        `input ${name} is ${t.data.byteLength} bytes, above the budget of ${budget.maxTensorBytes} (maxTensorBytes, --max-tensor-bytes)`,
        { input: name, limit: 'maxTensorBytes', need: t.data.byteLength, budget: budget.maxTensorBytes },
      );
    // dims that disagree with the data would size what later steps allocate and read (a 16-byte
    // tensor claiming [1, 3, 4000, 4000]): refused here, as the caller's, before any step runs
    if (!t.dims.every((d) => Number.isSafeInteger(d)))
      throw new RunnerError('E_RUN_INPUT', `input ${name}: dims must be non-negative integers`, { input: name });
    try {
      checkTensor(name, t as Tensor);
    } catch (e) {
      if (e instanceof RunnerError) throw new RunnerError(e.code, e.message, { input: name, ...(e.detail as object) });
      throw e;
    }
    return { kind: 'tensor', type: t.type as never, dims: [...(t.dims as number[])], data: t.data as never };
  }
  return { kind: 'raw', value: v };
}

/**
 * The manifest this run executes: with the step patches of the variants the context loaded. A
 * model's variant holds for the whole run (a runner that swaps one re-runs the pipeline).
 */
async function runManifest(ctx: PipelineContext): Promise<PipelineContext['manifest']> {
  const ids = ctx.variant ? patchingModels(ctx.manifest) : [];
  if (!ids.length) return ctx.manifest;
  const variants = await Promise.all(ids.map((id) => ctx.variant!(id)));
  const key = variants.map((v) => v.id).join('\u0000');
  const memo = memoOf(ctx);
  let p = memo.get(`patched:${key}`) as Promise<PipelineContext['manifest']> | undefined;
  if (!p) memo.set(`patched:${key}`, (p = Promise.resolve(withVariants(ctx.manifest, variants))));
  return p;
}

export async function runPipeline(ctx: PipelineContext, inputs: Record<string, unknown>): Promise<PipelineResult> {
  const m = await runManifest(ctx);
  const budget = resolveBudget(ctx.budget);
  validatePipeline(m, budget);
  const env = new Map<string, Value>();
  for (const spec of m.inputs) {
    // the caller's own keys only: an optional input named `constructor` left out is left out
    const v = Object.hasOwn(inputs, spec.name) ? inputs[spec.name] : undefined;
    if (v === undefined) {
      if (spec.optional) continue;
      throw new RunnerError('E_RUN_INPUT', `missing input ${JSON.stringify(spec.name)}`, {
        input: spec.name,
        expected: m.inputs.map((i) => i.name),
      });
    }
    env.set(spec.name, inputValue(spec.type, spec.name, v, budget));
  }
  for (const k of Object.keys(inputs)) {
    if (!m.inputs.some((i) => i.name === k))
      throw new RunnerError('E_RUN_INPUT', `unknown input ${JSON.stringify(k)}`, {
        input: k,
        expected: m.inputs.map((i) => i.name),
      });
  }
  const timings: Timings = {};
  const copies: PipelineCopies = { hostToDevice: 0, deviceToHost: 0, models: {} };
  const split: Record<string, SplitPlacement> = {};
  const memo = memoOf(ctx);
  let pool = pools.get(ctx);
  // XPKG_SCRATCH=0: nothing reused (for side-by-side measurements)
  if (!pool) pools.set(ctx, (pool = new ScratchPool(globalThis.process?.env?.XPKG_SCRATCH === '0' ? 0 : undefined)));
  // a failed run gives nothing back: a step may still hold its arrays
  const scratch = new ScratchLease(pool);
  const steps = m.pipeline.steps;
  let plans = schedules.get(m);
  if (!plans) schedules.set(m, (plans = planSchedule(steps, (s) => getOp(s.op)!)));
  // XPKG_PIPELINE_SERIAL=1: every step after the one before it (for side-by-side measurements)
  if (globalThis.process?.env?.XPKG_PIPELINE_SERIAL === '1') plans = serialPlans(plans);
  const lateWriters = plans.map((p) => p.lateWriters);
  await runScheduled(plans, async (index, wait) => {
    const step = steps[index];
    const def = getOp(step.op)!;
    const fail = (message: string, detail?: Record<string, unknown>): never => {
      throw pipelineError(index, step, message, detail);
    };
    /** Milliseconds the step spent waiting for late reads (not its own time), and the names it waited for. */
    let waited = 0;
    const awaited = new Set<string>();
    const x: OpRun = {
      ctx,
      step,
      index,
      get<K extends ValueKind>(name: string, ...kinds: K[]) {
        if (lateWriters[index].has(name) && !awaited.has(name))
          return fail(`value ${JSON.stringify(name)} is read late: wait for it first`, { name });
        const v = env.get(name);
        if (!v) return fail(`value ${JSON.stringify(name)} is not set (an optional input left out?)`, { name });
        if (kinds.length && !kinds.includes(v.kind as K))
          return fail(`value ${JSON.stringify(name)} is ${v.kind}, expected ${kinds.join(' or ')}`, {
            name,
            kind: v.kind,
          });
        return v as Extract<Value, { kind: K }>;
      },
      async wait<K extends ValueKind>(name: string, ...kinds: K[]) {
        const w = lateWriters[index].get(name);
        if (w !== undefined) {
          const t = performance.now();
          await wait(w);
          // the step's time is its own work, not the wait for another step
          waited += performance.now() - t;
        }
        awaited.add(name);
        return x.get(name, ...kinds);
      },
      peek: (name) => env.get(name),
      set: (name, v) => void env.set(name, v),
      memo<T>(key: string, make: () => Promise<T>): Promise<T> {
        let p = memo.get(key) as Promise<T> | undefined;
        if (!p) {
          p = make();
          memo.set(key, p);
          p.catch(() => memo.delete(key));
        }
        return p;
      },
      text: (assetId) => x.memo(`asset:${assetId}`, async () => (await ctx.asset(assetId)).toString('utf8')),
      fail,
      budget,
      scratch: (type, length) => scratch.take(type, length),
      fits(need, what) {
        const over = overBudget(budget, need, what);
        if (over) throw stepError('E_RUN_BUDGET', index, step, over.message, over.detail);
      },
      copied(model, hostToDevice, deviceToHost) {
        // own keys: a model may be called `constructor`
        const m = Object.hasOwn(copies.models, model)
          ? copies.models[model]
          : (copies.models[model] = { hostToDevice: 0, deviceToHost: 0 });
        m.hostToDevice += hostToDevice;
        m.deviceToHost += deviceToHost;
        copies.hostToDevice += hostToDevice;
        copies.deviceToHost += deviceToHost;
      },
      placed(model, placement) {
        split[model] = placement;
      },
    };
    const stage = def.stage === 'infer' ? `infer:${step.model}` : def.stage;
    const t0 = performance.now();
    try {
      await def.run((step.params ?? {}) as never, x);
    } catch (e) {
      // a kernel refusing its arguments was handed what a step made of the package's values (a
      // model's output of an odd shape, params the kernel takes fewer of): the step's failure
      if (e instanceof NativeError && e.code === 'E_NATIVE_ARGUMENT')
        throw pipelineError(index, step, e.message, { native: e.code }, e);
      if (e instanceof XpkgError || e instanceof RestartPipeline) throw e;
      throw pipelineError(index, step, (e as Error)?.message ?? String(e), undefined, e);
    }
    const ms = performance.now() - t0 - waited;
    timings[stage] = (timings[stage] ?? 0) + ms;
    ctx.time(stage, ms);
  });
  const outputs: Record<string, OutputValue> = {};
  for (const spec of m.outputs) {
    const v = env.get(spec.name);
    if (!v) {
      if (spec.optional) continue;
      throw pipelineError(
        steps.length - 1,
        steps[steps.length - 1],
        `output ${JSON.stringify(spec.name)} was not produced`,
      );
    }
    const r = convertOutput(spec, v);
    if ('problem' in r)
      throw pipelineError(steps.length - 1, steps[steps.length - 1], r.problem, { output: spec.name });
    outputs[spec.name] = r.value;
  }
  scratch.release(outputs);
  return { outputs, timings, copies, split };
}
