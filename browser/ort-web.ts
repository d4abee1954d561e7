/**
 * The onnxruntime-web backend of the browser build: the same Backend contract as onnxruntime-node
 * (runner/types.ts), on the WASM CPU provider, or WebGPU when asked for and an adapter exists.
 * onnxruntime-web runs in its own worker (browser/ort-host.ts), started on the first model load
 * or earlier when a run is expected (startRuntime), so a page that only inspects and verifies never
 * downloads it. A variant larger than the browser can hold is refused before any byte of it is read
 * (E_BROWSER_TOO_LARGE); the rest is read through the runner's verified reads, block by block, into
 * one buffer handed (transferred) to the runtime's worker.
 */
import type { InferenceSession } from 'onnxruntime-web';
import { checkTensor } from '../runner/backends/ort-tensor.js';
import { usableProviders, variantProviders } from '../runner/providers.js';
import type { Backend, BackendInit, ModelSession, SessionOptions, Tensor, VariantFiles } from '../runner/types.js';
import { BrowserError, RunnerError } from '../spec/errors.js';
import type { Variant } from '../spec/schema.js';
import { mark } from './marks.js';
import { type CreatedSession, type HostReply, type HostRequest, ORT_WASM } from './ort-protocol.js';

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

type Body = HostRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

/** onnxruntime-web's worker: requests answered in any order; a crash fails what is pending. */
class RuntimeHost {
  private readonly worker: Worker;
  private next = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private failed: Error | null = null;

  constructor(base: string) {
    this.worker = new Worker(new URL('xpkg-ort.js', base), { type: 'module', name: 'xpkg-ort' });
    this.worker.onmessage = (e: MessageEvent<HostReply>) => {
      const m = e.data;
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.ok) p?.resolve(m.value);
      else p?.reject(new Error(m.message));
    };
    this.worker.onerror = (e) => {
      e.preventDefault();
      this.failed = new Error(`onnxruntime-web's worker failed: ${e.message || 'it could not start'}`);
      for (const p of this.pending.values()) p.reject(this.failed);
      this.pending.clear();
    };
  }

  call<T>(body: Body, transfer: Transferable[] = []): Promise<T> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ id, ...body }, transfer);
    });
  }

  terminate(): void {
    this.worker.terminate();
  }
}

/** A started onnxruntime-web: its worker, and what starting it gave. */
interface Runtime {
  host: RuntimeHost;
  threads: number;
  startMs: number;
}

/** The runtime's WASM fetched and compiled as it streams; null when that fails (the runtime's worker then fetches it, and says why it cannot). */
function compileRuntimeWasm(url: string): Promise<WebAssembly.Module | null> {
  return WebAssembly.compileStreaming(fetch(url, { credentials: 'same-origin' })).catch(() => null);
}

/** One runtime per build in this realm: onnxruntime-web initialises its WASM once (threads included). */
const runtimes = new Map<'wasm' | 'webgpu', { version: Promise<string>; started: Promise<Runtime> }>();

/**
 * Starts onnxruntime-web now, once per build: its worker, its script, then its WASM fetched and
 * compiled (streamed) and instantiated, with its threads, by creating one tiny session. Started as
 * soon as a run is expected (preload({ runtime: true }), or a package's runner), beside the
 * package's reads; `version` resolves once the script is in, `started` once models can load.
 */
export function startRuntime(options: Pick<WebOrtOptions, 'wasmBase' | 'threads'> & { webgpu?: boolean } = {}): {
  version: Promise<string>;
  started: Promise<Runtime>;
} {
  const build = options.webgpu ? 'webgpu' : 'wasm';
  const known = runtimes.get(build);
  if (known) return known;
  const isolated = Boolean((globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated);
  const cores = Math.max(1, globalThis.navigator?.hardwareConcurrency ?? 1);
  // Without isolation there is no SharedArrayBuffer: onnxruntime-web would fall back to one thread itself.
  // Unasked, every core: on 2 cores a second thread's spinning costs a first visit ~0.5–1 s of CPU
  // (V8's compiler wants that core) but no time to its first result, and a repeat visit's first
  // result came ~1 s sooner with it (bench/browser/cold.ts, measured both ways).
  const threads = isolated ? Math.max(1, Math.min(options.threads || cores, 16)) : 1;
  const wasmBase = options.wasmBase ?? new URL('./', globalThis.location?.href).href;
  // The WASM build's 14 MB are fetched and compiled from here, now: not after the runtime's worker,
  // its script and onnxruntime-web's loader have loaded one after another (a few round trips and
  // script compilations later), and streamed, so Chromium keeps the code it compiled for a later visit.
  const compiled = build === 'wasm' ? compileRuntimeWasm(new URL(ORT_WASM, wasmBase).href) : null;
  const host = new RuntimeHost(wasmBase);
  const version = host
    .call<{ version: string }>({
      op: 'start',
      webgpu: build === 'webgpu',
      threads,
      wasmBase,
      precompiled: compiled !== null,
    })
    .then((v) => v.version);
  void compiled?.then((module) => host.call({ op: 'module', module }).catch(() => {}));
  const started = version.then(async () => {
    const r = await host.call<{ threads: number; startMs: number }>({ op: 'ready' });
    return { host, ...r };
  });
  const entry = { version, started };
  runtimes.set(build, entry);
  // A failed start is tried again by the next caller (a network error, say).
  started.catch(() => {
    if (runtimes.get(build) === entry) runtimes.delete(build);
    host.terminate();
  });
  return entry;
}

export class WebOrtBackend implements Backend {
  readonly name = 'onnxruntime-web';
  readonly runtimes = ['onnxruntime'] as const;
  #runtime: Promise<Runtime> | undefined;
  #info: WebOrtInfo | undefined;

  constructor(readonly options: WebOrtOptions = {}) {}

  get info(): WebOrtInfo | undefined {
    return this.#info;
  }

  /**
   * Says what this backend offers once onnxruntime-web's script is in (in its worker); its WASM
   * start goes on meanwhile (a load awaits it).
   */
  async init(): Promise<BackendInit> {
    const isolated = Boolean((globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated);
    let webgpu = false;
    if (this.options.webgpu) {
      const gpu = (globalThis.navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
      webgpu = Boolean(await gpu?.requestAdapter().catch(() => null));
    }
    const { version, started } = startRuntime({ ...this.options, webgpu });
    started.catch(() => {}); // reported by load()
    this.#runtime = started;
    this.#info = {
      version: await version,
      threads: 0,
      crossOriginIsolated: isolated,
      webgpu,
      startMs: 0,
      loads: {},
    };
    return { ok: true, version: this.#info.version, providers: webgpu ? ['webgpu', 'cpu', 'wasm'] : ['cpu', 'wasm'] };
  }

  async load(
    variant: Variant,
    files: VariantFiles | ReadonlyMap<string, Buffer>,
    options: SessionOptions,
  ): Promise<ModelSession> {
    if (!this.#runtime || !this.#info) throw new RunnerError('E_RUN_BACKEND', 'onnxruntime-web is not initialised');
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
    mark(`read:${variant.id}`);
    let runtime: Runtime;
    try {
      runtime = await this.#runtime;
    } catch (e) {
      throw new RunnerError('E_RUN_BACKEND', `onnxruntime-web did not start: ${(e as Error).message}`);
    }
    // The threads the runtime was started with (the first start decides them).
    this.#info.threads = runtime.threads;
    this.#info.startMs = runtime.startMs;
    const t2 = performance.now();
    const executionProviders = providers.map((p) => (p === 'cpu' ? 'wasm' : p));
    const sessionOptions: InferenceSession.SessionOptions = {
      executionProviders,
      graphOptimizationLevel: options.graphOptimization ?? 'all',
      executionMode: 'sequential',
    };
    let session: CreatedSession;
    try {
      // The model's bytes move to the runtime's worker (a copy when they are the caller's own).
      const bytes = files instanceof Map ? new Uint8Array(model) : model;
      session = await runtime.host.call<CreatedSession>({ op: 'create', model: bytes, options: sessionOptions }, [
        bytes.buffer,
      ]);
    } catch (e) {
      throw new RunnerError('E_RUN_LOAD', `onnxruntime-web could not load ${variant.id}: ${(e as Error).message}`, {
        variant: variant.id,
      });
    }
    mark(`created:${variant.id}`);
    this.#info.loads[variant.id] = { readMs: t1 - t0, createMs: performance.now() - t2 };
    return new WebOrtSession(
      runtime.host,
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
  readonly outputShapes: ModelSession['outputShapes'];
  private released = false;

  constructor(
    private readonly host: RuntimeHost,
    private readonly created: CreatedSession,
    readonly variantId: string,
    readonly provider: string,
  ) {
    this.inputNames = created.inputNames;
    this.outputNames = created.outputNames;
    this.inputShapes = created.inputShapes;
    this.outputShapes = created.outputShapes;
  }

  async run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    if (this.released) throw new RunnerError('E_RUN_BACKEND', `session of variant ${this.variantId} was released`);
    const missing = this.inputNames.filter((n) => !(n in feeds));
    if (missing.length)
      throw new RunnerError('E_RUN_INPUT', `model ${this.variantId} takes inputs ${this.inputNames.join(', ')}`, {
        expected: this.inputNames,
        missing,
      });
    const sent: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) {
      checkTensor(name, t);
      // Posting a view copies its whole buffer: a view into a larger one is sliced first.
      const whole = t.data.byteOffset === 0 && t.data.byteLength === t.data.buffer.byteLength;
      sent[name] = whole ? t : { type: t.type, dims: t.dims, data: t.data.slice() as Tensor['data'] };
    }
    try {
      return await this.host.call<Record<string, Tensor>>({ op: 'run', sid: this.created.sid, feeds: sent });
    } catch (e) {
      throw new RunnerError(
        'E_RUN_BACKEND',
        `onnxruntime-web failed running ${this.variantId}: ${(e as Error).message}`,
        {
          variant: this.variantId,
        },
      );
    }
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.host.call({ op: 'release', sid: this.created.sid }).catch(() => {});
  }
}
