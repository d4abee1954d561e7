/**
 * The kernel table the runner gives package scripts (sandbox capability API, issue 6): the native
 * kernels of native/index.ts (portable TypeScript when the addon is missing) behind the names
 * `resize`, `normalize`, `nms`, `decode`, `argmax`, `ctcDecode`, plus sandbox/'s basic ones for the
 * rest. Built here so sandbox/ stays a leaf. All are queued: a script gets result handles at once.
 * Options are plain objects; bad arguments throw NativeError, which the guest sees as an error.
 */
import {
  ctcGreedyDecode,
  decodeDetections,
  nmsSync,
  type PixelFormat,
  type PreprocessOptions,
  preprocess,
  type ResizeSpec,
  softmaxTopK,
} from '../native/index.js';
import { planPreprocess } from '../native/plan.js';
import {
  basicKernels,
  type KernelBudget,
  type KernelTable,
  queued,
  type SandboxTensor,
  type SandboxValue,
} from '../sandbox/index.js';
import { RunnerError, SandboxError } from '../spec/errors.js';
import { DEFAULT_BUDGET, overBudget } from './pipeline/budget.js';
import type { RunnerBudget } from './types.js';

function tensor(v: SandboxValue | undefined, what: string, type?: string): SandboxTensor {
  const t = v as SandboxTensor;
  if (typeof t !== 'object' || t === null || !ArrayBuffer.isView(t.data) || !Array.isArray(t.dims))
    throw new TypeError(`${what} must be a tensor`);
  if (type && t.type !== type) throw new TypeError(`${what} must be ${type}, got ${t.type}`);
  return t;
}
function opts(v: SandboxValue | undefined): Record<string, any> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v) || ArrayBuffer.isView(v))
    throw new TypeError('options must be an object');
  return v as Record<string, any>;
}
/** A uint8 [H, W, C] image as the kernels' image input. */
function image(v: SandboxValue | undefined, what: string) {
  const t = tensor(v, what, 'uint8');
  if (t.dims.length !== 3) throw new RangeError(`${what} must be [height, width, channels]`);
  const [height, width, c] = t.dims;
  const format: PixelFormat | undefined = ({ 1: 'gray', 3: 'rgb', 4: 'rgba' } as const)[c as 1 | 3 | 4];
  if (!format) throw new RangeError(`${what} must have 1, 3 or 4 channels`);
  return { data: t.data as Uint8Array, width, height, format };
}
const f32 = (dims: number[], data: Float32Array): SandboxTensor => ({ type: 'float32', dims, data });
const i32 = (dims: number[], data: Int32Array): SandboxTensor => ({ type: 'int32', dims, data });

/** uint8 HWC → resized uint8 HWC (area when shrinking, else bilinear); float32 images use the basic kernel. */
async function resize(
  budget: Required<RunnerBudget>,
  call: unknown,
  img: SandboxValue,
  options?: SandboxValue,
): Promise<SandboxTensor> {
  // The basic kernel keeps to the call's budget (its `this`, sandbox KernelBudget).
  if ((img as SandboxTensor)?.type === 'float32')
    return basicKernels.resize.call(call, img, options ?? null) as SandboxTensor;
  const im = image(img, 'resize: image');
  const o = opts(options);
  const r = await preprocess(
    im,
    withinBudget(
      budget,
      call,
      im,
      {
        resize: { mode: 'stretch', width: o.width, height: o.height },
        scale: 1,
        layout: 'nhwc',
        interpolation: o.interpolation ?? 'auto',
      },
      'resize',
    ),
  );
  const c = r.dims[3];
  const out = new Uint8Array(r.data.length);
  for (let i = 0; i < out.length; i++) out[i] = r.data[i] + 0.5;
  return { type: 'uint8', dims: [r.dims[1], r.dims[2], c], data: out };
}

/**
 * uint8 HWC → float32 [1, C, H, W] (or NHWC): `(x · scale − mean) / std` (scale default 1, as the
 * basic kernel), with an optional fused `resize` (stretch / letterbox / limitSide, native ResizeSpec).
 */
async function normalize(
  budget: Required<RunnerBudget>,
  call: unknown,
  img: SandboxValue,
  options?: SandboxValue,
): Promise<SandboxTensor> {
  if ((img as SandboxTensor)?.type === 'float32')
    return basicKernels.normalize.call(call, img, options ?? null) as SandboxTensor;
  const im = image(img, 'normalize: image');
  const o = opts(options);
  const resize: ResizeSpec = o.resize ?? { mode: 'stretch', width: im.width, height: im.height };
  const r = await preprocess(
    im,
    withinBudget(
      budget,
      call,
      im,
      {
        resize,
        scale: o.scale ?? 1,
        mean: o.mean,
        std: o.std,
        channelOrder: o.channelOrder,
        layout: o.layout,
        interpolation: o.interpolation ?? (o.resize ? 'auto' : 'bilinear'),
      },
      'normalize',
    ),
  );
  return f32(r.dims, r.data as Float32Array);
}

/** boxes float32 [N, 4], scores float32 [N] (options.classes: int32 [N] for class-aware) → kept indices int32 [K]. */
function nms(boxes: SandboxValue, scores: SandboxValue, options?: SandboxValue): SandboxTensor {
  const b = tensor(boxes, 'nms: boxes', 'float32');
  const s = tensor(scores, 'nms: scores', 'float32');
  const o = opts(options);
  const classes = o.classes === undefined ? undefined : (tensor(o.classes, 'nms: classes', 'int32').data as Int32Array);
  const r = nmsSync(b.data as Float32Array, s.data as Float32Array, {
    ...o,
    iouThreshold: o.iouThreshold,
    ...(classes ? { classes } : {}),
  });
  return i32([r.keep.length], r.keep);
}

/** A YOLO-style head [1, A, K] / [1, K, A] (native DecodeOptions without dims) → boxes [M, 4], scores [M], classes [M]. */
async function decode(output: SandboxValue, options?: SandboxValue): Promise<Record<string, SandboxTensor>> {
  const t = tensor(output, 'decode: output', 'float32');
  const dims = t.dims.length === 2 ? [1, ...t.dims] : [...t.dims];
  const r = await decodeDetections(t.data as Float32Array, { ...opts(options), dims });
  const n = r.scores.length;
  return { boxes: f32([n, 4], r.boxes), scores: f32([n], r.scores), classes: i32([n], r.classes) };
}

/** First maximum along the last axis: `{ indices: int32, values: float32 }`, dims without the last axis. */
async function argmax(x: SandboxValue): Promise<Record<string, SandboxTensor>> {
  const t = tensor(x, 'argmax: input', 'float32');
  if (t.dims.length === 0) throw new RangeError('argmax: input must have at least one axis');
  const cols = t.dims[t.dims.length - 1];
  const rows = cols ? t.data.length / cols : 0;
  const dims = t.dims.slice(0, -1);
  if (!rows) return { indices: i32(dims, new Int32Array(rows)), values: f32(dims, new Float32Array(rows)) };
  const r = await softmaxTopK(t.data as Float32Array, { dims: [rows, cols], k: 1, softmax: false });
  return { indices: i32(dims, r.indices), values: f32(dims, r.values) };
}

/**
 * CTC greedy decode of [N, T, C] scores (options: blank, mergeRepeats, softmax, lengths int32 [N]) →
 * ids int32 [M], confidences float32 [M], offsets int32 [N + 1] (item i's ids are offsets[i]..offsets[i+1]).
 */
async function ctcDecode(probs: SandboxValue, options?: SandboxValue): Promise<Record<string, SandboxTensor>> {
  const t = tensor(probs, 'ctcDecode: probs', 'float32');
  const o = opts(options);
  const lengths =
    o.lengths === undefined ? undefined : (tensor(o.lengths, 'ctcDecode: lengths', 'int32').data as Int32Array);
  const r = await ctcGreedyDecode(t.data as Float32Array, {
    ...o,
    dims: [...t.dims],
    vocabulary: undefined,
    ...(lengths ? { lengths } : {}),
  });
  return {
    ids: i32([r.ids.length], r.ids),
    confidences: f32([r.confidences.length], r.confidences),
    offsets: i32([r.offsets.length], r.offsets),
  };
}

/**
 * A script's resize/normalize allocate on the host, outside the sandbox's memory cap: the plan's
 * output size is checked against the runner's budget before anything is allocated (the pipeline
 * ops do the same, runner/pipeline/budget.ts).
 */
function withinBudget(
  budget: Required<RunnerBudget>,
  call: unknown,
  im: ReturnType<typeof image>,
  o: PreprocessOptions,
  what: string,
): PreprocessOptions {
  const plan = planPreprocess(im, o);
  const pixels = plan.dims.reduce((n, d) => n * d, 1) / plan.dims[plan.raw.nhwc ? 3 : 1];
  const bytes = plan.dims.reduce((n, d) => n * d, plan.dtype === 'f32' ? 4 : plan.dtype === 'f16' ? 2 : 1);
  const over = overBudget(budget, { pixels, bytes }, `script kernel ${what} to ${plan.dims.join('×')}`);
  if (over) throw new RunnerError('E_RUN_BUDGET', over.message, over.detail);
  // And against what the sandbox call has left of its host-tensor budget (the kernel's `this`),
  // which may be lower: past it the result would be refused once made.
  const left = (call as Partial<KernelBudget> | undefined)?.maxBytes;
  if (typeof left === 'number' && bytes > left)
    throw new SandboxError(
      'E_SANDBOX_MEMORY',
      `script kernel ${what}: results of ${bytes} bytes exceed the ${left} bytes left`,
      {
        kernel: what,
        bytes,
        limitBytes: left,
      },
    );
  return o;
}

/** The runner's sandbox kernel table for a budget: native kernels first, the basic ones for everything else. */
export function sandboxKernelsFor(budget: Required<RunnerBudget> = DEFAULT_BUDGET): KernelTable {
  return Object.freeze({ ...sandboxKernels, ...budgeted(budget) });
}

/** The kernels whose allocations the runner's budget bounds (`this`: the sandbox call's KernelBudget). */
function budgeted(budget: Required<RunnerBudget>) {
  return {
    resize: queued(function (this: unknown, img: SandboxValue, o?: SandboxValue) {
      return resize(budget, this, img, o);
    }, 'tensor'),
    normalize: queued(function (this: unknown, img: SandboxValue, o?: SandboxValue) {
      return normalize(budget, this, img, o);
    }, 'tensor'),
  };
}

/** The kernel table with the default budget. */
export const sandboxKernels: KernelTable = Object.freeze({
  ...basicKernels,
  ...budgeted(DEFAULT_BUDGET),
  nms: queued(nms, 'tensor'),
  decode: queued(decode, ['boxes', 'scores', 'classes']),
  argmax: queued(argmax, ['indices', 'values']),
  ctcDecode: queued(ctcDecode, ['ids', 'confidences', 'offsets']),
});
