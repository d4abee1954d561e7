/**
 * The options object xpkg's binding over onnxruntime's C API (ort-capi.ts) creates a session with:
 * the stock binding's session options translated, plus the CUDA provider settings the stock
 * binding cannot pass (cuDNN's search, TF32, workspace, arena growth).
 */
import { dataShapedOps } from './onnx-inputs.js';
import type { OrtSessionOptions } from './onnxruntime.js';
import type { CapiCreateOptions, ConvAlgoSearch } from './ort-capi.js';

/** CUDA provider settings xpkg's binding passes (onnxruntime's CUDA provider options). */
export interface CudaTuning {
  convAlgoSearch: ConvAlgoSearch;
  /** Float32 convolutions and matrix products as TF32 (`use_tf32`; onnxruntime's default: on). */
  tf32: boolean;
  /**
   * cuDNN may use as much workspace as an algorithm asks (`cudnn_conv_use_max_workspace`;
   * onnxruntime's default on, xpkg's off: on the H200 the OCR package's float32 recogniser, a
   * session per input shape, ran out of device memory in its arenas with it on).
   */
  convMaxWorkspace: boolean;
  /**
   * How the device arena grows (`arena_extend_strategy`): by powers of two (onnxruntime's default)
   * or by what is asked (xpkg's default, for the same reason).
   */
  arenaExtend: 'power-of-two' | 'same-as-requested';
  /**
   * Sessions made for one input shape (shape-sessions.ts) run as a CUDA graph: fixed device buffers,
   * one captured graph replayed per run instead of a launch per node (`enable_cuda_graph`; the
   * binding's Graph). On the H200 the small models here spent most of a run launching nodes.
   */
  cudaGraph: boolean;
  /**
   * Further CUDA provider options, passed as they are (XPKG_ORT_CUDA_OPTIONS=`k=v;k=v`, e.g.
   * `prefer_nhwc=1`): for side-by-side measurements of settings xpkg does not choose itself.
   */
  extra: [string, string][];
  /**
   * How a host thread waits for the GPU (cudaSetDeviceFlags, once per process): `auto` is CUDA's
   * default (spin while the process has fewer contexts than cores); `spin`, `yield`, `blocking`
   * (sleep until the device signals, freeing the core). XPKG_ORT_CUDA_SYNC, for measurements.
   */
  sync: 'auto' | 'spin' | 'yield' | 'blocking';
}

/** `k=v;k=v` (XPKG_ORT_CUDA_OPTIONS, XPKG_ORT_SESSION_CONFIG) as pairs; entries without a key and `=` are dropped. */
export function keyValues(v: string | undefined): [string, string][] {
  return (v ?? '')
    .split(';')
    .map((e) => e.trim())
    .filter((e) => e.indexOf('=') > 0)
    .map((e) => [e.slice(0, e.indexOf('=')).trim(), e.slice(e.indexOf('=') + 1).trim()] as [string, string]);
}

/**
 * The binding's CUDA settings: options first, then XPKG_ORT_CONV_SEARCH, XPKG_ORT_TF32 (0/1),
 * XPKG_ORT_CONV_MAX_WS (0/1), XPKG_ORT_ARENA (`power-of-two`), XPKG_ORT_CUDA_GRAPH (0/1), for side-by-side
 * measurements on a GPU.
 * TF32 stays on: the float32 recogniser took 48 ms a page without it on the H200, 16 ms with it,
 * the same text on the benchmark page. Neither kept the large test page's one borderline space
 * every time (a tie made by the padding of the recogniser's width bucket, which the model now
 * masks: fixtures/onnx-pad-mask.ts; since then the GPU suite reads that page as the CPU does).
 */
export function cudaTuning(o: Partial<CudaTuning> = {}, env: NodeJS.ProcessEnv = process.env): CudaTuning {
  const flag = (v: string | undefined, d: boolean) => (v === '1' ? true : v === '0' ? false : d);
  const search = env.XPKG_ORT_CONV_SEARCH;
  return {
    convAlgoSearch:
      o.convAlgoSearch ??
      (search === 'DEFAULT' || search === 'EXHAUSTIVE' || search === 'HEURISTIC' ? search : 'HEURISTIC'),
    tf32: o.tf32 ?? flag(env.XPKG_ORT_TF32, true),
    convMaxWorkspace: o.convMaxWorkspace ?? flag(env.XPKG_ORT_CONV_MAX_WS, false),
    arenaExtend: o.arenaExtend ?? (env.XPKG_ORT_ARENA === 'power-of-two' ? 'power-of-two' : 'same-as-requested'),
    cudaGraph: o.cudaGraph ?? flag(env.XPKG_ORT_CUDA_GRAPH, true),
    extra: o.extra ?? keyValues(env.XPKG_ORT_CUDA_OPTIONS),
    sync:
      o.sync ??
      (['spin', 'yield', 'blocking'].includes(env.XPKG_ORT_CUDA_SYNC ?? '')
        ? (env.XPKG_ORT_CUDA_SYNC as CudaTuning['sync'])
        : 'auto'),
  };
}

/**
 * A one-shot session's tuning (SessionOptions.oneShot): cuDNN's default algorithm for every
 * convolution instead of a search, unless a search was asked for explicitly, and no CUDA graph. On the
 * H200 a HEURISTIC search cost the float32 recogniser ~0.5 s at each new input shape (steady runs
 * 4–7 ms), DEFAULT none (steady ~100 ms): `xpkg run` of the OCR package on one 1080p page took
 * 1.9 s instead of 3.3–3.6 s, the detector 1.0–1.1 s instead of 1.2–1.3 s.
 */
export function oneShotTuning(t: CudaTuning, searchAsked: boolean): CudaTuning {
  return { ...t, convAlgoSearch: searchAsked ? t.convAlgoSearch : 'DEFAULT', cudaGraph: false };
}

/** Whether cuDNN's search was chosen by the caller (an option or XPKG_ORT_CONV_SEARCH) rather than defaulted. */
export function searchAsked(o: { convAlgoSearch?: string }, env: NodeJS.ProcessEnv = process.env): boolean {
  return (
    o.convAlgoSearch !== undefined || ['DEFAULT', 'EXHAUSTIVE', 'HEURISTIC'].includes(env.XPKG_ORT_CONV_SEARCH ?? '')
  );
}

/**
 * Whether a model's per-shape sessions run as CUDA graphs: on CUDA, tuned so, through xpkg's binding
 * (`binding`: whether it loads, asked only then), and only for a model without data-shaped ops — a
 * replay repeats the shapes of the run it captured (onnx-inputs.ts dataShapedOps).
 */
export function cudaGraphsFor(o: {
  provider: string;
  tuning: CudaTuning;
  binding: () => boolean;
  model: Uint8Array;
}): boolean {
  return o.provider === 'cuda' && o.tuning.cudaGraph && o.binding() && dataShapedOps(o.model).length === 0;
}

/**
 * The tuning of one model's sessions: the backend's, or its one-shot tuning, without graphs where
 * the runner does not pre-warm.
 */
export function sessionTuning(
  base: CudaTuning,
  oneShot: CudaTuning,
  o: { oneShot?: boolean; cudaGraphs?: boolean },
): CudaTuning {
  const t = o.oneShot ? oneShot : base;
  return o.cudaGraphs === false ? { ...t, cudaGraph: false } : t;
}

const CUDA_SCHEDULE = { spin: 1, yield: 2, blocking: 4 } as const;
const GRAPH_LEVEL = { disabled: 0, basic: 1, extended: 2, layout: 3, all: 99 } as const;

/** The binding's options object for the options a stock session would be created with. */
export function capiOptions(
  create: OrtSessionOptions & { profileFilePrefix?: string; enableProfiling?: boolean },
  tuning: CudaTuning = cudaTuning({}, {}),
  /** A session for this one input shape: its symbolic dimensions fixed, and a CUDA graph where `graph` and tuning say so. */
  shape?: { freeDims: [string, number][]; graph?: boolean },
): CapiCreateOptions {
  const cuda = create.executionProviders[0] === 'cuda';
  return {
    ...(shape
      ? {
          freeDims: shape.freeDims.map(([k, v]) => [k, String(v)] as [string, string]),
          ...(cuda && tuning.cudaGraph && shape.graph ? { cudaGraph: true, deviceId: 0 } : {}),
        }
      : {}),
    provider: cuda ? 'cuda' : 'cpu',
    ...(cuda && tuning.sync !== 'auto' ? { cudaSchedule: CUDA_SCHEDULE[tuning.sync] } : {}),
    providerOptions: cuda
      ? [
          ['device_id', '0'],
          ['cudnn_conv_algo_search', tuning.convAlgoSearch],
          ['use_tf32', tuning.tf32 ? '1' : '0'],
          ['cudnn_conv_use_max_workspace', tuning.convMaxWorkspace ? '1' : '0'],
          ['arena_extend_strategy', tuning.arenaExtend === 'power-of-two' ? 'kNextPowerOfTwo' : 'kSameAsRequested'],
          ...tuning.extra,
        ]
      : [],
    intraOpThreads: create.intraOpNumThreads,
    interOpThreads: create.interOpNumThreads,
    graphOptimization: GRAPH_LEVEL[create.graphOptimizationLevel],
    logSeverity: create.logSeverityLevel,
    sequential: create.executionMode === 'sequential',
    memArena: create.enableCpuMemArena,
    memPattern: create.enableMemPattern,
    // the stock binding's `extra` entries are session config entries under their dotted names
    // XPKG_ORT_SESSION_CONFIG=`k=v;…` adds entries (full dotted names), for side-by-side measurements
    config: [
      ...Object.entries(create.extra.session).map(([k, v]) => [`session.${k}`, String(v)] as [string, string]),
      ...keyValues(process.env.XPKG_ORT_SESSION_CONFIG),
    ],
    ...(create.enableProfiling && create.profileFilePrefix ? { profilePrefix: create.profileFilePrefix } : {}),
  };
}
