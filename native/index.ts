/**
 * The whole native-kernel surface of xpkg, and the one place the addon is loaded.
 *
 * Every kernel has an async form (runs on a libuv worker, returns a Promise) and a Sync form (for
 * latency-critical small calls). Arguments are validated here and turned into one flat options
 * object (plan.ts); the same object goes to the addon (native/build/Release/xpkg_native.node,
 * sources in native/src and kernels/) or, when the addon is missing, to the portable TypeScript
 * kernels (native/portable, also the browser path), after a one-line warning on stderr.
 * Environment: XPKG_NATIVE=portable|native forces a backend; XPKG_NATIVE_PATH names the .node file;
 * XPKG_NATIVE_SIMD=baseline|avx2 caps the CPU features used (as if the CPU were older).
 * Async calls copy their inputs and write their outputs through native scratch (native/src/util.h):
 * a buffer detached while a worker runs is never read or written; sync calls work in place.
 */
import { NativeError } from '../spec/errors.js';
import { bothForms, type Prepared, runAsync, runSync } from './dispatch.js';
import { nativeEnv } from './env.js';
import { planCrop, planPreprocess } from './plan.js';
import { portable } from './portable/index.js';
import { bool, dims, int, num, type OutAlloc, oneOf, options, outTensor, threadCount, typed } from './validate.js';

const {
  join,
  resolve,
  exists: existsSync,
  read: readFileSync,
  getenv,
  hardwareThreads: availableParallelism,
} = nativeEnv;

// ---- public types ---------------------------------------------------------------------------
export type PixelFormat = 'rgb' | 'rgba' | 'bgr' | 'bgra' | 'gray';
/** Tensor element types the image kernels write: float32, half bits, or u8 pixels (preprocess only). */
export type TensorDtype = 'f32' | 'f16' | 'u8';
export type TensorData = Float32Array | Uint16Array | Uint8Array;
/** u8 interleaved pixels; `stride` is bytes per row (default width × channels). */
export interface ImageInput {
  data: Uint8Array;
  width: number;
  height: number;
  format: PixelFormat;
  stride?: number;
}
export type ResizeSpec =
  | { mode: 'stretch'; width: number; height: number }
  /** Fit inside width×height keeping the aspect ratio; pad with `padPixel` (pixel units, default 114). */
  | { mode: 'letterbox'; width: number; height: number; padPixel?: number | number[]; anchor?: 'center' | 'topLeft' }
  /**
   * PaddleOCR det: scale so the max (or min) side is `limit`, round each side to `multiple` (default
   * 32). `padTo` (ascending sizes): each side of the plane is the smallest that holds it (a side
   * above them all keeps its size), the image at the top left, the rest `padPixel` (default 0), so
   * an accelerator sees a few input shapes instead of one per page size.
   */
  | {
      mode: 'limitSide';
      limit: number;
      side?: 'max' | 'min';
      multiple?: number;
      padTo?: readonly number[];
      padPixel?: number | number[];
    };
interface NormOptions {
  /** Applied first (default 1/255), then `(v - mean[c]) / std[c]`, per OUTPUT channel. */
  scale?: number;
  mean?: number | number[];
  std?: number | number[];
  channelOrder?: 'rgb' | 'bgr';
  layout?: 'nchw' | 'nhwc';
  threads?: number;
}
export interface PreprocessOptions extends NormOptions {
  /**
   * u8: each value rounded half to even and clamped to 0..255 in the kernel (for a model that takes
   * pixels and normalises them itself; with the default scale 1/255 pass scale 1). Native and portable
   * write the same bytes.
   */
  dtype?: TensorDtype;
  resize: ResizeSpec;
  /** 'auto' (default): area averaging where an axis shrinks ≥ 2×, bilinear otherwise. */
  interpolation?: 'bilinear' | 'area' | 'auto';
  /** Write into this tensor (Float32Array, Uint16Array of half bits for f16, Uint8Array for u8) at `outOffset`. */
  out?: TensorData;
  outOffset?: number;
  /** Without `out`: the output array comes from this (exactly the planned size) instead of a new one. */
  alloc?: OutAlloc;
}
export interface PreprocessResult {
  data: TensorData;
  dims: number[];
  resized: { width: number; height: number };
  pad: { x: number; y: number };
  scale: { x: number; y: number };
}
export interface CropOptions extends NormOptions {
  /** u8: rounded half to even and clamped 0..255, as a Uint8ClampedArray stores the f32 values. */
  dtype?: 'f32' | 'f16' | 'u8';
  /** Output height; each region gets width ceil(height × aspect) clamped to [minWidth, maxWidth]. */
  height: number;
  maxWidth?: number;
  minWidth?: number;
  /** Fixed batch width (default: widest region rounded up to widthMultiple, at most maxWidth). */
  width?: number;
  widthMultiple?: number;
  /** Regions at least this many times taller than wide are read rotated 90° CCW (PaddleOCR: 1.5). */
  verticalRatio?: number;
  /** Padding right of each region, in output units (default 0). */
  padValue?: number | number[];
  /** Average up to 4×4 samples per pixel when shrinking (default true). */
  supersample?: boolean;
  out?: Float32Array | Uint16Array | Uint8Array;
  outOffset?: number;
  /** Without `out`: the output array comes from this (exactly the planned size) instead of a new one. */
  alloc?: OutAlloc;
}
export interface CropResult {
  data: Float32Array | Uint16Array | Uint8Array;
  dims: number[];
  widths: Int32Array;
  rotated: Uint8Array;
}
export interface NmsOptions {
  iouThreshold: number;
  scoreThreshold?: number;
  preTopK?: number;
  maxOutput?: number;
  /** Class per box: only boxes of one class suppress each other. Omit for class-agnostic NMS. */
  classes?: Int32Array;
  /** Boxes are batch × n (scores batch × n); default 1. */
  batch?: number;
  threads?: number;
}
export interface NmsResult {
  keep: Int32Array;
  counts: Int32Array;
}
export interface DecodeOptions {
  /** [batch, anchors, attrs] or [batch, attrs, anchors]; layout says which (default: attrs-first when dims[1] < dims[2]). */
  dims: number[];
  layout?: 'attrs-first' | 'anchors-first';
  /** 'anchor-free': [box4, classes…] (YOLOv8); 'objectness': [box4, obj, classes…] (YOLOv5). */
  format?: 'anchor-free' | 'objectness';
  box?: 'cxcywh' | 'xyxy';
  sigmoid?: boolean;
  /** Raw YOLOv5 head: 5 floats per anchor (gridX, gridY, stride, anchorW, anchorH), see yoloGrid. */
  grid?: Float32Array;
  scoreThreshold?: number;
  iouThreshold?: number;
  agnostic?: boolean;
  preTopK?: number;
  maxOutput?: number;
  /** Undo a letterbox (PreprocessResult.scale/pad) and clip to the source image. */
  letterbox?: { scale: { x: number; y: number }; pad: { x: number; y: number } };
  clip?: { width: number; height: number };
  threads?: number;
}
export interface Detections {
  boxes: Float32Array;
  scores: Float32Array;
  classes: Int32Array;
  anchors: Int32Array;
  counts: Int32Array;
}
export interface ArgmaxOptions {
  dims: number[];
  layout?: 'nchw' | 'nhwc';
  softmax?: boolean;
  scores?: boolean;
  threads?: number;
}
export interface ArgmaxResult {
  labels: Uint8Array | Uint16Array;
  scores?: Float32Array;
  dims: number[];
}
export interface TopKOptions {
  dims: number[];
  k: number;
  softmax?: boolean;
  threads?: number;
}
export interface TopKResult {
  indices: Int32Array;
  values: Float32Array;
}
export interface CtcOptions {
  dims: number[];
  blank?: number;
  mergeRepeats?: boolean;
  softmax?: boolean;
  lengths?: Int32Array;
  /** Maps class id (index + offset) to text; ids outside it emit nothing. offset default 1. */
  vocabulary?: readonly string[];
  offset?: number;
  threads?: number;
}
export interface CtcResult {
  ids: Int32Array;
  confidences: Float32Array;
  offsets: Int32Array;
  texts: string[];
  scores: Float32Array;
}
export interface DbOptions {
  width: number;
  height: number;
  threshold?: number;
  boxThreshold?: number;
  unclipRatio?: number;
  minSize?: number;
  maxCandidates?: number;
  dilate?: boolean;
  /** Map quads to this image size (scaled and clipped); default: map coordinates. */
  outputWidth?: number;
  outputHeight?: number;
  threads?: number;
}
export interface DbResult {
  quads: Float32Array;
  scores: Float32Array;
  count: number;
}
export interface BackendInfo {
  backend: 'native' | 'portable';
  path?: string;
  loadError?: string;
  simd: string;
  f16c: boolean;
  hardwareThreads: number;
  threads: number;
  compiler: string;
  sanitized: boolean;
  /** The CUDA kernel library was built (nvcc present at build time); cudaInfo() probes for devices. */
  cudaBuilt: boolean;
}

// ---- raw surface: what the addon and the portable kernels both implement ---------------------
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
  stride: number;
}
export interface RawTensorOut {
  /** The array type is the dtype: Float32Array f32, Uint16Array f16, Uint8Array u8. */
  out: TensorData;
  outOffset: number;
  nhwc: boolean;
  outChannels: number;
  chanMap: Int32Array;
  norm: Float64Array;
}
export interface RawPreprocess extends RawImage, RawTensorOut {
  planeWidth: number;
  planeHeight: number;
  roiX: number;
  roiY: number;
  roiWidth: number;
  roiHeight: number;
  interp: number;
  threads: number;
}
export interface RawCrop extends RawImage, RawTensorOut {
  out: Float32Array | Uint16Array | Uint8Array;
  count: number;
  outWidth: number;
  outHeight: number;
  homographies: Float64Array;
  widths: Int32Array;
  samples: Int32Array;
  threads: number;
}
export interface RawNms {
  boxes: Float32Array;
  scores: Float32Array;
  classes?: Int32Array;
  n: number;
  batch: number;
  iouThreshold: number;
  scoreThreshold: number;
  preTopK: number;
  maxOutput: number;
  threads: number;
}
export type RawNmsResult = NmsResult;
export interface RawDecode {
  data: Float32Array;
  batch: number;
  anchors: number;
  attrs: number;
  attrsFirst: boolean;
  objectness: boolean;
  xyxy: boolean;
  sigmoid: boolean;
  grid?: Float32Array;
  scoreThreshold: number;
  padX: number;
  padY: number;
  scaleX: number;
  scaleY: number;
  clipWidth: number;
  clipHeight: number;
  agnostic: boolean;
  iouThreshold: number;
  preTopK: number;
  maxOutput: number;
  threads: number;
}
export type RawDecodeResult = Detections;
export interface RawArgmax {
  data: Float32Array;
  batch: number;
  classes: number;
  height: number;
  width: number;
  nhwc: boolean;
  softmax: boolean;
  labels: Uint8Array | Uint16Array;
  scores?: Float32Array;
  threads: number;
}
export interface RawTopK {
  data: Float32Array;
  rows: number;
  classes: number;
  k: number;
  softmax: boolean;
  indices: Int32Array;
  values: Float32Array;
  threads: number;
}
export interface RawCtc {
  data: Float32Array;
  batch: number;
  steps: number;
  classes: number;
  lengths?: Int32Array;
  blank: number;
  mergeRepeats: boolean;
  softmax: boolean;
  threads: number;
}
export interface RawCtcResult {
  ids: Int32Array;
  confidences: Float32Array;
  offsets: Int32Array;
}
export interface RawDb {
  prob: Float32Array;
  width: number;
  height: number;
  threshold: number;
  boxThreshold: number;
  unclipRatio: number;
  minSize: number;
  maxCandidates: number;
  dilate: boolean;
  scaleX: number;
  scaleY: number;
  clipWidth: number;
  clipHeight: number;
  threads: number;
}
export interface RawDbResult {
  quads: Float32Array;
  scores: Float32Array;
}
type Call<O, R> = { (o: O): R; (o: O, async: true): Promise<R> };
export interface Kernels {
  preprocess: Call<RawPreprocess, void>;
  cropBatch: Call<RawCrop, void>;
  nms: Call<RawNms, RawNmsResult>;
  decodeDetections: Call<RawDecode, RawDecodeResult>;
  segmentArgmax: Call<RawArgmax, void>;
  softmaxTopK: Call<RawTopK, void>;
  ctcGreedy: Call<RawCtc, RawCtcResult>;
  dbPostprocess: Call<RawDb, RawDbResult>;
}
interface Addon extends Kernels {
  buildInfo(): {
    abi: number;
    simd: string;
    buildSimd: string;
    isa: string;
    f16c: boolean;
    threads: number;
    compiler: string;
    sanitized: boolean;
  };
  cudaProbe(path: string): { loaded: boolean; devices: number; error?: string };
  /** Ends the process now (`_Exit`): no destructors, atexit handlers or thread joins. Absent from older builds. */
  exitNow?(code: number): never;
}

// ---- loading ----------------------------------------------------------------------------------
const ABI = 2;
const here = nativeEnv.dir;
const CUDA_LIB =
  [join(here, 'build-cuda/libxpkg_cuda.so'), join(here, '../../native/build-cuda/libxpkg_cuda.so')].find((p) =>
    existsSync(p),
  ) ?? join(here, 'build-cuda/libxpkg_cuda.so');
let addon: Addon | null | undefined;
let addonPath: string | undefined;
let loadError: string | undefined;
let warned = false;
let mode: 'auto' | 'native' | 'portable' = (
  ['native', 'portable'].includes(getenv('XPKG_NATIVE') ?? '') ? getenv('XPKG_NATIVE') : 'auto'
) as never;
/** XPKG_NATIVE_THREADS (1…256, for side-by-side measurements) or min(8, available cores); other values are ignored. */
function defaultThreads(): number {
  const v = Number(getenv('XPKG_NATIVE_THREADS') ?? '');
  return Number.isInteger(v) && v >= 1 && v <= 256 ? v : Math.max(1, Math.min(8, availableParallelism()));
}
let threads = defaultThreads();

function load(): Addon | null {
  if (addon !== undefined) return addon;
  addon = null;
  const explicit = getenv('XPKG_NATIVE_PATH');
  // Source tree (tsx, vitest) and compiled dist/native/ → package root.
  const paths = explicit
    ? [resolve(explicit)]
    : [join(here, 'build/Release/xpkg_native.node'), join(here, '../../native/build/Release/xpkg_native.node')];
  const found = paths.find((p) => existsSync(p));
  if (!found) {
    loadError = `${paths[0]} not found (not built: run \`npm rebuild xpkg\` or \`npx node-gyp rebuild --directory=native\`)`;
    return null;
  }
  const lacking = missingIsa(found);
  if (lacking.length) {
    loadError = `${found}: built for x86 features this CPU lacks (${lacking.join(', ')}); rebuild it (the default XPKG_NATIVE_MARCH=x86-64-v2 runs on any x86-64 host)`;
    return null;
  }
  try {
    const a = nativeEnv.requireAddon(found) as Addon;
    const abi = a.buildInfo().abi;
    if (abi !== ABI) throw new Error(`stale build (abi ${abi}, expected ${ABI}); rebuild it`);
    addon = a;
    addonPath = found;
  } catch (e) {
    loadError = `${found}: ${e instanceof Error ? e.message : String(e)}`;
  }
  return addon;
}

// The x86-64-v2 features: what XPKG_NATIVE_SIMD=baseline leaves a CPU (an older one, for tests).
const V2 = new Set([
  'sse',
  'sse2',
  'sse3',
  'pni',
  'ssse3',
  'sse4_1',
  'sse4_2',
  'popcnt',
  'cx16',
  'lahf_lm',
  'mmx',
  'fxsr',
]);

/**
 * Features the addon at `path` was compiled to use (its xpkg-native-isa marker) that this CPU
 * lacks, read from the file before loading it: code built for a newer CPU can fault with SIGILL
 * anywhere, even while loading. Linux x86 only (elsewhere the build targets its own host).
 */
export function missingIsa(path: string, cpuFlags = cpuFeatures(), cap = getenv('XPKG_NATIVE_SIMD')): string[] {
  if (!cpuFlags) return [];
  const bytes = readFileSync(path);
  const need = new Set<string>();
  for (let at = bytes.indexOf('xpkg-native-isa:'); at >= 0; at = bytes.indexOf('xpkg-native-isa:', at + 1)) {
    const end = bytes.indexOf(';', at);
    for (const f of bytes
      .subarray(at + 16, end < 0 ? at + 16 : end)
      .toString('latin1')
      .split(','))
      if (/^[a-z0-9_]+$/.test(f)) need.add(f);
  }
  const has = (f: string) =>
    cpuFlags.has(f) && (cap === 'baseline' ? V2.has(f) : cap === 'avx2' ? !f.startsWith('avx512') : true);
  return [...need].filter((f) => !has(f));
}

function cpuFeatures(): Set<string> | undefined {
  if (nativeEnv.platform !== 'linux' || (nativeEnv.arch !== 'x64' && nativeEnv.arch !== 'ia32')) return undefined;
  try {
    const line = readFileSync('/proc/cpuinfo')
      .toString('latin1')
      .split('\n')
      .find((l) => l.startsWith('flags'));
    return line
      ? new Set(
          line
            .slice(line.indexOf(':') + 1)
            .trim()
            .split(/\s+/),
        )
      : undefined;
  } catch {
    return undefined;
  }
}

function kernels(): Kernels {
  if (mode === 'portable') return portable;
  const a = load();
  if (a) return a;
  if (mode === 'native')
    throw new NativeError('E_NATIVE_UNAVAILABLE', `native kernels unavailable: ${loadError}`, { loadError });
  if (!warned) {
    warned = true;
    nativeEnv.warn(`xpkg: native kernels not loaded (${loadError}); using portable TypeScript kernels\n`);
  }
  return portable;
}

/** Forces a backend ('auto' = native when it loads, else portable with a warning). */
export function setNativeBackend(m: 'auto' | 'native' | 'portable'): void {
  mode = oneOf('backend', m, ['auto', 'native', 'portable'] as const);
}
/** Default worker threads per kernel call (initially min(8, available cores)). */
export function setNativeThreads(n: number): void {
  threads = int('threads', n, 1, 256);
}

export function nativeInfo(): BackendInfo {
  const a = mode === 'portable' ? null : load();
  const cudaBuilt = existsSync(CUDA_LIB);
  if (!a)
    return {
      backend: 'portable',
      loadError,
      simd: 'none',
      f16c: false,
      hardwareThreads: availableParallelism(),
      threads,
      compiler: 'javascript',
      sanitized: false,
      cudaBuilt,
    };
  const b = a.buildInfo();
  return {
    backend: 'native',
    path: addonPath,
    simd: b.simd,
    f16c: b.f16c,
    hardwareThreads: b.threads,
    threads,
    compiler: b.compiler,
    sanitized: b.sanitized,
    cudaBuilt,
  };
}

/** Whether the CUDA kernel library (native/build-cuda/libxpkg_cuda.so, bench/cuda/build.sh) loads and sees a GPU. */
export function cudaInfo(path = CUDA_LIB): { loaded: boolean; devices: number; error?: string } {
  const a = load();
  if (!a) return { loaded: false, devices: 0, error: loadError };
  if (!existsSync(path)) return { loaded: false, devices: 0, error: `${path} not found` };
  return a.cudaProbe(path);
}

/**
 * The addon's immediate process exit, or null (no addon, an older build, or XPKG_NATIVE=portable):
 * for a command that has flushed its output and has nothing left to do (cli/exit.ts).
 */
export function exitNow(): ((code: number) => never) | null {
  const a = mode === 'portable' ? null : load();
  return a && typeof a.exitNow === 'function' ? a.exitNow.bind(a) : null;
}

// ---- dispatch ---------------------------------------------------------------------------------
const both = <A extends unknown[], R>(prepare: (...a: A) => Prepared<R>) => bothForms(kernels, prepare);

type RawOf<K extends keyof Kernels> = Parameters<Kernels[K]>[0];
type ResultOf<K extends keyof Kernels> = Awaited<ReturnType<Kernels[K]>>;
/** Low-level entry: a kernel on prepared raw options (checked only by the kernel), e.g. a plan reused per frame. */
export function runRawSync<K extends keyof Kernels>(kernel: K, raw: RawOf<K>): ResultOf<K> {
  return runSync(kernels(), kernel, raw, (r: ResultOf<K>) => r, undefined);
}
export function runRaw<K extends keyof Kernels>(kernel: K, raw: RawOf<K>): Promise<ResultOf<K>> {
  return runAsync(kernels(), kernel, raw, (r: ResultOf<K>) => r, new Error());
}
/** The raw kernel table of one backend (tests and benchmarks compare them). */
export function nativeKernels(backend: 'native' | 'portable'): Kernels {
  if (backend === 'portable') return portable;
  const a = load();
  if (!a) throw new NativeError('E_NATIVE_UNAVAILABLE', `native kernels unavailable: ${loadError}`, { loadError });
  return a;
}

// ---- kernels ----------------------------------------------------------------------------------
const pre = both((image: ImageInput, opts: PreprocessOptions): Prepared<PreprocessResult> => {
  const p = planPreprocess(image, opts);
  const o = options<PreprocessOptions>('options', opts);
  const size = p.raw.planeWidth * p.raw.planeHeight * p.raw.outChannels;
  const t = outTensor(o, p.dtype, size);
  const raw: RawPreprocess = { ...p.raw, ...t, threads: threadCount(o, threads) };
  return {
    kernel: 'preprocess',
    raw,
    finish: () => ({ data: t.out, dims: p.dims, resized: p.resized, pad: p.pad, scale: p.scale }),
  };
});
/** Fused resize (stretch / letterbox / limit-side) + normalise + layout + dtype of one image. */
export const preprocess = pre.async;
export const preprocessSync = pre.sync;

const crop = both((image: ImageInput, quads: ArrayLike<number>, opts: CropOptions): Prepared<CropResult> => {
  const p = planCrop(image, quads, opts);
  const o = options<CropOptions>('options', opts);
  const t = outTensor(o, p.dtype, p.raw.count * p.raw.outWidth * p.raw.outHeight * p.raw.outChannels);
  const raw: RawCrop = { ...p.raw, ...t, threads: threadCount(o, threads) };
  return {
    kernel: 'cropBatch',
    raw,
    finish: () => ({ data: t.out, dims: p.dims, widths: p.raw.widths, rotated: p.rotated }),
  };
});
/** Crops quads (8 numbers each: TL, TR, BR, BL; pixel i spans [i, i+1)) into one padded batch. */
export const cropBatch = crop.async;
export const cropBatchSync = crop.sync;

const nmsK = both((boxes: Float32Array, scores: Float32Array, opts: NmsOptions): Prepared<NmsResult> => {
  const o = options<NmsOptions>('options', opts);
  const batch = int('batch', o.batch ?? 1, 0);
  typed('scores', scores, Float32Array);
  if (batch === 0 ? scores.length !== 0 : scores.length % batch !== 0)
    throw new NativeError('E_NATIVE_ARGUMENT', 'scores: length must be a multiple of batch', { argument: 'scores' });
  const n = batch ? scores.length / batch : 0;
  typed('boxes', boxes, Float32Array, batch * n * 4);
  const classes = o.classes === undefined ? undefined : typed('classes', o.classes, Int32Array, batch * n);
  const raw: RawNms = {
    boxes,
    scores,
    classes,
    n,
    batch,
    iouThreshold: num('iouThreshold', o.iouThreshold, { min: 0, max: 1 }),
    scoreThreshold: num('scoreThreshold', o.scoreThreshold ?? -Infinity, { finite: false }),
    preTopK: o.preTopK === undefined ? -1 : int('preTopK', o.preTopK, 0),
    maxOutput: o.maxOutput === undefined ? -1 : int('maxOutput', o.maxOutput, 0),
    threads: threadCount(o, threads),
  };
  return { kernel: 'nms', raw, finish: (r: NmsResult) => r };
});
/** Greedy NMS; kept indices best first, per batch item (counts). NaN scores are dropped. */
export const nms = nmsK.async;
export const nmsSync = nmsK.sync;

const dec = both((output: Float32Array, opts: DecodeOptions): Prepared<Detections> => {
  const o = options<DecodeOptions>('options', opts);
  const [batch, d1, d2] = dims('dims', o.dims, 3);
  typed('output', output, Float32Array, batch * d1 * d2);
  const attrsFirst =
    oneOf('layout', o.layout ?? (d1 < d2 ? 'attrs-first' : 'anchors-first'), [
      'attrs-first',
      'anchors-first',
    ] as const) === 'attrs-first';
  const [attrs, anchors] = attrsFirst ? [d1, d2] : [d2, d1];
  const objectness =
    oneOf('format', o.format ?? 'anchor-free', ['anchor-free', 'objectness'] as const) === 'objectness';
  if (attrs <= (objectness ? 5 : 4))
    throw new NativeError('E_NATIVE_ARGUMENT', `dims: ${attrs} attributes leave no class scores`, { argument: 'dims' });
  const lb = o.letterbox;
  const raw: RawDecode = {
    data: output,
    batch,
    anchors,
    attrs,
    attrsFirst,
    objectness,
    xyxy: oneOf('box', o.box ?? 'cxcywh', ['cxcywh', 'xyxy'] as const) === 'xyxy',
    sigmoid: bool('sigmoid', o.sigmoid ?? false),
    grid: o.grid === undefined ? undefined : typed('grid', o.grid, Float32Array, anchors * 5),
    scoreThreshold: num('scoreThreshold', o.scoreThreshold ?? 0.25, { finite: false }),
    padX: lb ? num('letterbox.pad.x', lb.pad?.x) : 0,
    padY: lb ? num('letterbox.pad.y', lb.pad?.y) : 0,
    scaleX: lb ? num('letterbox.scale.x', lb.scale?.x, { min: Number.MIN_VALUE }) : 1,
    scaleY: lb ? num('letterbox.scale.y', lb.scale?.y, { min: Number.MIN_VALUE }) : 1,
    clipWidth: o.clip ? num('clip.width', o.clip.width, { min: 0 }) : 0,
    clipHeight: o.clip ? num('clip.height', o.clip.height, { min: 0 }) : 0,
    agnostic: bool('agnostic', o.agnostic ?? false),
    iouThreshold: num('iouThreshold', o.iouThreshold ?? 0.45, { min: 0, max: 1 }),
    preTopK: o.preTopK === undefined ? -1 : int('preTopK', o.preTopK, 0),
    maxOutput: int('maxOutput', o.maxOutput ?? 300, 0),
    threads: threadCount(o, threads),
  };
  return { kernel: 'decodeDetections', raw, finish: (r: Detections) => r };
});
/** Decodes a YOLO-style head (anchor-free or objectness, optional raw grid), NMS, inverse letterbox. */
export const decodeDetections = dec.async;
export const decodeDetectionsSync = dec.sync;

const argmax = both((logits: Float32Array, opts: ArgmaxOptions): Prepared<ArgmaxResult> => {
  const o = options<ArgmaxOptions>('options', opts);
  const nhwc = oneOf('layout', o.layout ?? 'nchw', ['nchw', 'nhwc'] as const) === 'nhwc';
  const d = dims('dims', o.dims, 4);
  const [batch, classes, height, width] = nhwc ? [d[0], d[3], d[1], d[2]] : d;
  int('classes', classes, 1, 65536);
  typed('logits', logits, Float32Array, batch * classes * height * width);
  const pixels = batch * height * width;
  const labels = classes <= 256 ? new Uint8Array(pixels) : new Uint16Array(pixels);
  const scores = o.scores || o.softmax ? new Float32Array(pixels) : undefined;
  const raw: RawArgmax = {
    data: logits,
    batch,
    classes,
    height,
    width,
    nhwc,
    softmax: bool('softmax', o.softmax ?? false),
    labels,
    scores,
    threads: threadCount(o, threads),
  };
  return { kernel: 'segmentArgmax', raw, finish: () => ({ labels, scores, dims: [batch, height, width] }) };
});
/** Per-pixel class (uint8 when ≤ 256 classes, else uint16) and optional max logit / probability. */
export const segmentArgmax = argmax.async;
export const segmentArgmaxSync = argmax.sync;

const topk = both((logits: Float32Array, opts: TopKOptions): Prepared<TopKResult> => {
  const o = options<TopKOptions>('options', opts);
  const [rows, classes] = dims('dims', o.dims, 2);
  int('classes', classes, 1);
  const k = int('k', o.k, 1, classes);
  typed('logits', logits, Float32Array, rows * classes);
  const indices = new Int32Array(rows * k),
    values = new Float32Array(rows * k);
  const raw: RawTopK = {
    data: logits,
    rows,
    classes,
    k,
    softmax: bool('softmax', o.softmax ?? true),
    indices,
    values,
    threads: threadCount(o, threads),
  };
  return { kernel: 'softmaxTopK', raw, finish: () => ({ indices, values }) };
});
/** Best k classes per row (ties: lower index), with softmax probabilities (or raw values). */
export const softmaxTopK = topk.async;
export const softmaxTopKSync = topk.sync;

const ctc = both((probs: Float32Array, opts: CtcOptions): Prepared<CtcResult> => {
  const o = options<CtcOptions>('options', opts);
  const [batch, steps, classes] = dims('dims', o.dims, 3);
  int('classes', classes, 1);
  typed('probs', probs, Float32Array, batch * steps * classes);
  const offset = int('offset', o.offset ?? 1, -(2 ** 31));
  const raw: RawCtc = {
    data: probs,
    batch,
    steps,
    classes,
    lengths: o.lengths === undefined ? undefined : typed('lengths', o.lengths, Int32Array, batch),
    blank: int('blank', o.blank ?? 0, 0),
    mergeRepeats: bool('mergeRepeats', o.mergeRepeats ?? true),
    softmax: bool('softmax', o.softmax ?? false),
    threads: threadCount(o, threads),
  };
  return {
    kernel: 'ctcGreedy',
    raw,
    finish: (r: RawCtcResult) => {
      const texts: string[] = [];
      const scores = new Float32Array(batch);
      for (let b = 0; b < batch; b++) {
        let text = '',
          sum = 0,
          n = 0;
        for (let i = r.offsets[b]; i < r.offsets[b + 1]; i++) {
          const ch = o.vocabulary?.[r.ids[i] - offset];
          if (o.vocabulary && ch === undefined) continue;
          text += ch ?? '';
          sum += r.confidences[i];
          n++;
        }
        texts.push(text);
        scores[b] = n ? sum / n : 0;
      }
      return { ...r, texts, scores };
    },
  };
});
/** CTC best-path decode with per-character confidence; texts when a vocabulary is given. */
export const ctcGreedyDecode = ctc.async;
export const ctcGreedyDecodeSync = ctc.sync;

const db = both((prob: Float32Array, opts: DbOptions): Prepared<DbResult> => {
  const o = options<DbOptions>('options', opts);
  const width = int('width', o.width, 0),
    height = int('height', o.height, 0);
  typed('prob', prob, Float32Array, width * height);
  const ow = o.outputWidth === undefined ? 0 : num('outputWidth', o.outputWidth, { min: 0 });
  const oh = o.outputHeight === undefined ? 0 : num('outputHeight', o.outputHeight, { min: 0 });
  const raw: RawDb = {
    prob,
    width,
    height,
    threshold: num('threshold', o.threshold ?? 0.3),
    boxThreshold: num('boxThreshold', o.boxThreshold ?? 0.6),
    unclipRatio: num('unclipRatio', o.unclipRatio ?? 1.5, { min: 0 }),
    minSize: num('minSize', o.minSize ?? 3, { min: 0 }),
    maxCandidates: int('maxCandidates', o.maxCandidates ?? 1000, 0),
    dilate: bool('dilate', o.dilate ?? false),
    scaleX: ow && width ? ow / width : 1,
    scaleY: oh && height ? oh / height : 1,
    clipWidth: ow,
    clipHeight: oh,
    threads: threadCount(o, threads),
  };
  return { kernel: 'dbPostprocess', raw, finish: (r: RawDbResult) => ({ ...r, count: r.scores.length }) };
});
/** DB text-detection post-processing: quads (TL, TR, BR, BL) with mean-probability scores. */
export const dbPostprocess = db.async;
export const dbPostprocessSync = db.sync;

export { floatsToHalves, floatToHalf, halfToFloat, halvesToFloats } from './portable/f16.js';
export { yoloGrid } from './portable/grid.js';
export { OUT as OUT_ARRAYS, type OutAlloc, type OutArray } from './validate.js';
