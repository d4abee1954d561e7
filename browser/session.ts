/**
 * One opened package in the browser, wherever it runs (the entry's Worker by default, or the page):
 * the strict reader over a File, Blob, bytes or URL, the signatures and trust policy decided on
 * open (no payload read), full verification on request, and the runner. Every check is the Node
 * code's own (pack/reader, signing/verify-reader, runner/runner); this file only wires them to the
 * browser's sources, onnxruntime-web and image decoding.
 */
import { type InspectResult, inspectReader } from '../pack/inspect.js';
import { PackageReader } from '../pack/reader.js';
import { BackendRegistry } from '../runner/backends/registry.js';
import { resolveBudget } from '../runner/pipeline/budget.js';
import { Runner, type RunResult } from '../runner/runner.js';
import type { RunnerBudget } from '../runner/types.js';
import { decodeEnvelope } from '../signing/envelope.js';
import type { Signer } from '../signing/policy.js';
import { type LoadedPolicy, type VerifyResult, verifyReader } from '../signing/verify-reader.js';
import { BrowserError, type ErrorJson, SandboxError, toXpkgError } from '../spec/errors.js';
import { setAssetBase } from './assets.js';
import { decodeImage, decodeTarget } from './image.js';
import { mark } from './marks.js';
import { browserRefusal, DEFAULT_MAX_MODEL_BYTES, WebOrtBackend, type WebOrtInfo } from './ort-web.js';
import { type CountingSource, sourceOf } from './sources.js';
import { detectHost } from './twins/host.js';
import { resolvePolicy } from './twins/verify.js';

export type PackageInput = Blob | ArrayBuffer | Uint8Array | string | URL;

export interface SessionOptions {
  /** Trusted public keys, as the text of `.pub` files. */
  trust?: string[];
  threshold?: number;
  /** Accept a package without a trusted signature (its integrity is still checked). */
  allowUnsigned?: boolean;
  /** Try WebGPU first when an adapter exists (default: WASM only). */
  webgpu?: boolean;
  /** onnxruntime-web threads (more than one only on a cross-origin-isolated page). */
  threads?: number;
  /** The largest model variant loaded, in bytes (default DEFAULT_MAX_MODEL_BYTES). */
  maxModelBytes?: number;
  /** Ceilings for what a run allocates, as Node's `Runner.open` takes them (image pixels, tensor bytes). */
  budget?: RunnerBudget;
  /** Base URL of the bundle's files: onnxruntime-web's and QuickJS's WASM, the sandbox worker (default: beside the bundle). */
  wasmBase?: string;
}

/** Progress with totals from the manifest: bytes verified, or bytes of a model loaded. */
export interface Progress {
  phase: 'verify' | 'load';
  done: number;
  total: number;
  path?: string;
}

export type SignatureCheck =
  | {
      ok: true;
      status: 'verified' | 'unsigned' | 'untrusted';
      signers: Signer[];
      untrusted: string[];
      threshold: number;
    }
  | { ok: false; error: ErrorJson };

export interface Opened {
  name: string;
  version: string;
  id: string;
  size: number;
  inspect: InspectResult;
  /** The trust decision on the signed manifest (no payload byte read yet). */
  signatures: SignatureCheck;
  /** Milliseconds from the call to the manifest and signers being known. */
  ms: number;
  /** Bytes read from the package to get here. */
  bytesRead: number;
}

export interface BrowserRunResult extends RunResult {
  runtime: WebOrtInfo | null;
  /** Bytes read from the package so far (opening, verifying and loading included). */
  bytesRead: number;
}

const errorJson = (e: unknown): ErrorJson => toXpkgError(e).toJSON();

/** What reading and verifying need from the browser, said with a code rather than failing later. */
function requireFeatures(): void {
  const g = globalThis as { crypto?: Crypto; DecompressionStream?: unknown; isSecureContext?: boolean };
  if (!g.crypto?.subtle)
    throw new BrowserError(
      'E_BROWSER_UNSUPPORTED',
      g.isSecureContext === false
        ? 'WebCrypto is only available on secure pages: serve the page over HTTPS or from localhost'
        : 'this browser has no WebCrypto (crypto.subtle)',
      { feature: 'crypto.subtle' },
    );
  if (typeof g.DecompressionStream !== 'function')
    throw new BrowserError('E_BROWSER_UNSUPPORTED', 'this browser has no DecompressionStream', {
      feature: 'DecompressionStream',
    });
}

/**
 * A model none of whose variants fit in the browser: the runner tried each (a smaller one would
 * have run) and reports E_RUN_NO_VARIANT with their refusals; the page is told the real reason.
 */
function tooLargeOnly(e: unknown, limit: number): BrowserError | null {
  const x = e as {
    code?: string;
    detail?: { model?: string; attempts?: { code?: string; variant?: string; reason?: string }[] };
  };
  const attempts = x.detail?.attempts ?? [];
  if (x.code !== 'E_RUN_NO_VARIANT' || !attempts.length || !attempts.every((a) => a.code === 'E_BROWSER_TOO_LARGE'))
    return null;
  return new BrowserError('E_BROWSER_TOO_LARGE', `model ${x.detail?.model}: ${attempts[0].reason}`, {
    model: x.detail?.model,
    variants: attempts.map((a) => a.variant),
    limit,
  });
}

export class PackageSession {
  private runner: Runner | null = null;
  private backend: WebOrtBackend | null = null;
  private progress: ((p: Progress) => void) | undefined;

  private constructor(
    private readonly reader: PackageReader,
    private readonly source: CountingSource,
    private readonly policy: LoadedPolicy,
    private readonly options: SessionOptions,
    readonly opened: Opened,
  ) {}

  /** Opens a package: archive and manifest checks, then the signatures against the trust given. */
  static async open(input: PackageInput, options: SessionOptions = {}): Promise<PackageSession> {
    const t0 = performance.now();
    mark('open');
    requireFeatures();
    if (options.wasmBase) setAssetBase(options.wasmBase);
    const policy = await resolvePolicy({
      trust: options.trust ?? [],
      ...(options.threshold !== undefined ? { threshold: options.threshold } : {}),
      allowUnsigned: Boolean(options.allowUnsigned),
    });
    const source = await sourceOf(input);
    const reader = await PackageReader.fromSource(source);
    let signatures: SignatureCheck;
    try {
      const v = await verifyReader(reader, policy, { integrity: 'on-read' });
      const s = v.signatures;
      signatures = { ok: true, status: s.status, signers: s.signers, untrusted: s.untrusted, threshold: s.threshold };
    } catch (e) {
      signatures = { ok: false, error: errorJson(e) };
    }
    const inspect = inspectReader(reader, { decodeEnvelope });
    const opened: Opened = {
      name: reader.manifest.name,
      version: reader.manifest.version,
      id: reader.id,
      size: reader.fileSize,
      inspect,
      signatures,
      ms: performance.now() - t0,
      bytesRead: source.bytesFetched,
    };
    mark('opened');
    return new PackageSession(reader, source, policy, options, opened);
  }

  /** Signatures, trust and every payload digest (by blocks, spec/FORMAT.md §10.1). Throws the first failure's code. */
  async verify(onProgress?: (p: Progress) => void): Promise<VerifyResult & { bytesRead: number }> {
    // A prepare() under way first says which files its load reads: those are checked once, as read.
    await this.starting?.catch(() => {});
    mark('verify');
    const r = await verifyReader(this.reader, this.policy, {
      onProgress: (done, total) => onProgress?.({ phase: 'verify', done, total }),
    });
    mark('verified');
    return { ...r, bytesRead: this.source.bytesFetched };
  }

  /**
   * Loads the runtime and every model the pipeline uses now (each block verified as it is read, as
   * on a run), so that a page can overlap it with verification or with the user choosing an input.
   */
  async prepare(onProgress?: (p: Progress) => void): Promise<void> {
    this.progress ??= onProgress;
    const runner = await this.ensureRunner();
    // The runtime started with the runner, in its own worker (its WASM streams and compiles beside
    // the reads); each model's session is created as soon as its file is read and checked.
    try {
      await runner.warmUp();
      mark('models');
    } catch (e) {
      throw tooLargeOnly(e, this.options.maxModelBytes ?? DEFAULT_MAX_MODEL_BYTES) ?? e;
    } finally {
      // A model file read ahead for a variant that did not load is not kept.
      this.reader.dropPrefetched(this.modelFiles);
    }
  }

  /**
   * Runs the package on inputs: an image input may be a Blob (a dropped file), an ImageBitmap or
   * ImageData; other inputs are passed as the runner takes them. Models load on the first run.
   */
  async run(inputs: Record<string, unknown>, onProgress?: (p: Progress) => void): Promise<BrowserRunResult> {
    this.progress = onProgress;
    // Images decode while the models load (the page's worker is idle meanwhile); a model that
    // cannot load is still reported first, as Node's runner does, before any input error.
    const decoding = this.decodeInputs(inputs);
    decoding.catch(() => {});
    await this.prepare();
    const values = await decoding;
    const runner = this.runner!;
    mark('run');
    const result = await runner.run(values);
    mark('ran');
    return { ...result, runtime: this.backend?.info ?? null, bytesRead: this.source.bytesFetched };
  }

  /** The inputs as the runner takes them: images decoded by the browser, anything else as given. */
  private async decodeInputs(inputs: Record<string, unknown>): Promise<Record<string, unknown>> {
    const manifest = this.reader.manifest;
    const budget = resolveBudget(this.options.budget);
    const values: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(inputs)) {
      const spec = manifest.inputs.find((i) => i.name === name);
      const image =
        spec?.type === 'image' &&
        (value instanceof Blob ||
          (typeof ImageBitmap !== 'undefined' && value instanceof ImageBitmap) ||
          (typeof ImageData !== 'undefined' && value instanceof ImageData));
      values[name] = image ? await decodeImage(value as Blob, decodeTarget(manifest, name), budget.maxPixels) : value;
    }
    return values;
  }

  private starting: Promise<Runner> | null = null;

  /** The runner, created once (concurrent callers share it; a failure is retried next time). */
  private ensureRunner(): Promise<Runner> {
    this.starting ??= this.startRunner().catch((e: unknown) => {
      this.starting = null;
      throw e;
    });
    return this.starting;
  }

  private async startRunner(): Promise<Runner> {
    // Scripts run in QuickJS in a nested worker that shares memory with this one (browser/sandbox):
    // said before anything loads when the page cannot share memory.
    const scripts = this.reader.manifest.pipeline.scripts ?? [];
    if (scripts.length && !(globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated)
      throw new SandboxError(
        'E_SANDBOX_KILLED',
        'package scripts need a cross-origin-isolated page (COOP/COEP headers, as `xpkg web` serves)',
        { reason: 'not-isolated', scripts: scripts.map((s) => s.path) },
      );
    const backend = new WebOrtBackend({
      ...(this.options.webgpu ? { webgpu: true } : {}),
      ...(this.options.threads ? { threads: this.options.threads } : {}),
      ...(this.options.maxModelBytes ? { maxModelBytes: this.options.maxModelBytes } : {}),
      ...(this.options.wasmBase ? { wasmBase: this.options.wasmBase } : {}),
      onLoadProgress: (path, done, total) => this.progress?.({ phase: 'load', path, done, total }),
    });
    const registry = new BackendRegistry();
    registry.register(backend, 100);
    const host = await detectHost({ registry });
    this.runner = await Runner.fromReader(this.reader, this.policy, {
      host,
      registry,
      ...(this.options.budget ? { budget: this.options.budget } : {}),
    });
    this.backend = backend;
    void this.readAhead(this.runner).then(() => mark('read-ahead'));
    return this.runner;
  }

  private modelFiles: string[] = [];

  /**
   * Reads (and checks) what the run will use while onnxruntime-web starts: each model's first
   * candidate variant, unless the browser refuses it before reading, and the assets and scripts.
   * A verification meanwhile awaits these reads instead of reading the files again.
   */
  private readAhead(runner: Runner): Promise<unknown> {
    const files = this.reader.manifest.files;
    const sizeOf = (p: string) => files.find((f) => f.path === p)?.size ?? Number.POSITIVE_INFINITY;
    for (const m of runner.selection.models) {
      const v = m.candidates[0]?.variant;
      if (!v || browserRefusal(v, sizeOf, this.options.maxModelBytes)) continue;
      this.modelFiles.push(...v.files);
    }
    const manifest = this.reader.manifest;
    const rest = [...(manifest.assets ?? []), ...(manifest.pipeline.scripts ?? [])].map((a) => a.path);
    return Promise.all([...this.modelFiles, ...rest].map((p) => this.reader.prefetch(p)));
  }

  async close(): Promise<void> {
    this.reader.dropPrefetched();
    if (this.runner) await this.runner.close();
    else await this.reader.close();
  }
}

export { errorJson };
