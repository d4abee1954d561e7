/**
 * xpkg's binding over onnxruntime's C API (native/ort/session.cc): the whole native surface, and
 * the one place it is loaded. The stock onnxruntime-node binding hands the CUDA provider its
 * `deviceId` only, so cuDNN searches convolution algorithms exhaustively at every new input shape
 * (0.3–1.2 s each on an H200); through this binding the CUDA sessions are created with
 * `cudnn_conv_algo_search=HEURISTIC`. It dlopens the same libonnxruntime.so.1 onnxruntime-node
 * loaded, runs sessions on libuv workers, host tensors in and out. It is built only by
 * `xpkg gpu install` (the C API headers come from a pinned package there); without it, or when it
 * fails, CUDA sessions come from the stock binding and the reason is in every result (`bindings`).
 * Environment: XPKG_ORT_CAPI=off disables it; XPKG_ORT_CAPI_PATH names the .node file.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RunnerError } from '../../spec/errors.js';
import type { DType, TypedData } from '../types.js';
import { ONNX_TYPE } from './onnx-proto.js';
import { TYPED } from './ort-tensor.js';

// ---- the native surface ---------------------------------------------------------------------
interface NativeMeta {
  name: string;
  /** ONNX element type (absent: not a tensor). */
  type?: number;
  shape?: (number | string)[];
}
interface NativeTensor {
  name: string;
  type: number;
  dims: number[];
  data: TypedData;
}
interface NativeOutput {
  name: string;
  type: number;
  dims: number[];
  data: ArrayBuffer;
}
/** The one options object session.cc reads. */
export interface CapiCreateOptions {
  provider: 'cpu' | 'cuda';
  /** Provider options as onnxruntime's UpdateCUDAProviderOptions takes them (key, value). */
  providerOptions: [string, string][];
  intraOpThreads: number;
  interOpThreads: number;
  /** onnxruntime's GraphOptimizationLevel: 0, 1, 2, 99. */
  graphOptimization: number;
  logSeverity: number;
  sequential: boolean;
  memArena: boolean;
  memPattern: boolean;
  config: [string, string][];
  profilePrefix?: string;
  /** Run as a CUDA graph over fixed device buffers (one input shape; session.cc's Graph). */
  cudaGraph?: boolean;
  deviceId?: number;
  /** Symbolic input dimensions fixed to these sizes (onnxruntime's free dimension overrides). */
  freeDims?: [string, string][];
  /** cudaSetDeviceFlags' scheduling flag (1 spin, 2 yield, 4 blocking sync), set once per process; absent: CUDA's default. */
  cudaSchedule?: 1 | 2 | 4;
}
/** A graph session's state: `off`, `pending` (not run yet), `captured`, or `failed: <why>` (it runs without). */
export type GraphState = string;
interface NativeSession {
  readonly inputs: NativeMeta[];
  readonly outputs: NativeMeta[];
  run(inputs: NativeTensor[], outputNames: string[]): Promise<NativeOutput[]>;
  release(): void;
  endProfiling(): string;
  graphState(): GraphState;
}
interface NativeCapi {
  /** Loads onnxruntime at this path (the process's copy), returns its version. */
  init(libonnxruntime: string): string;
  create(bytes: Uint8Array, options: CapiCreateOptions): Promise<NativeSession>;
  /** The C API version the binding was compiled against. */
  readonly apiVersion: number;
}

export type ConvAlgoSearch = 'HEURISTIC' | 'DEFAULT' | 'EXHAUSTIVE';

// ---- loading ----------------------------------------------------------------------------------
/** Why the binding is not used: `off` (XPKG_ORT_CAPI=off), `not-built`, `load-failed` (the .node or onnxruntime). */
export type CapiUnavailable = { code: 'off' | 'not-built' | 'load-failed'; reason: string };

const HERE = dirname(fileURLToPath(import.meta.url));
/** The package root: this file is dist/runner/backends/ort-capi.js, or runner/backends/ort-capi.ts under tsx. */
export const PACKAGE_ROOT =
  [resolve(HERE, '..', '..', '..'), resolve(HERE, '..', '..')].find((d) =>
    existsSync(join(d, 'native', 'ort', 'binding.gyp')),
  ) ?? resolve(HERE, '..', '..', '..');
/** Where `xpkg gpu install` builds the binding. */
export const CAPI_BUILT = join(PACKAGE_ROOT, 'native', 'ort', 'build', 'Release', 'xpkg_ort.node');

export function capiPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.XPKG_ORT_CAPI_PATH || CAPI_BUILT;
}

let loaded: { capi: NativeCapi; version: string } | CapiUnavailable | undefined;

/**
 * The binding on the onnxruntime library in `libDir` (onnxruntime-node's binding folder), loaded
 * once per process; or why not.
 */
export function loadCapi(
  libDir: string,
  env: NodeJS.ProcessEnv = process.env,
): { capi: NativeCapi; version: string } | CapiUnavailable {
  if (loaded) return loaded;
  if (env.XPKG_ORT_CAPI === 'off') return (loaded = { code: 'off', reason: 'XPKG_ORT_CAPI=off' });
  const path = capiPath(env);
  if (!existsSync(path))
    return (loaded = {
      code: 'not-built',
      reason: `${path} is not built (\`xpkg gpu install\` builds it; it needs a C++ compiler)`,
    });
  const lib = join(libDir, process.platform === 'darwin' ? 'libonnxruntime.1.dylib' : 'libonnxruntime.so.1');
  try {
    const capi = createRequire(import.meta.url)(path) as NativeCapi;
    const version = capi.init(lib);
    return (loaded = { capi, version });
  } catch (e) {
    return (loaded = {
      code: 'load-failed',
      reason: `${path} on ${lib}: ${String((e as Error).message ?? e).split('\n')[0]}`.slice(0, 500),
    });
  }
}

/** Forgets the loaded state (tests that load with another environment). */
export function resetCapi(): void {
  loaded = undefined;
}

// ---- sessions -----------------------------------------------------------------------------------
const DTYPE_OF = new Map<number, DType>(Object.entries(ONNX_TYPE).map(([k, v]) => [v, k as DType]));

/** A tensor as the sessions here take and give it (onnxruntime-common's Tensor has these fields). */
export interface CapiTensor {
  type: string;
  dims: readonly number[];
  data: unknown;
}

/** What OrtModelSession needs of a session, met by the stock binding's InferenceSession and by CapiSession. */
export interface OrtSessionLike {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: readonly { name: string; isTensor: boolean; type?: unknown; shape?: readonly unknown[] }[];
  /** The outputs' likewise (the stock binding's since onnxruntime 1.21). */
  readonly outputMetadata?: OrtSessionLike['inputMetadata'];
  run(feeds: Record<string, CapiTensor>): Promise<Record<string, unknown>>;
  endProfiling(): void;
  release(): Promise<void>;
}

/** A session of the binding, shaped like the stock binding's InferenceSession where xpkg uses it. */
export class CapiSession implements OrtSessionLike {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: OrtSessionLike['inputMetadata'];
  readonly outputMetadata: OrtSessionLike['inputMetadata'];
  #s: NativeSession;

  constructor(s: NativeSession) {
    this.#s = s;
    this.inputNames = s.inputs.map((m) => m.name);
    this.outputNames = s.outputs.map((m) => m.name);
    const meta = (ms: NativeMeta[]) =>
      ms.map((m) => {
        const type = m.type === undefined ? undefined : DTYPE_OF.get(m.type);
        return type && m.shape
          ? { name: m.name, isTensor: true, type, shape: m.shape }
          : { name: m.name, isTensor: false };
      });
    this.inputMetadata = meta(s.inputs);
    this.outputMetadata = meta(s.outputs);
  }

  async run(feeds: Record<string, CapiTensor>): Promise<Record<string, CapiTensor>> {
    const inputs = Object.entries(feeds).map(([name, t]) => {
      const type = ONNX_TYPE[t.type as DType];
      if (type === undefined)
        throw new RunnerError('E_RUN_INPUT', `input ${name}: unsupported dtype ${t.type}`, { input: name });
      return { name, type, dims: [...t.dims], data: t.data as TypedData };
    });
    const out = await this.#s.run(inputs, [...this.outputNames]);
    const result: Record<string, CapiTensor> = {};
    for (const o of out) {
      const type = DTYPE_OF.get(o.type);
      if (!type) throw new RunnerError('E_RUN_BACKEND', `output ${o.name} has ONNX element type ${o.type}`);
      const ctor = TYPED[type];
      result[o.name] = { type, dims: o.dims, data: new ctor(o.data, 0, o.data.byteLength / ctor.BYTES_PER_ELEMENT) };
    }
    return result;
  }

  endProfiling(): void {
    this.#s.endProfiling();
  }

  /** Whether the session runs as a CUDA graph (its state; `off` unless it was asked for). */
  graphState(): GraphState {
    return this.#s.graphState();
  }

  async release(): Promise<void> {
    this.#s.release();
  }
}

/** Creates a session of `bytes` through the binding. */
export async function createCapiSession(
  capi: NativeCapi,
  bytes: Uint8Array,
  options: CapiCreateOptions,
): Promise<CapiSession> {
  return new CapiSession(await capi.create(bytes, options));
}
