/**
 * Interfaces shared by host detection, variant selection, backends and the pipeline executor.
 * Interfaces first: implementations live beside this file and depend on these shapes only.
 */
import type { Offloader } from '../fabric/contract.js';
import type { Manifest, Variant } from '../spec/schema.js';

export type DType = 'float32' | 'float16' | 'int64' | 'int32' | 'uint8' | 'int8' | 'bool';
export type TypedData = Float32Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array | Int8Array;

/** Backend-neutral tensor: row-major data plus dims. */
export interface Tensor {
  type: DType;
  dims: readonly number[];
  data: TypedData;
}

/** A loaded model, ready to run. */
export interface ModelSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /**
   * Declared inputs where the backend knows them: element type and shape (numbers are fixed
   * dims; strings, or -1, are dims the model leaves open). The runner checks them against its budget.
   */
  readonly inputShapes?: readonly { name: string; type: string; shape: readonly (number | string)[] }[];
  /** Declared outputs where the backend knows them, as `inputShapes` (an empty batch's outputs take their type and rank). */
  readonly outputShapes?: readonly { name: string; type: string; shape: readonly (number | string)[] }[];
  run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>>;
  release(): Promise<void>;
  /** The execution provider the model runs on (onnxruntime: the first provider of the session). */
  readonly provider?: string;
  /** Providers of the variant that failed to load before `provider` did, with why. */
  readonly providerFallbacks?: readonly ProviderFallback[];
  /** Nodes per provider that ran them (`{ cuda: 120, cpu: 4 }`), once known (after a profiled first run). */
  readonly nodesByProvider?: Readonly<Record<string, number>>;
  /** Runtime sessions the model holds (one per input shape on an accelerator). */
  readonly sessions?: number;
  /** Its sessions by CUDA graph state (`captured`, `pending`, `failed: <why>`), where graphs were asked for. */
  readonly graphs?: Readonly<Record<string, number>>;
  /** The native binding the sessions came from, where the backend has a choice (onnxruntime on CUDA). */
  readonly binding?: SessionBinding;
}

export interface SessionBinding {
  /** `xpkg-ort-capi`: xpkg's binding over onnxruntime's C API; `onnxruntime-node`: the stock one. */
  name: 'xpkg-ort-capi' | 'onnxruntime-node';
  /** cuDNN's convolution algorithm search the CUDA sessions use. */
  convAlgoSearch?: 'HEURISTIC' | 'DEFAULT' | 'EXHAUSTIVE';
  /** xpkg's binding, CUDA: its other provider settings (backends/capi-options.ts CudaTuning). */
  tf32?: boolean;
  convMaxWorkspace?: boolean;
  arenaExtend?: 'power-of-two' | 'same-as-requested';
  /** Sessions made for one input shape run as CUDA graphs (see ProviderReport.graphs for what each did). */
  cudaGraph?: boolean;
  /** Why the stock binding was used instead of xpkg's (never silent). */
  fallback?: { code: string; reason: string };
}

export interface ProviderFallback {
  provider: string;
  reason: string;
}

export interface SessionOptions {
  /** Intra-op threads; 0 or undefined lets the backend choose. */
  threads?: number;
  /** onnxruntime graph optimisation level. */
  graphOptimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * Folder of the cache of models the backend optimised for this machine, or false for none;
   * absent: the backend's default (onnxruntime-node: platform/cache-dir.ts). See runner/backends/ort-cache.ts.
   */
  modelCache?: string | false;
  /** Providers not to use for this load (ones whose session of the variant failed while running). */
  excludeProviders?: readonly string[];
  /**
   * The most runtime sessions a model on an accelerator may hold, one per input shape (the CUDA
   * provider redoes its per-shape set-up whenever the shape changes; runner/backends/shape-sessions.ts).
   */
  shapeSessions?: number;
  /**
   * Whether per-shape sessions on CUDA may run as CUDA graphs where the backend can (default true).
   * A graph is captured on a session's first run at its shape, and its model keeps one session more
   * (the first serves no shape): costs that pre-warming in `open` pays once. The runner turns graphs
   * off when it does not pre-warm, so a one-shot run does not pay them on its way to its result.
   */
  cudaGraphs?: boolean;
  /**
   * The session runs a few times and is released (RunnerOptions.oneShot): the backend favours its
   * first run over steady speed (onnxruntime on CUDA: cuDNN's default algorithms, no search and no
   * graph; capi-options.ts oneShotTuning).
   */
  oneShot?: boolean;
}

/** What a backend can load, decided from the detected host. */
export interface BackendInit {
  ok: boolean;
  /** Runtime version when it loaded. */
  version?: string;
  /** Execution providers / devices that actually load. */
  providers?: string[];
  /** Why it failed to initialise. */
  reason?: string;
}

/**
 * A runtime that can run some variants (onnxruntime-node now; TensorRT, RKNN later). Backends
 * register with a priority; the registry initialises each once and records failures.
 */
export interface Backend {
  readonly name: string;
  /** Manifest `runtime` values this backend runs. */
  readonly runtimes: readonly string[];
  init(): Promise<BackendInit>;
  /**
   * Loads a variant from its files, verified by `files` as they are read (a Map: bytes the caller
   * already trusts). A backend reads only what the model uses and hands the runtime nothing else.
   */
  load(
    variant: Variant,
    files: VariantFiles | ReadonlyMap<string, Buffer>,
    options: SessionOptions,
  ): Promise<ModelSession>;
}

/** A variant's files, each checked against its manifest digest as it is read. */
export interface VariantFiles {
  /** Size in bytes of one of the variant's files. */
  size(path: string): number;
  /** One file whole (files that fit one Buffer). */
  read(path: string): Promise<Buffer>;
  /** One file in chunks, of any size; throws after the last chunk if the bytes do not match, so discard them then. */
  stream(path: string, sink: (chunk: Buffer) => Promise<void>): Promise<void>;
  /** SHA-256 of one of the files as the signed manifest records it (absent for unsigned sources). */
  sha256?(path: string): string;
}

/** Per-stage latencies in milliseconds. */
export type Timings = Record<string, number>;

/**
 * The runner's resource ceilings (runner/pipeline/budget.ts has the defaults and why): checked
 * from the manifest alone when a package is opened, against each model's declared input shape
 * at load, and before every buffer a step allocates from its input's size.
 */
export interface RunnerBudget {
  /** The most pixels of one image: decoded, or made by a step (a resize, a crop, a tensor's plane). */
  maxPixels?: number;
  /** The most bytes of one tensor value (a batch, or a list of per-item tensors, counted whole). */
  maxTensorBytes?: number;
}

/** What the pipeline executor needs from the runner; bytes handed out are verified. */
export interface PipelineContext {
  readonly manifest: Manifest;
  /** Ceilings for what the pipeline allocates (default: DEFAULT_BUDGET). */
  readonly budget?: RunnerBudget;
  /** The loaded session of a model (by model id); the runner chose its variant. */
  session(modelId: string): Promise<ModelSession>;
  /**
   * The variant `session(modelId)` runs, loading it if needed: its step patches apply to the run
   * (FORMAT.md §4.1). A context without it runs the manifest's steps as they are.
   */
  variant?(modelId: string): Promise<Variant>;
  /** Verified bytes of an asset, by asset id. */
  asset(assetId: string): Promise<Buffer>;
  /** Adds elapsed milliseconds to a named stage. */
  time(stage: string, ms: number): void;
  /** A loaded package script (by path), running in the sandbox; absent where scripts cannot run. */
  script?(path: string): Promise<ScriptHost>;
  /** The package's id (content address of the signed version): what an offload names. */
  readonly packageId?: string;
  /** Runs a split model's tail on a peer (fabric/); absent: tails run here. The runner opens no socket itself. */
  readonly offloader?: Offloader;
  /** Whether this host has a variant of the model it may load (absent: assume it has). */
  canRun?(modelId: string): boolean;
}

/** Where the two parts of a split model ran in one run (the `split` op). */
export interface SplitPlacement {
  head: { where: 'local'; variant?: string; provider?: string };
  tail: {
    /** `local`, or the id of the peer that ran it. */
    where: string;
    variant?: string;
    provider?: string;
    /** Bytes sent to and received from the peer (offloaded runs only). */
    bytesOut?: number;
    bytesIn?: number;
    ms: number;
  };
  /** Why the tail was (or was not) offloaded, the head's score when a condition declares one, and a failed offload. */
  decision: {
    offload: boolean;
    reason: string;
    score?: number;
    fallback?: { code: string; message: string };
  };
}

/** A package script loaded in the sandbox. */
export interface ScriptHost {
  call(hook: string, args: Record<string, unknown>, options?: { deadlineMs?: number }): Promise<unknown>;
}

/** An image input as the library accepts it. */
export type ImageInput = string | Buffer | { data: Uint8Array; width: number; height: number; channels: 1 | 2 | 3 | 4 };
