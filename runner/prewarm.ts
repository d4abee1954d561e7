/**
 * Shape pre-warming. onnxruntime's CUDA provider, as the stock Node binding creates it, searches
 * cuDNN's convolution algorithms exhaustively whenever a session's input shape changes (only
 * `deviceId` reaches the provider, so the search mode cannot be set; measured by
 * bench/gpu/conv-search.ts): 0.3–1.2 s per shape on an H200 against 2–5 ms steady. So a model on an
 * accelerator gets a session per input shape (backends/shape-sessions.ts), and `Runner.open` runs
 * each at every shape the pipeline can hand it (runner/pipeline/shapes.ts), largest first, and
 * reports what that cost. A model whose shapes are open (an image of any size) or too many is left
 * as it is, with why.
 */

import { RunnerError } from '../spec/errors.js';
import { tensorBytes } from './pipeline/budget.js';
import {
  enumerateShapes,
  type ModelFeedSpace,
  openReason,
  type PipelineShapes,
  shapeCount,
  withDeclared,
} from './pipeline/shapes.js';
import type { Selection } from './select.js';
import type { DType, ModelSession, Tensor, TypedData } from './types.js';

/**
 * `auto` (default): models whose chosen variant runs on an accelerator are loaded in `open` and
 * pre-warmed when their session really runs there; `always`: every model, on any provider (the
 * CPU needs no algorithm search, so it only moves first-run costs into open); `off`: load on
 * first run, as without a GPU.
 */
export type PrewarmMode = 'auto' | 'always' | 'off';

export interface PrewarmOptions {
  mode?: PrewarmMode;
  /**
   * The most shapes one model is warmed at, above which none are; also the most sessions a model on
   * an accelerator holds, one per shape (default 32: the OCR recogniser's GPU variant has 17 width buckets).
   */
  maxShapes?: number;
  /**
   * Runs per shape (1–10, default 1). On the H200 (GPU suite, four runs) a second warm run made no
   * clear difference: the detector's first real image after open stayed at 2.2–2.6× steady either
   * way, and warmed shapes whose first run after open exceeded 2× steady (2.5–3.1×) numbered 1 of 19
   * with one run, 2 with two (0 in two suites that warmed with two runs of noise instead of zeros).
   */
  runs?: number;
  /**
   * Shapes of one model warmed at once (1–16; default 4 on an accelerator, 1 on the CPU); above 1,
   * the models on accelerators warm together too. On the H200 (same build, OCR package) open took
   * 10.8 s four at a time against 14.3 s one at a time, the recogniser's 17 float32 shapes 10.0 s
   * against 11.5 s: the set-ups overlap only in part.
   */
  parallel?: number;
}

export const DEFAULT_MAX_SHAPES = 32;
export const MAX_WARM_RUNS = 10;
export const MAX_WARM_PARALLEL = 16;
const DEFAULT_WARM_PARALLEL = 4;

export type PrewarmSkip =
  /** The session runs on the CPU provider under `auto`. */
  | 'cpu'
  /** A dimension the pipeline makes can take any value (an input image's size, a region count). */
  | 'open-shape'
  /** More shapes than `maxShapes`. */
  | 'too-many-shapes'
  /** Several inputs vary together, or one the pipeline does not feed has no fixed shape, or an unsupported element type. */
  | 'inputs'
  /** The model failed to load (the run reports it) or a warm-up run failed. */
  | 'failed'
  /** A shape's zeros would be above the runner's tensor budget (maxTensorBytes). */
  | 'budget';

export interface ModelPrewarm {
  provider: string;
  /** Each shape run, largest first, with its first run's milliseconds (and its last's, when run more than once). */
  shapes: { dims: Record<string, number[]>; ms: number; lastMs?: number }[];
  /** Runs per shape. */
  runs?: number;
  /** Why the model was not pre-warmed (or not at every shape). */
  skipped?: { code: PrewarmSkip; reason: string };
  /** Shapes the pipeline can make (null: unbounded). */
  possible: number | null;
  /** Runtime sessions the model holds after pre-warming (one per shape on an accelerator). */
  sessions?: number;
  ms: number;
}

export interface OpenReport {
  /** Milliseconds: the whole open, loading models in it, running them at their shapes. */
  ms: { total: number; load: number; prewarm: number };
  /** Per model loaded in open. */
  prewarm: Record<string, ModelPrewarm>;
}

type Plan =
  | { feeds: Record<string, number[]>[]; possible: number }
  | { skip: PrewarmSkip; reason: string; possible: number | null };

const ZEROS: Record<DType, (n: number) => TypedData> = {
  float32: (n) => new Float32Array(n),
  float16: (n) => new Uint16Array(n),
  int64: (n) => new BigInt64Array(n),
  int32: (n) => new Int32Array(n),
  uint8: (n) => new Uint8Array(n),
  int8: (n) => new Int8Array(n),
  bool: (n) => new Uint8Array(n),
};

/** The feeds to warm a loaded session with: one per shape, from what the pipeline makes and what the model declares. */
export function prewarmPlan(
  spaces: readonly ModelFeedSpace[],
  session: ModelSession,
  maxShapes: number,
  maxTensorBytes = Number.POSITIVE_INFINITY,
): Plan {
  const declared = new Map((session.inputShapes ?? []).map((s) => [s.name, s]));
  const byStep = new Map<number, ModelFeedSpace[]>();
  for (const f of spaces) byStep.set(f.step, [...(byStep.get(f.step) ?? []), f]);
  const all = new Map<string, Record<string, number[]>>();
  let possible: number | null = 0;
  for (const feeds of byStep.values()) {
    const inputs: { name: string; shapes: number[][] }[] = [];
    for (const f of feeds) {
      const name = f.input ?? session.inputNames[0];
      if (!f.dims) return { skip: 'open-shape', reason: `${name}: ${f.why ?? 'unknown shape'}`, possible: null };
      const dims = withDeclared(f.dims, declared.get(name)?.shape);
      const count = shapeCount(dims);
      if (count === null) return { skip: 'open-shape', reason: `${name}: ${openReason(dims)}`, possible: null };
      if (count > maxShapes)
        return {
          skip: 'too-many-shapes',
          reason: `${name}: ${count} shapes, above the limit of ${maxShapes}`,
          possible: count,
        };
      inputs.push({ name, shapes: enumerateShapes(dims) });
    }
    // an input no step feeds must have a fixed declared shape
    for (const name of session.inputNames) {
      if (inputs.some((i) => i.name === name)) continue;
      const d = declared.get(name)?.shape;
      if (!d?.every((x) => typeof x === 'number' && x >= 0))
        return {
          skip: 'inputs',
          reason: `input ${name} is not fed by the pipeline and has no fixed shape`,
          possible: null,
        };
      inputs.push({ name, shapes: [d as number[]] });
    }
    const varying = inputs.filter((i) => i.shapes.length > 1);
    if (varying.length > 1)
      return {
        skip: 'inputs',
        reason: `inputs ${varying.map((v) => v.name).join(', ')} vary together; which combinations occur is not known`,
        possible: null,
      };
    const n = varying[0]?.shapes.length ?? 1;
    for (let k = 0; k < n; k++) {
      const feed = Object.fromEntries(inputs.map((i) => [i.name, i.shapes.length > 1 ? i.shapes[k] : i.shapes[0]]));
      all.set(JSON.stringify(feed), feed);
    }
    possible += n;
  }
  for (const name of session.inputNames) {
    const type = declared.get(name)?.type;
    if (type && !(type in ZEROS)) return { skip: 'inputs', reason: `input ${name} is ${type}`, possible };
  }
  const feeds = [...all.values()];
  if (feeds.length > maxShapes)
    return { skip: 'too-many-shapes', reason: `${feeds.length} shapes, above the limit of ${maxShapes}`, possible };
  // the shapes come from the manifest: zeros of each are held to the budget a run's tensors are
  for (const feed of feeds)
    for (const [name, dims] of Object.entries(feed)) {
      const need = tensorBytes(declared.get(name)?.type ?? 'float32', dims);
      if (need > maxTensorBytes)
        return {
          skip: 'budget',
          reason: `${name} [${dims.join(', ')}]: ${need} bytes, above the budget of ${maxTensorBytes} (maxTensorBytes)`,
          possible,
        };
    }
  return { feeds, possible: feeds.length };
}

/** Zeros of each input's declared type at these dims. */
function zeroFeeds(session: ModelSession, dims: Record<string, number[]>): Record<string, Tensor> {
  const declared = new Map((session.inputShapes ?? []).map((s) => [s.name, s.type as DType]));
  const feeds: Record<string, Tensor> = {};
  for (const [name, d] of Object.entries(dims)) {
    const type = declared.get(name) ?? 'float32';
    feeds[name] = { type, dims: d, data: ZEROS[type](d.reduce((a, b) => a * b, 1)) };
  }
  return feeds;
}

/**
 * Runs `session` `runs` times per planned shape on zeros (largest first, `parallel` shapes at
 * once), timing the first and last.
 */
export async function prewarmSession(
  session: ModelSession,
  spaces: readonly ModelFeedSpace[],
  maxShapes: number,
  runs = 1,
  parallel = 1,
  maxTensorBytes?: number,
): Promise<ModelPrewarm> {
  const t0 = performance.now();
  const plan = prewarmPlan(spaces, session, maxShapes, maxTensorBytes);
  const report: ModelPrewarm = { provider: session.provider ?? 'cpu', shapes: [], possible: plan.possible, ms: 0 };
  if ('skip' in plan) {
    report.skipped = { code: plan.skip, reason: plan.reason };
    return report;
  }
  const warm = async (dims: Record<string, number[]>) => {
    const feeds = zeroFeeds(session, dims);
    const ms: number[] = [];
    for (let k = 0; k < runs; k++) {
      const t = performance.now();
      await session.run(feeds);
      ms.push(performance.now() - t);
    }
    return { dims, ms: ms[0], ...(runs > 1 ? { lastMs: ms[runs - 1] } : {}) };
  };
  // `parallel` workers take the shapes in order; after a failure none starts another
  const done: (ModelPrewarm['shapes'][number] | undefined)[] = [];
  let next = 0;
  const worker = async () => {
    while (next < plan.feeds.length && !report.skipped) {
      const i = next++;
      const dims = plan.feeds[i];
      try {
        done[i] = await warm(dims);
      } catch (e) {
        report.skipped ??= {
          code: 'failed',
          reason: `at ${JSON.stringify(dims)}: ${String((e as Error)?.message ?? e)
            .split('\n')[0]
            .slice(0, 300)}`,
        };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(parallel, plan.feeds.length)) }, worker));
  report.shapes = done.filter((d): d is ModelPrewarm['shapes'][number] => d !== undefined);
  report.runs = runs;
  // a run that fell back moved the model to another provider
  report.provider = session.provider ?? 'cpu';
  if (session.sessions !== undefined) report.sessions = session.sessions;
  report.ms = performance.now() - t0;
  return report;
}

const accelerated = (p: string | undefined) => p !== undefined && p !== 'cpu';

/**
 * What `Runner.open` does after selection: loads the models `mode` names (all under `always`, those
 * whose chosen variant runs on an accelerator under `auto`, none under `off`), then runs each
 * accelerated one (any one under `always`) at its shapes. A model that fails to load is recorded
 * (it loads again, and reports its error, on the first run): open itself does not fail.
 */
export async function prewarmOpen(o: {
  mode: PrewarmMode;
  maxShapes: number;
  /** Runs per shape (PrewarmOptions.runs). */
  runs?: number;
  /** Shapes of a model warmed at once (PrewarmOptions.parallel). */
  parallel?: number;
  /** The runner's tensor budget: a shape whose zeros are above it is not warmed. */
  maxTensorBytes?: number;
  selection: Selection;
  /**
   * The shapes the pipeline makes once the models named are loaded: a variant's step patches
   * (uint8 input, width buckets, padded batches) change them, so they follow the variants loaded.
   */
  shapes: (loaded: readonly string[]) => Promise<PipelineShapes>;
  load: (model: string) => Promise<ModelSession>;
  /** When open started (performance.now()). */
  t0: number;
}): Promise<OpenReport> {
  if (o.parallel !== undefined && (!Number.isInteger(o.parallel) || o.parallel < 1 || o.parallel > MAX_WARM_PARALLEL))
    throw new RunnerError(
      'E_RUN_LOAD',
      `prewarm parallel must be an integer from 1 to ${MAX_WARM_PARALLEL}, not ${o.parallel}`,
    );
  const ids =
    o.mode === 'off'
      ? []
      : o.selection.models
          .filter((m) => o.mode === 'always' || m.chosen?.providers?.some(accelerated))
          .map((m) => m.model);
  const report: OpenReport = { ms: { total: 0, load: 0, prewarm: 0 }, prewarm: {} };
  const tl = performance.now();
  const loaded = await Promise.all(
    ids.map((id) =>
      o.load(id).then(
        (s) => ({ s }),
        (e: unknown) => ({ e }),
      ),
    ),
  );
  report.ms.load = performance.now() - tl;
  const tp = performance.now();
  const shapes = ids.length ? await o.shapes(ids.filter((_, i) => 's' in loaded[i])) : {};
  const warmOne = async (i: number, id: string): Promise<ModelPrewarm> => {
    const r = loaded[i];
    const none = { shapes: [], possible: null, ms: 0 };
    if (!('s' in r)) {
      const reason = `load failed: ${String((r.e as Error)?.message ?? r.e).slice(0, 300)}`;
      return { provider: 'none', ...none, skipped: { code: 'failed', reason } };
    }
    if (o.mode === 'auto' && !accelerated(r.s.provider)) {
      const reason = 'runs on the CPU provider, which has no per-shape set-up';
      return { provider: 'cpu', ...none, skipped: { code: 'cpu', reason } };
    }
    const parallel = o.parallel ?? (accelerated(r.s.provider) ? DEFAULT_WARM_PARALLEL : 1);
    return prewarmSession(r.s, shapes[id] ?? [], o.maxShapes, o.runs, parallel, o.maxTensorBytes);
  };
  // models on accelerators warm at once (their sessions are their own); on the CPU one after another
  const together =
    (o.parallel ?? DEFAULT_WARM_PARALLEL) > 1 && loaded.every((r) => 's' in r && accelerated(r.s.provider));
  if (together) {
    const warmed = await Promise.all(ids.map((id, i) => warmOne(i, id)));
    for (const [i, id] of ids.entries()) report.prewarm[id] = warmed[i];
  } else for (const [i, id] of ids.entries()) report.prewarm[id] = await warmOne(i, id);
  report.ms.prewarm = performance.now() - tp;
  report.ms.total = performance.now() - o.t0;
  return report;
}

/**
 * A one-shot runner's first touch (RunnerOptions.oneShot, no pre-warm): each model on an accelerator
 * that the pipeline does not run first is loaded and run once on zeros at its smallest planned shape,
 * in the background, while the first model runs. A GPU's first run of a model pays set-up that does
 * not depend on the shape (kernel modules, library handles); here it overlaps the models before it
 * instead of adding to them. Nothing is reported and nothing fails: a real run reports its own errors.
 */
export async function firstTouch(o: {
  selection: Selection;
  /** Models the pipeline runs first (their own first run is the real one). */
  first: readonly string[];
  shapes: (loaded: readonly string[]) => Promise<PipelineShapes>;
  load: (model: string) => Promise<ModelSession>;
  maxTensorBytes?: number;
}): Promise<void> {
  const ids = o.selection.models
    .filter((m) => m.chosen?.providers?.some(accelerated) && !o.first.includes(m.model))
    .map((m) => m.model);
  if (!ids.length) return;
  const sessions = await Promise.all(ids.map((id) => o.load(id).catch(() => null)));
  const shapes = await o.shapes(ids.filter((_, i) => sessions[i]));
  await Promise.all(
    ids.map(async (id, i) => {
      const s = sessions[i];
      if (!s) return;
      const plan = prewarmPlan(shapes[id] ?? [], s, Number.POSITIVE_INFINITY, o.maxTensorBytes);
      if ('skip' in plan || !plan.feeds.length) return;
      // the feeds come largest first
      await s.run(zeroFeeds(s, plan.feeds.at(-1)!)).catch(() => {});
    }),
  );
}
