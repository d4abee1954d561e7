/**
 * The input shapes a package's pipeline can hand each model, derived from the manifest alone (step
 * params, declared tensor inputs): the shape buckets the runner pre-warms on a GPU so that no first
 * run at a new shape pays cuDNN's algorithm search (runner/prewarm.ts). Every step is followed over
 * an abstract environment where a dimension is either a finite set of values or open, with why
 * (an image of any size, the number of regions a detector finds). Ops this file does not know
 * write values of unknown shape: a model fed from them is simply not pre-warmed.
 */
import type { Manifest, Step } from '../../spec/schema.js';
import { getOp } from './registry.js';
import './builtin-ops.js';

/** One dimension: the values it can take (ascending), or why it can take any. */
export type Dim = { values: number[] } | { open: string };

export type ValueSpace =
  | { kind: 'image'; list: boolean; height: Dim; width: Dim; channels: Dim }
  /** `list`: a `tensors` value, one tensor per item, each of these dims. */
  | { kind: 'tensor'; list: boolean; dims: Dim[] }
  | { kind: 'unknown'; why: string };

/** What one `infer` step feeds a model input (`input` null: the model's first input). */
export interface ModelFeedSpace {
  step: number;
  input: string | null;
  dims: Dim[] | null;
  /** Why the dims are unknown (dims null). */
  why?: string;
}

/** Per model id, every feed the pipeline makes, in step order. */
export type PipelineShapes = Record<string, ModelFeedSpace[]>;

/**
 * The given values (a param the op's checks require is never undefined here). Lists go as arrays,
 * never spread into the call: a `maxBatch` of a million is a million values, above the stack's reach.
 */
const fixedOf = (v: readonly (number | undefined)[]): Dim => ({
  values: [...new Set(v.filter((x): x is number => x !== undefined))].sort((a, b) => a - b),
});
const fixed = (...v: (number | undefined)[]): Dim => fixedOf(v);
const open = (why: string): Dim => ({ open: why });
const isOpen = (d: Dim): d is { open: string } => 'open' in d;

/** Values `f(v)` for every v of `d` (open stays open). */
function mapDim(d: Dim, f: (v: number) => number): Dim {
  return isOpen(d) ? d : fixedOf(d.values.map(f));
}

/** Every value in [lo, hi] rounded as `round` does, deduplicated. */
function range(lo: number, hi: number, round: (v: number) => number): number[] {
  const out = new Set<number>();
  for (let v = lo; v <= hi; v++) out.add(round(v));
  return [...out];
}

/** resizePlan's rounding to a multiple (ops-image.ts): nearest multiple, at least one. */
const roundTo = (v: number, m: number) => Math.max(m, Math.round(v / m) * m);

/** Sides a `limit-side` resize can make (ops-image.ts resizePlan). */
function limitSides(p: { limitSide?: number; limitType?: string; maxSide?: number; multipleOf?: number }): Dim {
  const m = p.multipleOf ?? 1;
  const limit = p.limitSide ?? 960;
  // max: every side ends at most `limit` (small images keep their size); min: grows, bounded only by maxSide
  const top = (p.limitType ?? 'max') === 'max' ? Math.min(limit, p.maxSide ?? limit) : p.maxSide;
  if (top === undefined) return open(`limit-side ${limit} (min) without maxSide: any size above the limit`);
  return fixedOf(range(1, top, (v) => roundTo(v, m)));
}

/** Widths of a `fixed-height` resize (ops-image.ts resizePlan). */
function fixedHeightWidths(p: { minWidth?: number; maxWidth?: number; multipleOf?: number }): Dim {
  if (!p.maxWidth) return open('fixed-height without maxWidth: any width');
  const m = p.multipleOf ?? 1;
  const lo = Math.max(1, p.minWidth ?? 1);
  return fixedOf(range(lo, p.maxWidth, (v) => Math.min(p.maxWidth!, m > 1 ? roundTo(v, m) : v)));
}

/** Widths `crop-batch` makes (native/plan.ts planCrop: maxWidth 4096 unless given). */
function cropWidths(p: {
  width?: number;
  minWidth?: number;
  maxWidth?: number;
  widthMultiple?: number;
  widthBuckets?: number[];
}): Dim {
  if (p.width) return fixed(p.width);
  if (p.widthBuckets) return fixedOf(p.widthBuckets);
  const max = p.maxWidth ?? 4096;
  const m = p.widthMultiple ?? 1;
  return fixedOf(range(Math.min(p.minWidth ?? 1, max), max, (v) => Math.min(max, Math.ceil(v / m) * m)));
}

/** Tensor dims from a batch count, channels and a plane, in the step's layout. */
function planeDims(n: Dim, c: Dim, h: Dim, w: Dim, layout: unknown): Dim[] {
  return layout === 'nhwc' ? [n, h, w, c] : [n, c, h, w];
}

type Get = (name: string) => ValueSpace;
/** The step params this file reads (each op's schema has already checked them). */
interface Params {
  input: string;
  output: string;
  image: string;
  mode?: string;
  width?: number;
  height?: number;
  limitSide?: number;
  limitType?: string;
  maxSide?: number;
  multipleOf?: number;
  minWidth?: number;
  maxWidth?: number;
  minHeight?: number;
  widthMultiple?: number;
  layout?: string;
  batch?: boolean;
  channels?: number;
  angle?: number;
  maxBatch?: number;
  padBatch?: boolean;
  batchList?: boolean;
  widthBuckets?: number[];
  groupSize?: number;
  widthsOutput?: string;
  heightsOutput?: string;
  padBuckets?: number[];
  inputs?: string | Record<string, string>;
  outputs?: string | Record<string, string>;
}

const REGIONS = 'the number of regions found';

/** Output spaces of the ops that shape images and tensors, by op name. */
const OPS: Record<string, (p: Params, get: Get) => ValueSpace | undefined> = {
  'decode-image': (p) => ({
    kind: 'image',
    list: false,
    height: open('the input image size'),
    width: open('the input image size'),
    channels: fixed(p.channels ?? 3),
  }),
  resize(p, get) {
    const img = get(p.input);
    if (img.kind !== 'image') return undefined;
    const size = (): [Dim, Dim] => {
      switch (p.mode) {
        case 'fixed':
        case 'letterbox':
          return [fixed(p.height), fixed(p.width)];
        case 'limit-side': {
          const s = limitSides(p);
          return [s, s];
        }
        case 'fixed-height':
          return [fixed(p.height), fixedHeightWidths(p)];
        default:
          return [open(`resize ${p.mode}: any size within the box`), open(`resize ${p.mode}: any size within the box`)];
      }
    };
    const [height, width] = size();
    return { ...img, height, width };
  },
  preprocess(p, get) {
    const img = get(p.input);
    if (img.kind !== 'image') return undefined;
    // padBuckets: a side is the smallest bucket that holds it (a larger one keeps its size)
    const bucket = (v: number) => p.padBuckets?.find((b) => b >= v) ?? v;
    const side = p.mode === 'limit-side' ? mapDim(limitSides(p), bucket) : undefined;
    const h = side ?? fixed(p.height);
    const w = side ?? fixed(p.width);
    return { kind: 'tensor', list: false, dims: planeDims(fixed(1), img.channels, h, w, p.layout) };
  },
  normalize(p, get) {
    const img = get(p.input);
    if (img.kind !== 'image') return undefined;
    // a batch is padded to its largest item, at least minWidth × minHeight
    const w = mapDim(img.width, (v) => Math.max(v, p.minWidth ?? 0));
    const h = mapDim(img.height, (v) => Math.max(v, p.minHeight ?? 0));
    const list = img.list && p.batch === false;
    const n = img.list && !list ? open(REGIONS) : fixed(1);
    return { kind: 'tensor', list, dims: planeDims(n, img.channels, h, w, p.layout) };
  },
  'crop-batch'(p, get) {
    const img = get(p.image);
    const c = img.kind === 'image' ? img.channels : open('the image channels');
    // groupSize: a list of batches of 1…groupSize lines
    const list = p.batch === false || Boolean(p.groupSize);
    const n = p.batch === false ? fixed(1) : p.groupSize ? fixedOf(range(1, p.groupSize, (v) => v)) : open(REGIONS);
    return { kind: 'tensor', list, dims: planeDims(n, c, fixed(p.height), cropWidths(p), p.layout) };
  },
  'crop-regions'(p, get) {
    const img = get(p.image);
    const channels = img.kind === 'image' ? img.channels : open('the image channels');
    const size = open('the size of each region');
    return { kind: 'image', list: true, height: p.height ? fixed(p.height) : size, width: size, channels };
  },
  'rotate-images'(p, get) {
    const img = get(p.input);
    if (img.kind !== 'image') return undefined;
    if (p.angle === 180) return img;
    // a quarter turn swaps the sides of the turned items only: either side can be either
    const both =
      isOpen(img.height) || isOpen(img.width)
        ? open('sides of turned images')
        : fixedOf([...img.height.values, ...img.width.values]);
    return { ...img, height: both, width: both };
  },
};

/** A declared tensor input's dims: numbers fixed, names open. */
function declaredTensor(shape: readonly (number | string)[] | undefined, name: string): ValueSpace {
  if (!shape) return { kind: 'unknown', why: `input ${name} declares no shape` };
  return {
    kind: 'tensor',
    list: false,
    dims: shape.map((d) => (typeof d === 'number' && d >= 0 ? fixed(d) : open(`input ${name} dim ${String(d)}`))),
  };
}

/**
 * `maxBatch` splits dim 0 into chunks: each call's batch is maxBatch or the remainder (exactly
 * maxBatch with `padBatch`). `batchList` runs a list's items of one shape together: up to
 * maxBatch of them, or as many as there are regions.
 */
function chunked(dims: Dim[], p: Pick<Params, 'maxBatch' | 'padBatch' | 'batchList'>, list: boolean): Dim[] {
  const maxBatch = p.maxBatch;
  if (!dims.length) return dims;
  if (maxBatch && p.padBatch) return [fixed(maxBatch), ...dims.slice(1)];
  if (list && p.batchList) dims = [open(REGIONS), ...dims.slice(1)];
  if (!maxBatch) return dims;
  const [n, ...rest] = dims;
  const batch = isOpen(n)
    ? fixedOf(range(1, maxBatch, (v) => v))
    : fixedOf(n.values.flatMap((v) => (v <= maxBatch ? [v] : [maxBatch, ...(v % maxBatch ? [v % maxBatch] : [])])));
  return [batch, ...rest];
}

/** Follows the pipeline over abstract values: what every `infer` step can feed its model. */
export function pipelineShapes(manifest: Pick<Manifest, 'inputs' | 'pipeline'>): PipelineShapes {
  const env = new Map<string, ValueSpace>();
  for (const i of manifest.inputs) {
    const spec = i as { name: string; type: string; shape?: (number | string)[] };
    env.set(
      spec.name,
      spec.type === 'tensor' ? declaredTensor(spec.shape, spec.name) : { kind: 'unknown', why: `input ${spec.name}` },
    );
  }
  const get: Get = (name) => env.get(name) ?? { kind: 'unknown', why: `${name} is not set` };
  const out: PipelineShapes = {};
  manifest.pipeline.steps.forEach((step: Step, index) => {
    const p = (step.params ?? {}) as unknown as Params;
    if (step.op === 'infer' && step.model) {
      // params are checked when the pipeline is built, not when a package is packed or explained:
      // an infer step without inputs / outputs binds nothing here (explain must not crash on it)
      const bindings: [string | null, string][] =
        typeof p.inputs === 'string' ? [[null, p.inputs]] : Object.entries((p.inputs ?? {}) as Record<string, string>);
      for (const [input, env] of bindings) {
        const v = get(env);
        const feed: ModelFeedSpace =
          v.kind === 'tensor'
            ? { step: index, input, dims: chunked(v.dims, p, v.list) }
            : { step: index, input, dims: null, why: v.kind === 'unknown' ? v.why : `${env} is an image` };
        // own keys: a model may be called `constructor`
        (Object.hasOwn(out, step.model) ? out[step.model] : (out[step.model] = [])).push(feed);
      }
      for (const name of typeof p.outputs === 'string' ? [p.outputs] : Object.values((p.outputs ?? {}) as object))
        env.set(name as string, { kind: 'unknown', why: `an output of model ${step.model}` });
      return;
    }
    // Params are checked when the pipeline is built (a run), not for explain: a step whose params
    // its op would refuse (missing outputs of a script or split step) tells nothing, never throws.
    let space: ValueSpace | undefined;
    let written: readonly string[] = [];
    try {
      space = OPS[step.op]?.(p, get);
      written = getOp(step.op)?.writes(p as never) ?? [];
    } catch {
      return;
    }
    for (const name of written)
      env.set(name, space && name === p.output ? space : { kind: 'unknown', why: `made by ${step.op}` });
    // crop-batch's and preprocess's sizes: one int32 per item of the output, so its batch dims
    if (space?.kind === 'tensor' && (step.op === 'crop-batch' || step.op === 'preprocess'))
      for (const name of [p.widthsOutput, p.heightsOutput])
        if (name) env.set(name, { kind: 'tensor', list: space.list, dims: [space.dims[0]] });
  });
  return out;
}

/** How many shapes a dims space holds (null when a dim is open). */
export function shapeCount(dims: readonly Dim[]): number | null {
  let n = 1;
  for (const d of dims) {
    if (isOpen(d)) return null;
    n *= d.values.length;
  }
  return n;
}

/** Every shape of a dims space, largest first (at most `limit`; the caller checks shapeCount first). */
export function enumerateShapes(dims: readonly Dim[], limit = 4096): number[][] {
  let acc: number[][] = [[]];
  for (const d of dims) {
    if (isOpen(d)) return [];
    acc = acc.flatMap((s) => d.values.map((v) => [...s, v]));
    if (acc.length > limit) acc = acc.slice(0, limit);
  }
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  return acc.sort((a, b) => size(b) - size(a));
}

/** Why a dims space is open, one line (undefined when it is finite). */
export function openReason(dims: readonly Dim[]): string | undefined {
  const why = dims.flatMap((d, i) => (isOpen(d) ? [`dim ${i}: ${d.open}`] : []));
  return why.length ? why.join('; ') : undefined;
}

/**
 * Narrows a pipeline dim by the model's declared dim (a fixed number wins; names and -1 keep the
 * pipeline's). A model declared without the batch dim is fed a batch of one without it (infer).
 */
export function withDeclared(dims: readonly Dim[], declared: readonly (number | string)[] | undefined): Dim[] {
  const one = dims[0] && 'values' in dims[0] && dims[0].values.length === 1 && dims[0].values[0] === 1;
  if (declared?.length && declared.length === dims.length - 1 && one) dims = dims.slice(1);
  if (!declared || declared.length !== dims.length) return [...dims];
  return dims.map((d, i) => {
    const m = declared[i];
    return typeof m === 'number' && m >= 0 ? fixed(m) : d;
  });
}

export { isOpen as dimIsOpen };

/** Per model: how many input shapes the pipeline can make (null: unbounded, with why), for explain. */
export function shapeSummary(
  manifest: Pick<Manifest, 'inputs' | 'pipeline'>,
): Record<string, { shapes: number | null; open?: string }> {
  const out: Record<string, { shapes: number | null; open?: string }> = {};
  for (const [model, feeds] of Object.entries(pipelineShapes(manifest))) {
    const steps = new Map<number, number | null>();
    let open: string | undefined;
    for (const f of feeds) {
      const n = f.dims ? shapeCount(f.dims) : null;
      if (n === null) open ??= f.dims ? openReason(f.dims) : f.why;
      const prev = steps.has(f.step) ? steps.get(f.step)! : 1;
      steps.set(f.step, prev === null || n === null ? null : prev * n);
    }
    const counts = [...steps.values()];
    const shapes = counts.some((c) => c === null) ? null : counts.reduce<number>((a, b) => a + (b ?? 0), 0);
    out[model] = { shapes, ...(open ? { open } : {}) };
  }
  return out;
}
