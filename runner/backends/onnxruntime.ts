/**
 * The onnxruntime-node backend. `init()` loads the native binding (lazily, so a broken install is a
 * recorded failure, not an import crash) and probes every execution provider the binding lists by
 * creating a real session on a tiny model: a provider is reported only if that works. The CPU
 * provider, part of the library the binding loads, is reported once the binding loads. `load()`
 * creates a session from verified bytes only, with deliberate session options.
 */
import { existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import { cacheRoot } from '../../platform/cache-dir.js';
import { RunnerError } from '../../spec/errors.js';
import type { Variant } from '../../spec/schema.js';
import {
  type AccelCheck,
  type AccelEnv,
  type AccelProvider,
  BLOCKING,
  checkAccel,
  probeAccelEnv,
  withBinding,
} from '../host-accel.js';
import { physicalCores } from '../host-cpu.js';
import { usableProviders, variantProviders } from '../providers.js';
import type {
  Backend,
  BackendInit,
  ModelSession,
  ProviderFallback,
  SessionBinding,
  SessionOptions,
  Tensor,
  VariantFiles,
} from '../types.js';
import {
  type CudaTuning,
  capiOptions,
  cudaGraphsFor,
  cudaTuning,
  oneShotTuning,
  searchAsked,
  sessionTuning,
} from './capi-options.js';
import { filesFromMap, type PrivateFolder, writePrivateFolder } from './model-files.js';
import { externalFiles } from './onnx-external.js';
import { hasStaticInputs } from './onnx-inputs.js';
import { OrtModelCache } from './ort-cache.js';
import { type ConvAlgoSearch, createCapiSession, loadCapi, type OrtSessionLike } from './ort-capi.js';
import { ortLogLevel, quietOnnxruntime } from './ort-env.js';
import { profileFolder, readPlacement } from './ort-placement.js';
import { checkTensor, fromOrtTensor } from './ort-tensor.js';
import { probeModel } from './probe-model.js';
import { freeDimsOf, ShapeSessions, shapeKey } from './shape-sessions.js';

export { checkTensor, fromOrtTensor } from './ort-tensor.js';

type Ort = typeof import('onnxruntime-node');

export interface OrtInit extends BackendInit {
  /** Providers the binding lists that did not load here, with why (code: host-accel's reason code, or load-failed). */
  unavailable: { name: string; reason: string; code?: string }[];
}

/** The session options xpkg sets, all of them, so runs are reproducible and explainable. */
export type OrtSessionOptions = Required<
  Pick<
    InferenceSession.SessionOptions,
    | 'intraOpNumThreads'
    | 'interOpNumThreads'
    | 'graphOptimizationLevel'
    | 'executionMode'
    | 'enableCpuMemArena'
    | 'enableMemPattern'
    | 'logSeverityLevel'
  >
> & {
  executionProviders: string[];
  extra: { session: { 'intra_op.allow_spinning': '0' } };
};

/**
 * Session options for a variant: intra-op threads from `options.threads` or the physical core
 * count (hyper-threads slow GEMM-bound models down), one inter-op thread with sequential execution
 * (the pipeline already runs models one after another), full graph optimisation by default.
 * Each session has its own intra-op pool, whose threads do not spin waiting for work
 * (`session.intra_op.allow_spinning` 0): spinning after a run took the CPU from the next model and
 * from the native kernels (OCR on 2 cores: a one-line recognition 30–57 ms instead of 17), and
 * spinning within a run cost a cold OCR `xpkg run` 8–13% more CPU for a wall time within ±4% at
 * load 3–5, and much longer under heavy load (at ~6: 1780 ms CPU and 2.8 s without, 2216 ms and
 * 4.4 s with).
 */
export function ortSessionOptions(
  variant: Variant,
  options: SessionOptions,
  availableProviders: readonly string[],
): OrtSessionOptions {
  const excluded = options.excludeProviders ?? [];
  const executionProviders = usableProviders(variant, availableProviders).filter((p) => !excluded.includes(p));
  if (!executionProviders.length) {
    throw new RunnerError(
      'E_RUN_LOAD',
      `variant ${variant.id} needs execution provider ${variantProviders(variant).join(' or ')}, which does not load here (available: ${availableProviders.join(', ')}${excluded.length ? `; failed while running: ${excluded.join(', ')}` : ''})`,
      {
        variant: variant.id,
        wanted: variantProviders(variant),
        available: [...availableProviders],
        excluded: [...excluded],
      },
    );
  }
  const threads = options.threads;
  if (threads !== undefined && (!Number.isInteger(threads) || threads < 0))
    throw new RunnerError('E_RUN_LOAD', `threads must be a non-negative integer, not ${threads}`);
  return {
    executionProviders,
    intraOpNumThreads: threads || physicalCores(),
    interOpNumThreads: 1,
    graphOptimizationLevel: options.graphOptimization ?? 'all',
    executionMode: 'sequential',
    enableCpuMemArena: true,
    // load() turns it off for models with a dynamic input dimension (onnx-inputs.ts says why)
    enableMemPattern: true,
    logSeverityLevel: 3,
    extra: { session: { 'intra_op.allow_spinning': '0' } },
  };
}

/** A loaded onnxruntime session. Release it (or `await using`) to free native memory. */
export class OrtModelSession implements ModelSession, AsyncDisposable {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputShapes: ModelSession['inputShapes'];
  readonly outputShapes: ModelSession['outputShapes'];
  /** The provider the session was created for: nodes it cannot take run on the CPU provider. */
  readonly provider: string;
  /** Nodes per provider, known after the first run of a profiled session. */
  nodesByProvider: Record<string, number> | undefined;
  #profileDir: string | null;
  #session: OrtSessionLike | null;
  readonly #pool: ShapeSessions<OrtSessionLike>;
  readonly #profiled: (s: OrtSessionLike) => boolean;
  readonly #ort: Ort;
  #folder: PrivateFolder | null;
  /** The model bytes onnxruntime reads in place (a cached ORT-format graph), kept until release. */
  #modelBytes: Uint8Array | null = null;
  /** `hit`: created from this machine's cache of optimised models; `stored`: its graph was cached now. */
  optimizedCache: 'hit' | 'stored' | undefined;

  constructor(
    ort: Ort,
    session: OrtSessionLike,
    readonly variantId: string,
    /** The options the session was created with, for explain and bench output. */
    readonly options: OrtSessionOptions,
    /** The private folder the model was loaded from, when it could not be removed after loading. */
    folder: PrivateFolder | null = null,
    /** Providers of the variant that failed to load before this session's first one did. */
    readonly providerFallbacks: readonly ProviderFallback[] = [],
    /** Where the session's first run writes its profile (node placement), when it is profiled. */
    profileDir: string | null = null,
    /**
     * Sessions for further input shapes (shape-sessions.ts): how to make one, the most to hold,
     * whether the first session serves the first shape (not with CUDA graphs), and which session's
     * first run writes the placement profile (default: the first session's).
     */
    perShape: {
      create: (key: string) => Promise<OrtSessionLike>;
      limit: number;
      firstTakesShape?: boolean;
      profiled?: (s: OrtSessionLike) => boolean;
    } | null = null,
    /** Which binding made the sessions (CUDA: xpkg's C API binding, or the stock one and why). */
    readonly binding?: SessionBinding,
  ) {
    this.#profileDir = profileDir;
    this.#pool = new ShapeSessions(session, perShape?.create ?? null, perShape?.limit ?? 1, perShape?.firstTakesShape);
    this.#profiled = perShape?.profiled ?? ((s) => s === this.#pool.first);
    this.#folder = folder;
    this.#ort = ort;
    this.#session = session;
    this.provider = options.executionProviders[0];
    this.inputNames = [...session.inputNames];
    this.outputNames = [...session.outputNames];
    const declared = (ms: OrtSessionLike['inputMetadata'] | undefined) =>
      (ms ?? []).flatMap((m) =>
        m.isTensor ? [{ name: m.name, type: String(m.type), shape: [...(m.shape as (number | string)[])] }] : [],
      );
    this.inputShapes = declared(session.inputMetadata);
    this.outputShapes = declared(session.outputMetadata);
  }

  /**
   * Sessions by CUDA graph state (xpkg's binding: `captured`, `pending`, `failed: <why>`); empty
   * where no session was asked to run as a graph.
   */
  get graphs(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const s of this.#session ? this.#pool.all() : []) {
      const state = (s as { graphState?: () => string }).graphState?.() ?? 'off';
      if (state !== 'off') out[state] = (out[state] ?? 0) + 1;
    }
    return out;
  }

  /** Keeps `bytes` alive while the session is: it was created to read them in place. */
  holdModelBytes(bytes: Uint8Array): void {
    this.#modelBytes = bytes;
  }

  /** onnxruntime sessions held: one per input shape seen, on an accelerator (shape-sessions.ts). */
  get sessions(): number {
    return this.#session ? this.#pool.count : 0;
  }

  async run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    if (!this.#session) throw new RunnerError('E_RUN_BACKEND', `session of variant ${this.variantId} was released`);
    const missing = this.inputNames.filter((n) => !(n in feeds));
    const extra = Object.keys(feeds).filter((n) => !this.inputNames.includes(n));
    if (missing.length || extra.length) {
      throw new RunnerError(
        'E_RUN_INPUT',
        `model ${this.variantId} takes inputs ${this.inputNames.join(', ')}${missing.length ? `; missing ${missing.join(', ')}` : ''}${extra.length ? `; unknown ${extra.join(', ')}` : ''}`,
        { expected: this.inputNames, missing, extra },
      );
    }
    const ortFeeds: Record<string, OrtTensor> = {};
    for (const [name, t] of Object.entries(feeds)) {
      checkTensor(name, t);
      // the ort Tensor keeps a reference to t.data: no copy on the way in
      ortFeeds[name] = new this.#ort.Tensor(t.type, t.data as never, t.dims);
    }
    const session = await this.#pool.pick(shapeKey(this.inputNames, (n) => feeds[n].dims));
    let out: Record<string, unknown>;
    try {
      out = await session.run(ortFeeds);
    } catch (e) {
      // phase 'run': the session loaded and then failed, which the runner may answer with a fallback
      throw new RunnerError(
        'E_RUN_BACKEND',
        `onnxruntime failed running ${this.variantId} on ${this.provider}: ${(e as Error).message}`,
        { variant: this.variantId, provider: this.provider, phase: 'run' },
        { cause: e },
      );
    }
    const dir = this.#profileDir;
    if (dir && this.#profiled(session)) {
      this.#profileDir = null;
      try {
        session.endProfiling();
        this.nodesByProvider = readPlacement(dir) ?? undefined;
      } catch {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    const result: Record<string, Tensor> = {};
    for (const [name, value] of Object.entries(out)) result[name] = fromOrtTensor(name, value as OrtTensor);
    return result;
  }

  async release(): Promise<void> {
    const s = this.#session;
    const folder = this.#folder;
    this.#session = null;
    this.#folder = null;
    if (this.#profileDir) rmSync(this.#profileDir, { recursive: true, force: true });
    this.#profileDir = null;
    try {
      await this.#pool.releaseOthers();
      await s?.release();
    } finally {
      // let go of the bytes only once onnxruntime no longer reads them
      if (this.#modelBytes) this.#modelBytes = null;
      await folder?.remove();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}

/** Shared-library file of an out-of-tree provider, as onnxruntime names it on this platform. */
function providerLibrary(name: string): string {
  if (process.platform === 'win32') return `onnxruntime_providers_${name}.dll`;
  if (process.platform === 'darwin') return `libonnxruntime_providers_${name}.dylib`;
  return `libonnxruntime_providers_${name}.so`;
}

export interface OnnxruntimeBackendOptions {
  /** Registry name (default `onnxruntime-node`). */
  name?: string;
  /** Module to load (default `onnxruntime-node`); another build of the same API can be named here. */
  module?: string;
  /** What the CUDA/WebGPU pre-checks read (default: probed on this machine at init). */
  accelEnv?: AccelEnv;
  /**
   * Providers `load` tries even when init found them unusable, so that their failure is
   * onnxruntime's own (recorded by the fallback): for diagnosis and for tests of the fallback.
   */
  attemptProviders?: string[];
  /**
   * Profile a session's first run to count its nodes per provider: `accelerated` (default) when
   * its first provider is not the CPU, `always`, or `never`.
   */
  placement?: 'accelerated' | 'always' | 'never';
  /**
   * Run every variant on these providers, in order, instead of the ones it declares: for benchmarks
   * and diagnosis (a CPU variant's model on cuda), never chosen by selection.
   */
  forceProviders?: string[];
  /**
   * Where a model gets one session per input shape (shape-sessions.ts), up to `SessionOptions.shapeSessions`:
   * `accelerated` (default) when its provider is not the CPU, `always` (tests), `never`.
   */
  shapeSessions?: 'accelerated' | 'always' | 'never';
  /**
   * Which sessions come from xpkg's binding over onnxruntime's C API (ort-capi.ts), which sets
   * cuDNN's search to HEURISTIC: `cuda` (default) those whose first provider is cuda, `always` (tests
   * of the binding on the CPU), `never`. Where it is absent or fails, the stock binding makes them
   * and the session's `binding` says why.
   */
  capi?: 'cuda' | 'always' | 'never';
  /**
   * cuDNN's search for the binding's CUDA sessions (default HEURISTIC). Its sessions are still one per
   * input shape: on the H200 the fp16 OCR models paid 1.5–3 s at every shape change of one session
   * with HEURISTIC or EXHAUSTIVE, also at shapes seen before; DEFAULT had no such cost but ran 20×
   * slower (bench/gpu/conv-modes.ts).
   */
  convAlgoSearch?: ConvAlgoSearch;
  /** The binding's other CUDA settings (cudaTuning: the defaults, XPKG_ORT_* for measuring). */
  cuda?: Partial<Omit<CudaTuning, 'convAlgoSearch'>>;
}

export class OnnxruntimeBackend implements Backend {
  readonly name: string;
  readonly runtimes = ['onnxruntime'] as const;
  readonly #module: string;
  readonly #accelEnv: AccelEnv | undefined;
  readonly #attempt: string[];
  readonly #placement: NonNullable<OnnxruntimeBackendOptions['placement']>;
  readonly #force: string[] | undefined;
  readonly #shapeSessions: NonNullable<OnnxruntimeBackendOptions['shapeSessions']>;
  readonly #capi: NonNullable<OnnxruntimeBackendOptions['capi']>;
  readonly #cuda: CudaTuning;
  /** The tuning of one-shot sessions (SessionOptions.oneShot). */
  readonly #cudaOneShot: CudaTuning;
  #bindingDir: string | undefined;
  #ort: Ort | undefined;
  #providers: string[] = [];
  #accel: Record<AccelProvider, AccelCheck> | undefined;

  constructor(options: OnnxruntimeBackendOptions = {}) {
    this.name = options.name ?? 'onnxruntime-node';
    this.#module = options.module ?? 'onnxruntime-node';
    this.#accelEnv = options.accelEnv;
    this.#attempt = [...(options.attemptProviders ?? [])];
    this.#placement = options.placement ?? 'accelerated';
    this.#force = options.forceProviders?.length ? [...options.forceProviders] : undefined;
    this.#shapeSessions = options.shapeSessions ?? 'accelerated';
    this.#capi = options.capi ?? 'cuda';
    this.#cuda = cudaTuning({ ...options.cuda, convAlgoSearch: options.convAlgoSearch });
    this.#cudaOneShot = oneShotTuning(this.#cuda, searchAsked(options));
  }

  /** The CUDA and WebGPU checks init made (undefined before init). */
  get accel(): Readonly<Record<AccelProvider, AccelCheck>> | undefined {
    return this.#accel;
  }

  async init(): Promise<OrtInit> {
    let ort: Ort;
    let bindingDir: string | undefined;
    // the machine's scan (~20 file-system round trips) runs while onnxruntime's library loads
    const scan = this.#accelEnv ? undefined : probeAccelEnv();
    scan?.catch(() => {}); // awaited below; not when the import fails
    try {
      quietOnnxruntime();
      ort = (await import(this.#module)) as Ort;
      ort.env.logLevel = ortLogLevel();
      const entry = createRequire(import.meta.url).resolve(this.#module);
      bindingDir = join(dirname(entry), '..', 'bin', 'napi-v6', process.platform, process.arch);
    } catch (e) {
      return {
        ok: false,
        reason: `cannot load ${this.#module}: ${(e as Error).message.split('\n')[0]}`,
        unavailable: [],
      };
    }
    const version = ort.env.versions.node ?? ort.env.versions.common;
    const env = this.#accelEnv ?? (await scan!);
    this.#accel = checkAccel(this.#accelEnv || !bindingDir ? env : withBinding(env, { dir: bindingDir, version }));
    const listed = ort.listSupportedBackends().map((b) => ({ name: b.name, bundled: b.bundled }));
    const providers: string[] = [];
    const unavailable: OrtInit['unavailable'] = [];
    // cpu first: if it fails the runtime itself is unusable
    for (const { name, bundled } of [{ name: 'cpu', bundled: true }, ...listed.filter((b) => b.name !== 'cpu')]) {
      const pre = this.#precheck(name, bundled, bindingDir);
      if (pre.block) {
        unavailable.push({ name, reason: pre.block.reason, ...(pre.block.code ? { code: pre.block.code } : {}) });
        continue;
      }
      // The CPU provider is compiled into libonnxruntime, which the import above loaded: no probe
      // session for it (one cost ~25 ms of each `xpkg run`: its thread pool started and joined).
      // The others are libraries of their own, which only a session that asks for them loads.
      if (name === 'cpu') {
        providers.push(name);
        continue;
      }
      try {
        const s = await ort.InferenceSession.create(probeModel(), { executionProviders: [name], logSeverityLevel: 4 });
        await s.release();
        providers.push(name);
      } catch (e) {
        // the scan's findings, when there are any, say why onnxruntime could not load it
        const why = pre.hints.length ? ` (${pre.hints.map((h) => `${h.code}: ${h.message}`).join('; ')})` : '';
        unavailable.push({
          name,
          reason: `${(e as Error).message.split('\n')[0].slice(0, 300)}${why}`.slice(0, 2048),
          code: pre.hints[0]?.code ?? 'load-failed',
        });
      }
    }
    if (!providers.includes('cpu'))
      return {
        ok: false,
        version,
        reason: `the CPU provider does not load: ${unavailable.find((u) => u.name === 'cpu')?.reason}`,
        providers,
        unavailable,
      };
    this.#ort = ort;
    this.#providers = providers;
    this.#bindingDir = bindingDir;
    return { ok: true, version, providers, unavailable };
  }

  /**
   * Reasons known without trying: trying a provider whose library is absent makes onnxruntime
   * print errors on stderr, and webgpu without a GPU makes Dawn print warnings. `block` skips the
   * attempt; `hints` are findings that explain an attempt's failure.
   */
  #precheck(
    name: string,
    bundled: boolean,
    bindingDir: string | undefined,
  ): { block?: { reason: string; code?: string }; hints: AccelCheck['reasons'] } {
    const check = name === 'cuda' || name === 'webgpu' ? this.#accel?.[name] : undefined;
    if (check) {
      const blocking = check.reasons.filter((r) => BLOCKING.includes(r.code));
      if (blocking.length)
        return {
          block: {
            reason: check.reasons
              .map((r) => `${r.code}: ${r.message}`)
              .join('; ')
              .slice(0, 2048),
            code: blocking[0].code,
          },
          hints: check.reasons,
        };
      return { hints: check.reasons };
    }
    if (!bundled && bindingDir) {
      const lib = providerLibrary(name);
      if (!existsSync(join(bindingDir, lib)))
        return {
          block: { reason: `${lib} is not installed beside the onnxruntime-node binding`, code: 'provider-libraries' },
          hints: [],
        };
    }
    return { hints: [] };
  }

  /** Whether this backend makes sessions through xpkg's binding where it may (capi not `never`, the binding loads). */
  #capiLoads(): boolean {
    return this.#capi !== 'never' && !!this.#bindingDir && 'capi' in loadCapi(this.#bindingDir);
  }

  /**
   * One session: through xpkg's C API binding where `capi` says so (CUDA with HEURISTIC search),
   * else, or when that binding is absent or fails, through the stock binding with the reason kept.
   */
  async #create(
    ort: Ort,
    bytes: Buffer,
    path: string | null,
    create: OrtSessionOptions & {
      enableProfiling?: boolean;
      profileFilePrefix?: string;
      optimizedModelFilePath?: string;
    },
    plain: OrtSessionOptions = create,
    /** A session for one input shape (capiOptions: fixed dimensions, a CUDA graph where tuned so). */
    shape?: { freeDims: [string, number][]; graph?: boolean },
    tuning: CudaTuning = this.#cuda,
  ): Promise<CreatedSession> {
    const cuda = create.executionProviders[0] === 'cuda';
    // a Buffer is a Uint8Array view: the binding reads it in place (buffer, offset, length)
    const stock = () => (path ? ort.InferenceSession.create(path, create) : createSaving(ort, bytes, create, plain));
    if (!(this.#capi === 'always' || (this.#capi === 'cuda' && cuda))) return { session: await stock() };
    let fallback: { code: string; reason: string };
    if (path)
      fallback = { code: 'external-data', reason: 'the model has external data files: the binding takes bytes only' };
    else if (!this.#bindingDir) fallback = { code: 'not-built', reason: 'onnxruntime-node has no binding folder' };
    else {
      const c = loadCapi(this.#bindingDir);
      if ('capi' in c) {
        try {
          const session = await createCapiSession(c.capi, bytes, capiOptions(create, tuning, shape));
          const binding = {
            name: 'xpkg-ort-capi' as const,
            ...(cuda ? { ...tuning } : {}),
          };
          return { session, binding };
        } catch (e) {
          fallback = {
            code: 'create-failed',
            reason: String((e as Error).message ?? e)
              .split('\n')[0]
              .slice(0, 500),
          };
        }
      } else fallback = { code: c.code, reason: c.reason };
    }
    return {
      session: await stock(),
      binding: { name: 'onnxruntime-node', ...(cuda ? { convAlgoSearch: 'EXHAUSTIVE' } : {}), fallback },
    };
  }

  /**
   * A model without external data is handed to onnxruntime as its verified bytes. One with external
   * data is checked first (every location must be one of the variant's files: E_RUN_MODEL_EXTERNAL)
   * and then loaded from a private folder holding just the entry and those files, verified as they
   * were written (removed once the session exists), so onnxruntime never resolves a location
   * against the working directory.
   */
  async load(
    variant: Variant,
    input: VariantFiles | ReadonlyMap<string, Buffer>,
    options: SessionOptions,
  ): Promise<OrtModelSession> {
    const ort = this.#ort;
    if (!ort)
      throw new RunnerError(
        'E_RUN_BACKEND',
        `backend ${this.name} is not initialised; resolve it through the registry first`,
      );
    const files = isVariantFiles(input) ? input : filesFromMap(input);
    const entry = variant.files[0];
    const size = files.size(entry);
    if (size > MAX_MODEL_BYTES)
      throw new RunnerError(
        'E_RUN_LOAD',
        `variant ${variant.id}: ${entry} is ${size} bytes; an ONNX model file holds at most ${MAX_MODEL_BYTES} (protobuf), larger weights go in external data files`,
        { variant: variant.id, file: entry, size },
      );
    const declared = this.#force
      ? { ...variant, requires: { ...variant.requires, executionProviders: this.#force } }
      : variant;
    const sessionOptions = ortSessionOptions(declared, options, [
      ...this.#providers,
      ...this.#attempt.filter((p) => !this.#providers.includes(p)),
    ]);
    // The model's bytes are read, and so verified, even when the cache has its optimised graph: a
    // package damaged after it was cached is refused like any other (~15 ms for 11 MB, SHA-NI).
    // Read beside the cache's entry: hashed on the decoder's thread while this one creates the
    // session from the entry; a hit is handed out only once they verified.
    const reading = files.read(entry);
    reading.catch(() => {}); // awaited on every path below
    // per-shape sessions are made from the package's bytes; the cache holds one session's graph
    const perShapeOnCpu = this.#shapeSessions === 'always' && (options.shapeSessions ?? 1) > 1;
    const cache = perShapeOnCpu ? null : cacheFor(options, files, entry, sessionOptions, ort);
    if (cache) {
      // a hit's record says whether the inputs are static (read from this model when it was stored)
      const hit = await fromCache(ort, cache, variant.id, sessionOptions);
      if (hit) {
        try {
          await reading;
        } catch (e) {
          await hit.release();
          throw e;
        }
        return hit;
      }
    }
    const bytes = await reading;
    // a walk of the graph's protobuf (20–40 ms of CPU for the OCR package's three models in a cold process)
    sessionOptions.enableMemPattern = hasStaticInputs(bytes);
    const external = externalFiles(variant.id, entry, variant.files, bytes);
    const folder = external.length
      ? await writePrivateFolder(files, [{ path: entry, bytes }, ...external.map((path) => ({ path }))])
      : null;
    // onnxruntime refuses a session whose first provider fails to load: the variant's next
    // provider is tried then, and each failure is kept on the session
    const fallbacks: ProviderFallback[] = [];
    // the binding's settings for this model's sessions, as its results report them (`bindings`)
    const tuning = sessionTuning(this.#cuda, this.#cudaOneShot, options);
    let last: unknown;
    for (let i = 0; i < sessionOptions.executionProviders.length; i++) {
      const opts = { ...sessionOptions, executionProviders: sessionOptions.executionProviders.slice(i) };
      const profile =
        this.#placement === 'always' || (this.#placement === 'accelerated' && opts.executionProviders[0] !== 'cpu')
          ? profileFolder()
          : null;
      const save = cache && !folder && opts.executionProviders.join() === 'cpu' ? cache.store.prepare(cache.key) : null;
      const limit = options.shapeSessions ?? 1;
      const shapeSessions =
        !folder &&
        limit > 1 &&
        (this.#shapeSessions === 'always' ||
          (this.#shapeSessions === 'accelerated' && opts.executionProviders[0] !== 'cpu'));
      // CUDA graphs (xpkg's binding): every shape gets a session of its own, captured at that shape;
      // the first session serves only shapes over the limit, so the first shape's session is profiled
      const graphs =
        shapeSessions &&
        cudaGraphsFor({
          provider: opts.executionProviders[0],
          tuning,
          binding: () => this.#capiLoads(),
          model: bytes,
        });
      const profiling = profile ? { enableProfiling: true, profileFilePrefix: join(profile, 'p') } : {};
      const create = {
        ...opts,
        ...(graphs ? {} : profiling),
        ...(save ? { optimizedModelFilePath: save, extra: { session: { ...opts.extra.session, ...SAVE_ORT } } } : {}),
      };
      try {
        const { session, binding } = await this.#create(
          ort,
          bytes,
          folder ? folder.path(entry) : null,
          create,
          opts,
          undefined,
          tuning,
        );
        // Creating the session read (or mapped) every initializer, so the folder can go now and
        // nothing is left behind if the process is killed; where open files cannot be removed
        // (Windows) it goes when the session is released.
        const kept =
          folder &&
          (await folder.remove().then(
            () => null,
            () => folder,
          ));
        // more sessions of the same verified bytes, one per input shape (a model with external data keeps one)
        const shapes = session.inputMetadata.map((m) => (m.isTensor ? (m.shape as (number | string)[]) : undefined));
        const profiled = new WeakSet<OrtSessionLike>();
        let profileNext = graphs && profile;
        const perShape = shapeSessions
          ? {
              create: async (key: string) => {
                const withProfile = profileNext;
                profileNext = false;
                const shape = { freeDims: freeDimsOf(key, shapes), graph: graphs };
                const made = (
                  await this.#create(
                    ort,
                    bytes,
                    null,
                    withProfile ? { ...opts, ...profiling } : opts,
                    opts,
                    shape,
                    tuning,
                  )
                ).session;
                if (withProfile) profiled.add(made);
                return made;
              },
              limit,
              ...(graphs ? { firstTakesShape: false, profiled: (s: OrtSessionLike) => profiled.has(s) } : {}),
            }
          : null;
        const loaded = new OrtModelSession(ort, session, variant.id, opts, kept, fallbacks, profile, perShape, binding);
        if (save && cache)
          loaded.optimizedCache = (await cache.store.commit(cache.key, save, opts.enableMemPattern))
            ? 'stored'
            : undefined;
        return loaded;
      } catch (e) {
        if (save) rmSync(save, { force: true });
        if (profile) rmSync(profile, { recursive: true, force: true });
        last = e;
        fallbacks.push({
          provider: opts.executionProviders[0],
          reason: (e as Error).message.split('\n')[0].slice(0, 500),
        });
      }
    }
    await folder?.remove().catch(() => {});
    const tried = fallbacks.map((f) => `${f.provider}: ${f.reason}`).join('; ');
    throw new RunnerError(
      'E_RUN_LOAD',
      `onnxruntime could not load variant ${variant.id} (${entry}): ${tried}`,
      { variant: variant.id, file: entry, providers: fallbacks },
      { cause: last },
    );
  }
}

export interface CreatedSession {
  session: OrtSessionLike;
  binding?: SessionBinding;
}

/**
 * The cache entry a CPU-only session of this model would use: only for a model whose digest the
 * signed manifest gives, optimised by onnxruntime (level not `disabled`), on the CPU provider alone.
 */
function cacheFor(
  options: SessionOptions,
  files: VariantFiles,
  entry: string,
  opts: OrtSessionOptions,
  ort: Ort,
): { store: OrtModelCache; key: string } | null {
  const sha256 = files.sha256?.(entry);
  const folder = options.modelCache ?? cacheRoot();
  if (!folder || !sha256 || opts.graphOptimizationLevel === 'disabled') return null;
  if (opts.executionProviders.join() !== 'cpu') return null;
  const store = new OrtModelCache(folder);
  const runtime = `onnxruntime ${ort.env.versions.node ?? ort.env.versions.common}`;
  return {
    store,
    key: store.key({ runtime, model: sha256, optimization: opts.graphOptimizationLevel, providers: ['cpu'] }),
  };
}

/**
 * A session of `bytes`; when it was to write its optimised graph for the cache and that attempt
 * fails, one without writing it (a graph onnxruntime cannot save in its format must still load;
 * the cache's commit then finds no file and stores nothing).
 */
async function createSaving(
  ort: Ort,
  bytes: Uint8Array,
  create: OrtSessionOptions & { optimizedModelFilePath?: string },
  plain: OrtSessionOptions,
): Promise<InferenceSession> {
  try {
    return await ort.InferenceSession.create(bytes, create);
  } catch (e) {
    if (!create.optimizedModelFilePath) throw e;
    rmSync(create.optimizedModelFilePath, { force: true });
    const { optimizedModelFilePath: _, ...rest } = create;
    return await ort.InferenceSession.create(bytes, { ...rest, extra: plain.extra });
  }
}

/** onnxruntime writes the optimised graph in its own format (ort-cache.ts says why). */
const SAVE_ORT = { save_model_format: 'ORT' } as const;
/**
 * A session of an ORT-format model uses the given bytes in place, weights included (no copy): the
 * bytes must then outlive the session (OrtModelSession.holdModelBytes).
 */
const READ_ORT_IN_PLACE = { use_ort_model_bytes_directly: '1', use_ort_model_bytes_for_initializers: '1' } as const;

/**
 * A session from the cached optimised model, with optimisation off (it was done), or null. A
 * damaged entry (its digest differs from its record) is evicted and the caller loads the model
 * from the package.
 */
async function fromCache(
  ort: Ort,
  cache: { store: OrtModelCache; key: string },
  variantId: string,
  opts: OrtSessionOptions,
): Promise<OrtModelSession | null> {
  const hit = await cache.store.lookup(cache.key);
  if (!hit) return null;
  if (hit.intact) {
    const created = { ...opts, enableMemPattern: hit.staticInputs };
    const create = {
      ...created,
      graphOptimizationLevel: 'disabled' as const,
      extra: { session: { ...opts.extra.session, ...READ_ORT_IN_PLACE } },
    };
    try {
      const session = await ort.InferenceSession.create(hit.bytes, create);
      const loaded = new OrtModelSession(ort, session, variantId, created, null, [], null);
      // onnxruntime reads the weights from these bytes for as long as the session lives
      loaded.holdModelBytes(hit.bytes);
      loaded.optimizedCache = 'hit';
      return loaded;
    } catch {
      // onnxruntime could not read it (written by a build it does not know): evict, load from the package
    }
  }
  await cache.store.evict(cache.key);
  return null;
}

/** protobuf's limit on one serialized message, so on an .onnx file (2 GiB - 1). */
const MAX_MODEL_BYTES = 2 ** 31 - 1;

const isVariantFiles = (x: VariantFiles | ReadonlyMap<string, Buffer>): x is VariantFiles =>
  typeof (x as VariantFiles).stream === 'function';
