/**
 * The onnxruntime-web backend of the browser build: the same Backend contract as onnxruntime-node
 * (runner/types.ts), on the WASM CPU provider, or WebGPU when asked for and an adapter exists.
 * onnxruntime-web is imported on the first model load, so a page that only inspects and verifies
 * never downloads it. A variant larger than the browser can hold is refused before any byte of it
 * is read (E_BROWSER_TOO_LARGE); the rest is read through the runner's verified reads, block by
 * block, into one buffer handed to the runtime.
 */
import type * as OrtWeb from 'onnxruntime-web';
import { checkTensor, fromOrtTensor } from '../runner/backends/ort-tensor.js';
import { usableProviders, variantProviders } from '../runner/providers.js';
import type { Backend, BackendInit, ModelSession, SessionOptions, Tensor, VariantFiles } from '../runner/types.js';
import { BrowserError, RunnerError } from '../spec/errors.js';
import type { Variant } from '../spec/schema.js';

type Ort = typeof OrtWeb;

/** onnxruntime-web's WASM heap is 32-bit: the model, its copy in the heap and the activations share 4 GiB. */
export const DEFAULT_MAX_MODEL_BYTES = 1536 * 2 ** 20;

export interface WebOrtOptions {
  /** Base URL of ort-wasm-simd-threaded.{mjs,wasm} (default: beside the bundle). */
  wasmBase?: string;
  /** Try WebGPU first when an adapter exists (default false: WASM only). */
  webgpu?: boolean;
  /** Intra-op threads; only a cross-origin-isolated page gets more than one. */
  threads?: number;
  /** The largest variant (bytes of its files) loaded; larger ones are refused before reading. */
  maxModelBytes?: number;
  /** Bytes of model files read so far, per model file, as the load goes. */
  onLoadProgress?: (path: string, done: number, total: number) => void;
}

/** What the page needs to know about the runtime that ran. */
export interface WebOrtInfo {
  version: string;
  /** Threads onnxruntime-web actually uses: 1 unless the page is cross-origin isolated. */
  threads: number;
  crossOriginIsolated: boolean;
  webgpu: boolean;
  /** Milliseconds to start the runtime: its script, and its WASM fetched, compiled and initialised. */
  startMs: number;
  /** Per variant loaded: milliseconds to read (and verify) its model, and to create its session. */
  loads: Record<string, { readMs: number; createMs: number }>;
}

/**
 * The smallest model (one Identity node, float32 [N] → [N]): creating its session starts the WASM
 * runtime at init, while the package's models are still being read, and times that start apart.
 */
const IDENTITY_MODEL =
  'CAcSDXhwa2ctZml4dHVyZXM6RAoUCgFYEgFZGgJuMCIISWRlbnRpdHkSCGlkZW50aXR5WhAKAVgSCwoJCAESBQoDEgFOYhAKAVkSCwoJCAESBQoDEgFOQgQKABAN';

/**
 * Why a variant is not loaded in the browser, decided from the manifest before any byte of it is
 * read (null: it loads): larger than the runtime's memory allows, or split into external data files.
 */
export function browserRefusal(
  variant: Variant,
  sizeOf: (path: string) => number,
  max = DEFAULT_MAX_MODEL_BYTES,
): BrowserError | RunnerError | null {
  const total = variant.files.reduce((n, p) => n + sizeOf(p), 0);
  if (total > max)
    return new BrowserError(
      'E_BROWSER_TOO_LARGE',
      `variant ${variant.id} is ${total} bytes; a browser holds models up to ${max} bytes (the WASM runtime's memory is 4 GiB)`,
      { variant: variant.id, bytes: total, limit: max },
    );
  if (variant.files.length > 1)
    return new RunnerError(
      'E_RUN_LOAD',
      `variant ${variant.id}: models with external data files do not load in the browser`,
      {
        variant: variant.id,
      },
    );
  return null;
}

export class WebOrtBackend implements Backend {
  readonly name = 'onnxruntime-web';
  readonly runtimes = ['onnxruntime'] as const;
  #ort: Ort | undefined;
  #info: WebOrtInfo | undefined;

  constructor(readonly options: WebOrtOptions = {}) {}

  get info(): WebOrtInfo | undefined {
    return this.#info;
  }

  async init(): Promise<BackendInit> {
    const isolated = Boolean((globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated);
    let webgpu = false;
    if (this.options.webgpu) {
      const gpu = (globalThis.navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
      webgpu = Boolean(await gpu?.requestAdapter().catch(() => null));
    }
    const t0 = performance.now();
    // The WebGPU build is a larger download: only when it will be used.
    const ort = (webgpu ? await import('onnxruntime-web/webgpu') : await import('onnxruntime-web/wasm')) as Ort;
    const base = this.options.wasmBase;
    if (base) ort.env.wasm.wasmPaths = base;
    const cores = Math.max(1, globalThis.navigator?.hardwareConcurrency ?? 1);
    // Without isolation there is no SharedArrayBuffer: onnxruntime-web would fall back to one thread itself.
    const threads = isolated ? Math.max(1, Math.min(this.options.threads || cores, 16)) : 1;
    ort.env.wasm.numThreads = threads;
    ort.env.logLevel = 'error';
    const warm = await ort.InferenceSession.create(
      Uint8Array.from(atob(IDENTITY_MODEL), (c) => c.charCodeAt(0)),
      {
        executionProviders: ['wasm'],
      },
    );
    await warm.release();
    this.#ort = ort;
    this.#info = {
      version: ort.env.versions.web ?? 'unknown',
      threads,
      crossOriginIsolated: isolated,
      webgpu,
      startMs: performance.now() - t0,
      loads: {},
    };
    return { ok: true, version: this.#info.version, providers: webgpu ? ['webgpu', 'cpu', 'wasm'] : ['cpu', 'wasm'] };
  }

  async load(
    variant: Variant,
    files: VariantFiles | ReadonlyMap<string, Buffer>,
    options: SessionOptions,
  ): Promise<ModelSession> {
    const ort = this.#ort;
    if (!ort || !this.#info) throw new RunnerError('E_RUN_BACKEND', 'onnxruntime-web is not initialised');
    const providers = usableProviders(variant, this.#info.webgpu ? ['webgpu', 'cpu', 'wasm'] : ['cpu', 'wasm']);
    if (!providers.length)
      throw new RunnerError(
        'E_RUN_LOAD',
        `variant ${variant.id} needs execution provider ${variantProviders(variant).join(' or ')}, which this browser does not have`,
        { variant: variant.id, wanted: variantProviders(variant) },
      );
    const sizeOf = (p: string) => (files instanceof Map ? files.get(p)!.length : (files as VariantFiles).size(p));
    const refused = browserRefusal(variant, sizeOf, this.options.maxModelBytes);
    if (refused) throw refused;
    const path = variant.files[0];
    const t0 = performance.now();
    const model = await this.#read(files, path, sizeOf(path));
    const t1 = performance.now();
    const executionProviders = providers.map((p) => (p === 'cpu' ? 'wasm' : p));
    let session: OrtWeb.InferenceSession;
    try {
      session = await ort.InferenceSession.create(model, {
        executionProviders,
        graphOptimizationLevel: options.graphOptimization ?? 'all',
        executionMode: 'sequential',
      });
    } catch (e) {
      throw new RunnerError('E_RUN_LOAD', `onnxruntime-web could not load ${variant.id}: ${(e as Error).message}`, {
        variant: variant.id,
      });
    }
    this.#info.loads[variant.id] = { readMs: t1 - t0, createMs: performance.now() - t1 };
    return new WebOrtSession(
      ort,
      session,
      variant.id,
      executionProviders[0] === 'wasm' ? 'cpu' : executionProviders[0],
    );
  }

  /** One model file into one buffer, each block verified before it is copied in. */
  async #read(files: VariantFiles | ReadonlyMap<string, Buffer>, path: string, size: number): Promise<Uint8Array> {
    if (files instanceof Map) return files.get(path)!;
    const out = new Uint8Array(size);
    let at = 0;
    await (files as VariantFiles).stream(path, async (chunk) => {
      out.set(chunk, at);
      at += chunk.length;
      this.options.onLoadProgress?.(path, at, size);
    });
    return out;
  }
}

class WebOrtSession implements ModelSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputShapes: ModelSession['inputShapes'];

  constructor(
    private readonly ort: Ort,
    private session: OrtWeb.InferenceSession | null,
    readonly variantId: string,
    readonly provider: string,
  ) {
    this.inputNames = [...session!.inputNames];
    this.outputNames = [...session!.outputNames];
    this.inputShapes = session!.inputMetadata.flatMap((m) =>
      m.isTensor ? [{ name: m.name, type: m.type, shape: [...m.shape] }] : [],
    );
  }

  async run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    const session = this.session;
    if (!session) throw new RunnerError('E_RUN_BACKEND', `session of variant ${this.variantId} was released`);
    const missing = this.inputNames.filter((n) => !(n in feeds));
    if (missing.length)
      throw new RunnerError('E_RUN_INPUT', `model ${this.variantId} takes inputs ${this.inputNames.join(', ')}`, {
        expected: this.inputNames,
        missing,
      });
    const ortFeeds: Record<string, OrtWeb.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) {
      checkTensor(name, t);
      ortFeeds[name] = new this.ort.Tensor(t.type, t.data as never, t.dims);
    }
    let out: OrtWeb.InferenceSession.ReturnType;
    try {
      out = await session.run(ortFeeds);
    } catch (e) {
      throw new RunnerError(
        'E_RUN_BACKEND',
        `onnxruntime-web failed running ${this.variantId}: ${(e as Error).message}`,
        {
          variant: this.variantId,
        },
      );
    }
    const result: Record<string, Tensor> = {};
    for (const [name, value] of Object.entries(out)) result[name] = fromOrtTensor(name, value);
    return result;
  }

  async release(): Promise<void> {
    const s = this.session;
    this.session = null;
    await s?.release();
  }
}
