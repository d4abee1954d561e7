/**
 * `Runner.open(path, options)` → `runner.run(inputs)`: the one way a package is run.
 *
 * Order matters: the package is opened once (strict structure + manifest), its signatures are
 * checked against the trust policy before anything else happens, variants are selected for the
 * host, and models and assets are read lazily through `readVerified`, which hashes exactly the
 * bytes handed to the runtime. Nothing unverified ever reaches onnxruntime or the pipeline.
 */
import type { Offloader } from '../fabric/contract.js';
import { isReference } from '../oci/ref.js';
import { PackageReader } from '../pack/reader.js';
import { Sandbox, type SandboxCaps, type SandboxValue } from '../sandbox/index.js';
import {
  commitRollback,
  type LoadedPolicy,
  resolvePolicy,
  type VerifyResult,
  verifyReader,
} from '../signing/verify.js';
import { FabricError, FormatError, RunnerError } from '../spec/errors.js';
import { absentVariants } from '../spec/partial.js';
import type { Manifest, Variant } from '../spec/schema.js';
import { type BackendRegistry, defaultRegistry } from './backends/index.js';
import { type HostProfile, resolveHost } from './host.js';
import {
  failedProviders,
  ModelSlot,
  PipelineChanged,
  type RunFailure,
  replacementCandidates,
  type SlotLoad,
  selectionAfterSwitch,
} from './model-slot.js';
import { checkModelInputs, resolveBudget } from './pipeline/budget.js';
import { decodeInputsAhead } from './pipeline/image-decoder.js';
import { patchingModels, withVariants } from './pipeline/patch.js';
import { type PipelineCopies, runPipeline } from './pipeline/run.js';
import { pipelineShapes } from './pipeline/shapes.js';
import { validatePipeline } from './pipeline/validate.js';
import {
  DEFAULT_MAX_SHAPES,
  firstTouch,
  MAX_WARM_RUNS,
  type OpenReport,
  type PrewarmMode,
  type PrewarmOptions,
  prewarmOpen,
} from './prewarm.js';
import { type ProviderReport, providerReport } from './provider-report.js';
import { type ManyInput, type ManyResult, runMany } from './run-many.js';
import { sandboxKernelsFor } from './sandbox-kernels.js';
import {
  applyAttempts,
  type Loaded,
  loadWithFallback,
  type ModelSelection,
  ONE_SHOT_PRECISION,
  type Precision,
  type Selection,
  selectVariants,
  type VariantVerdict,
  withModel,
} from './select.js';
import type {
  ModelSession,
  PipelineContext,
  RunnerBudget,
  ScriptHost,
  SessionOptions,
  SplitPlacement,
  Tensor,
  Timings,
  VariantFiles,
} from './types.js';

export interface RunnerOptions {
  /** Trusted public keys: file paths or their text. */
  trust?: string[];
  trustDir?: string;
  threshold?: number;
  /** Run a package without a trusted signature (its integrity is still checked). */
  allowUnsigned?: boolean;
  allowDowngrade?: boolean;
  stateDir?: string;
  /** Force variants by id (one per model at most). */
  variant?: string | string[];
  /** A host profile (object, JSON text or file path) instead of detecting this machine. */
  host?: string | HostProfile;
  /** Prefer variants of this precision. */
  precision?: Precision;
  /** Intra-op threads per model (default: the backend's choice, physical cores). */
  threads?: number;
  graphOptimization?: SessionOptions['graphOptimization'];
  /**
   * Cache of models onnxruntime optimised for this machine, so later opens skip the optimisers:
   * a folder, or false for none. Default: `cacheRoot()` (platform/cache-dir.ts: `XPKG_CACHE`, else
   * the user's cache folder) where the backend keeps one (onnxruntime-node).
   */
  modelCache?: string | false;
  /** Backend registry (default: the process-wide one). */
  registry?: BackendRegistry;
  /** The runner's ceilings for package scripts; a package's declared policy is capped by these. */
  sandboxCaps?: Partial<SandboxCaps>;
  /** Ceilings for what a pipeline allocates (defaults: runner/pipeline/budget.ts DEFAULT_BUDGET). */
  budget?: RunnerBudget;
  /**
   * Load models in `open` and run them once at every input shape the pipeline can make, so no first
   * run pays a GPU's per-shape set-up (runner/prewarm.ts). A mode alone or with `maxShapes` and `runs`;
   * default `auto`: only models whose chosen variant runs on an accelerator.
   */
  prewarm?: PrewarmOptions['mode'] | PrewarmOptions;
  /**
   * The runner serves a few runs and is closed (`xpkg run` of files named one by one): the first
   * result matters more than steady speed. Then `prewarm` defaults to `off`, models load as
   * one-shot sessions (SessionOptions.oneShot: on a GPU no algorithm search and no CUDA graphs),
   * and, unless `precision` says otherwise, GPU variants in float32 come before half ones
   * (ONE_SHOT_PRECISION: a half model's set-up at each new shape costs seconds in cuDNN).
   */
  oneShot?: boolean;
  /** Progress of pulling a package opened by reference (`oci://…`). */
  onPullProgress?: (done: number, total: number) => void;
  /** Runs split models' tails on peers (fabric/ HttpOffloader); without one, tails run here. */
  offloader?: Offloader;
}

export interface RunResult extends ProviderReport {
  outputs: Record<string, unknown>;
  /** Variant id that ran, per model id. */
  variant: Record<string, string>;
  /** Milliseconds per stage (decode, pre, infer:<model>, post) and `total`. */
  timings: Timings;
  /**
   * Bytes this run handed to and took back from models on an accelerator (their input and output
   * tensors, which cross between host and device memory); zero for models on the CPU.
   */
  copies: PipelineCopies;
  /** Where the head and tail of each split model ran, by head model id (packages with a `split` step). */
  split?: Record<string, SplitPlacement>;
}

/** What a peer returns for the tail of a split model (`Runner.runTail`). */
export interface TailResult {
  outputs: Record<string, Tensor>;
  variant: string;
  provider: string;
  ms: number;
}

/** Models that are the tail of a split: loaded when a run needs them here, not up front. */
function splitTails(m: Manifest): Set<string> {
  return new Set(m.models.flatMap((x) => (x.split ? [x.split.tail] : [])));
}

/**
 * Cut tensors from a peer, checked against the tail's declared inputs before they reach the runtime
 * (a malformed request is E_RUN_INPUT, never a run failure that would make the model fall back).
 */
function checkTailFeeds(
  session: ModelSession,
  feeds: Record<string, Tensor>,
  tail: string,
  budget: Required<RunnerBudget>,
): void {
  for (const [name, t] of Object.entries(feeds)) {
    const bad = (why: string) =>
      new RunnerError('E_RUN_INPUT', `cut tensor ${name} of ${tail}: ${why}`, { input: name, dims: t.dims });
    const count = t.dims.reduce((a, b) => a * b, 1);
    if (t.data.length !== count) throw bad(`${t.data.length} values for dims [${t.dims.join(', ')}]`);
    if (t.data.byteLength > budget.maxTensorBytes) throw bad(`larger than the budget's ${budget.maxTensorBytes} bytes`);
    const want = session.inputShapes?.find((s) => s.name === name);
    if (!want) continue;
    if (want.type !== t.type) throw bad(`${t.type}, the model takes ${want.type}`);
    // no dims declared (a cut without shapes): any rank
    if (want.shape.length > 0 && want.shape.length !== t.dims.length)
      throw bad(`rank ${t.dims.length}, the model takes ${want.shape.length}`);
    want.shape.forEach((d, i) => {
      if (typeof d === 'number' && d >= 0 && t.dims[i] !== d)
        throw bad(`dim ${i} is ${t.dims[i]}, the model takes ${d}`);
    });
  }
}

/** One shared load per key; a failed load is forgotten so the next call retries. */
function once<T>(cache: Map<string, Promise<T>>, key: string, load: () => Promise<T>): Promise<T> {
  let p = cache.get(key);
  if (!p) {
    p = load();
    cache.set(key, p);
    p.catch(() => cache.delete(key));
  }
  return p;
}

export class Runner implements AsyncDisposable {
  private readonly models = new Map<string, Promise<ModelSlot>>();
  private readonly assets = new Map<string, Promise<Buffer>>();
  private readonly scripts = new Map<string, Promise<{ sandbox: Sandbox }>>();
  private closed = false;
  /** Raises the anti-rollback state; set while a verified signer's sequence is still unrecorded. */
  private commitRollback?: () => Promise<void>;
  /** The one-shot first touch still running (prewarm.ts firstTouch). */
  #touch: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #opened: OpenReport = { ms: { total: 0, load: 0, prewarm: 0 }, prewarm: {} };

  private constructor(
    private readonly reader: PackageReader,
    readonly verification: VerifyResult,
    readonly host: HostProfile,
    private selectionState: Selection,
    private readonly options: RunnerOptions,
    private readonly registry: BackendRegistry,
  ) {
    this.budget = resolveBudget(options.budget);
    this.context = {
      manifest: reader.manifest,
      budget: this.budget,
      session: (id) => this.session(id),
      variant: (id) => this.model(id).then((m) => this.variantOf(id, m.current.variant)),
      asset: (id) => this.asset(id),
      script: (path) => this.script(path),
      time: () => {},
      packageId: reader.id,
      ...(options.offloader ? { offloader: options.offloader } : {}),
      canRun: (id) => Boolean(this.selectionState.models.find((m) => m.model === id)?.chosen),
    };
  }

  static async open(path: string, options: RunnerOptions = {}): Promise<Runner> {
    const t0 = performance.now();
    // A registry reference is pulled into the cache first; the cached file is then opened below.
    let resolvedHost: HostProfile | undefined;
    if (isReference(path)) {
      const { resolveReference } = await import('./reference.js');
      ({ path, host: resolvedHost } = await resolveReference(path, {
        ...options,
        ...(options.registry ? { runtimes: options.registry.runtimes() } : {}),
        ...(options.onPullProgress ? { onProgress: options.onPullProgress } : {}),
      }));
    }
    const reader = await PackageReader.open(path);
    try {
      const policy = await resolvePolicy({
        trust: options.trust ?? [],
        trustDir: options.trustDir,
        threshold: options.threshold,
        allowUnsigned: Boolean(options.allowUnsigned),
        allowDowngrade: Boolean(options.allowDowngrade),
        stateDir: options.stateDir,
      });
      return await Runner.fromReader(reader, policy, options, { t0, ...(resolvedHost ? { host: resolvedHost } : {}) });
    } catch (e) {
      await reader.close();
      throw e;
    }
  }

  /**
   * Runs a package already open (the browser build opens a File, Blob or URL) under a loaded trust
   * policy: the rest of `open`. The runner owns the reader from here; on failure the caller closes it.
   */
  static async fromReader(
    reader: PackageReader,
    policy: LoadedPolicy,
    options: RunnerOptions = {},
    /** From `open`: when opening began, and the host a registry reference was resolved for. */
    from: { t0?: number; host?: HostProfile } = {},
  ): Promise<Runner> {
    const t0 = from.t0 ?? performance.now();
    // Payloads are checked as they are read (readVerified), so only what runs is hashed.
    const verification = await verifyReader(reader, policy, { integrity: 'on-read' });
    // The manifest's pipeline, and the pipeline as each variant's step patches change it.
    const budget = resolveBudget(options.budget);
    validatePipeline(reader.manifest, budget);
    for (const m of reader.manifest.models)
      for (const v of m.variants) if (v.steps) validatePipeline(withVariants(reader.manifest, [v]), budget);
    const host =
      from.host ??
      (typeof options.host === 'object'
        ? options.host
        : await resolveHost(options.host !== undefined ? { host: options.host } : {}));
    const registry = options.registry ?? defaultRegistry();
    const selection = selectVariants(reader.manifest, host, {
      ...(options.variant !== undefined ? { variant: options.variant } : {}),
      ...(options.precision
        ? { precision: options.precision }
        : options.oneShot
          ? { precision: ONE_SHOT_PRECISION }
          : {}),
      backends: registry.runtimes(),
      absent: absentVariants(reader.manifest, reader.absent),
    });
    const runner = new Runner(reader, verification, host, selection, options, registry);
    // Recorded after the first successful run, when every byte it used has verified (on read).
    if (verification.signatures.pending?.length) runner.commitRollback = () => commitRollback(policy, verification);
    await runner.prewarm(t0);
    return runner;
  }

  get manifest(): Manifest {
    return this.reader.manifest;
  }

  get id(): string {
    return this.reader.id;
  }

  /** The selection, updated with load attempts (failed variants become load-failed rejections). */
  get selection(): Selection {
    return this.selectionState;
  }

  private variantOf(modelId: string, variantId: string): Variant {
    return this.manifest.models.find((m) => m.id === modelId)!.variants.find((v) => v.id === variantId)!;
  }

  /** Loads (once) the best loadable variant of a model, falling back and recording why. */
  session(modelId: string): Promise<ModelSession> {
    return this.model(modelId);
  }

  /** The most input shapes one model is pre-warmed at, and the most sessions it holds on an accelerator. */
  private get maxShapes(): number {
    const p = this.options.prewarm;
    const n = (typeof p === 'object' ? p.maxShapes : undefined) ?? DEFAULT_MAX_SHAPES;
    if (!Number.isInteger(n) || n < 0)
      throw new RunnerError('E_RUN_LOAD', `prewarm maxShapes must be a non-negative integer, not ${n}`);
    return n;
  }

  private get prewarmMode(): PrewarmMode {
    const p = this.options.prewarm;
    return (typeof p === 'object' ? p.mode : p) ?? (this.options.oneShot ? 'off' : 'auto');
  }

  /** Runs per pre-warmed shape, when given (runner/prewarm.ts). */
  private get warmRuns(): number | undefined {
    const p = this.options.prewarm;
    const n = typeof p === 'object' ? p.runs : undefined;
    if (n !== undefined && (!Number.isInteger(n) || n < 1 || n > MAX_WARM_RUNS))
      throw new RunnerError('E_RUN_LOAD', `prewarm runs must be an integer from 1 to ${MAX_WARM_RUNS}, not ${n}`);
    return n;
  }

  /** What `open` cost and what it pre-warmed (runner/prewarm.ts). */
  get opened(): OpenReport {
    return this.#opened;
  }

  private model(modelId: string): Promise<ModelSlot> {
    this.assertOpen();
    return once(this.models, modelId, () => this.loadModel(modelId));
  }

  private modelSelection(modelId: string): ModelSelection {
    const sel = this.selectionState.models.find((m) => m.model === modelId);
    if (!sel)
      throw new RunnerError(
        'E_RUN_PIPELINE',
        `the pipeline uses model ${JSON.stringify(modelId)}, which the manifest does not declare`,
        { model: modelId },
      );
    return sel;
  }

  private async loadModel(modelId: string): Promise<ModelSlot> {
    const sel = this.modelSelection(modelId);
    try {
      const loaded = await this.loadFirst(modelId, sel, () => []);
      this.selectionState = withModel(this.selectionState, loaded.selection ?? applyAttempts(sel, loaded.attempts));
      const first = { session: loaded.value, variant: loaded.verdict.variant.id, attempts: loaded.attempts };
      return new ModelSlot(
        first,
        (failed) => this.replaceModel(modelId, failed),
        (next, failed) => this.switched(modelId, next, failed),
        (a, b) =>
          JSON.stringify(this.variantOf(modelId, a).steps ?? {}) ===
          JSON.stringify(this.variantOf(modelId, b).steps ?? {}),
        modelId,
      );
    } catch (e) {
      const attempts = (e as { detail?: { attempts?: unknown } }).detail?.attempts;
      if (Array.isArray(attempts))
        this.selectionState = withModel(this.selectionState, applyAttempts(sel, attempts as never));
      throw e;
    }
  }

  /** After a session failed while running: the model's best candidate other than the failed (variant, provider) pairs, or null. */
  private async replaceModel(modelId: string, failed: readonly RunFailure[]): Promise<SlotLoad | null> {
    const candidates = replacementCandidates(this.modelSelection(modelId), failed);
    if (!candidates.length) return null;
    try {
      const loaded = await this.loadFirst(modelId, candidates, failedProviders(failed));
      return { session: loaded.value, variant: loaded.verdict.variant.id, attempts: loaded.attempts };
    } catch {
      return null;
    }
  }

  private switched(modelId: string, next: SlotLoad, failed: readonly RunFailure[]): void {
    this.selectionState = withModel(
      this.selectionState,
      selectionAfterSwitch(this.modelSelection(modelId), next, failed),
    );
  }

  /**
   * Tries `candidates` in order (leaving out each variant's `excluded` providers), verifying the
   * bytes read. Altered package bytes (a digest or archive error while reading) are never a reason
   * to fall back to another variant, and neither is a model naming files it may not read: both stop
   * the run. Any other failure (a read too large, a full disk) is that variant's load failure.
   */
  private async loadFirst(
    modelId: string,
    candidates: ModelSelection | readonly VariantVerdict[],
    excluded: (variant: string) => string[],
  ): Promise<Loaded<ModelSession>> {
    const sessionOptions: SessionOptions = {
      ...(this.options.threads !== undefined ? { threads: this.options.threads } : {}),
      ...(this.options.graphOptimization ? { graphOptimization: this.options.graphOptimization } : {}),
      ...(this.options.modelCache !== undefined ? { modelCache: this.options.modelCache } : {}),
      // as many sessions per model on an accelerator as shapes are pre-warmed (one per shape)
      shapeSessions: this.maxShapes,
      // graphs are captured where open pre-warms; without it, a first run would pay the captures
      ...(this.prewarmMode === 'off' ? { cudaGraphs: false } : {}),
      ...(this.options.oneShot ? { oneShot: true } : {}),
    };
    let fatal: unknown;
    try {
      const loaded = await loadWithFallback(candidates, async (verdict) => {
        const { backend } = await this.registry.resolve(verdict.variant.runtime);
        const ex = excluded(verdict.variant.id);
        return backend
          .load(
            verdict.variant,
            this.variantFiles(verdict.variant.files, (e) => (fatal ??= e)),
            ex.length ? { ...sessionOptions, excludeProviders: ex } : sessionOptions,
          )
          .catch((e: unknown) => {
            if ((e as { code?: unknown }).code === 'E_RUN_MODEL_EXTERNAL') fatal ??= e;
            throw e;
          });
      });
      if (fatal) {
        await loaded.value.release().catch(() => {});
        throw fatal;
      }
      try {
        checkModelInputs(loaded.value, this.budget, modelId, loaded.verdict.variant.id);
      } catch (e) {
        await loaded.value.release().catch(() => {});
        throw e;
      }
      return loaded;
    } catch (e) {
      throw fatal ?? e;
    }
  }

  /**
   * Loads in `open` the models the pre-warm mode names and runs them at their input shapes
   * (runner/prewarm.ts prewarmOpen); a model that fails to load there reports it on the first run.
   */
  private async prewarm(t0: number): Promise<void> {
    const p = this.options.prewarm;
    this.#opened = await prewarmOpen({
      mode: this.prewarmMode,
      maxShapes: this.maxShapes,
      runs: this.warmRuns,
      parallel: typeof p === 'object' ? p.parallel : undefined,
      maxTensorBytes: this.budget.maxTensorBytes,
      selection: this.selectionState,
      shapes: (loaded) => this.shapesOf(loaded),
      load: (id) => this.model(id),
      t0,
    });
    // a one-shot run's later models take their first GPU run beside the first model's (prewarm.ts firstTouch)
    if (this.options.oneShot && this.prewarmMode === 'off' && globalThis.process?.env?.XPKG_FIRST_TOUCH !== '0')
      this.#touch = firstTouch({
        selection: this.selectionState,
        first: this.manifest.pipeline.steps
          .filter((s) => s.model)
          .map((s) => s.model!)
          .slice(0, 1),
        shapes: (loaded) => this.shapesOf(loaded),
        load: (id) => this.model(id),
        maxTensorBytes: this.budget.maxTensorBytes,
      }).catch(() => {});
  }

  /** The shapes the pipeline makes with the variants loaded (`loaded`), else the ones selection chose. */
  private async shapesOf(loaded: readonly string[]) {
    const variants = await Promise.all(
      patchingModels(this.manifest).map((id) =>
        loaded.includes(id)
          ? this.context.variant!(id)
          : this.selectionState.models.find((m) => m.model === id)?.chosen?.variant,
      ),
    );
    return pipelineShapes(
      withVariants(
        this.manifest,
        variants.filter((v) => v !== undefined),
      ),
    );
  }

  /**
   * A variant's files as its backend reads them, each verified against the manifest as it is read.
   * Archive and digest errors go to `tampered` (and are rethrown); any other read error becomes
   * E_RUN_LOAD with its reason.
   */
  private variantFiles(paths: readonly string[], tampered: (e: unknown) => void): VariantFiles {
    const guard = <T>(path: string, p: () => Promise<T>): Promise<T> =>
      p().catch((e: unknown) => {
        if (e instanceof FormatError) {
          tampered(e);
          throw e;
        }
        if (e instanceof RunnerError) throw e;
        throw new RunnerError(
          'E_RUN_LOAD',
          `reading ${path} failed: ${(e as Error)?.message ?? String(e)}`,
          { file: path, reason: (e as { code?: unknown })?.code ?? null },
          { cause: e },
        );
      });
    const record = (path: string) => {
      const f = paths.includes(path) ? this.manifest.files.find((x) => x.path === path) : undefined;
      if (!f) throw new RunnerError('E_RUN_LOAD', `${path} is not one of the variant's files`, { file: path });
      return f;
    };
    return {
      size: (path) => record(path).size,
      read: (path) => guard(path, async () => (record(path), this.reader.readVerified(path))),
      stream: (path, sink) => guard(path, async () => (record(path), this.reader.streamVerified(path, sink))),
      sha256: (path) => record(path).sha256,
    };
  }

  /** Verified bytes of an asset, by id. */
  asset(assetId: string): Promise<Buffer> {
    this.assertOpen();
    const a = (this.manifest.assets ?? []).find((x) => x.id === assetId);
    if (!a)
      return Promise.reject(
        new RunnerError('E_RUN_PIPELINE', `no asset with id ${JSON.stringify(assetId)}`, { asset: assetId }),
      );
    return once(this.assets, assetId, () => this.reader.readVerified(a.path));
  }

  /**
   * A package script loaded in its own sandbox (QuickJS in a worker, with the declared policy capped
   * by `sandboxCaps`), created once and reused; its source and the assets it can read are verified.
   */
  script(path: string): Promise<ScriptHost> {
    this.assertOpen();
    const decl = (this.manifest.pipeline.scripts ?? []).find((s) => s.path === path);
    if (!decl)
      return Promise.reject(
        new RunnerError('E_RUN_PIPELINE', `script ${JSON.stringify(path)} is not declared in pipeline.scripts`, {
          script: path,
        }),
      );
    return once(this.scripts, '', () => this.loadScripts()).then(({ sandbox }) => ({
      // Each script keeps its own declared deadline inside the shared runtime.
      call: (hook, args, o = {}) =>
        sandbox.call(hook, args as Record<string, SandboxValue>, {
          script: path,
          ...(o.deadlineMs !== undefined || decl.policy?.timeMs !== undefined
            ? { deadlineMs: Math.min(o.deadlineMs ?? Infinity, decl.policy?.timeMs ?? Infinity) }
            : {}),
        }),
    }));
  }

  /**
   * One sandbox runtime per loaded package (QuickJS in a worker): every declared script is loaded
   * into it once, from verified bytes, with the largest declared memory/stack/time (each script's
   * own deadline still applies per call), all capped by `sandboxCaps`.
   */
  private async loadScripts(): Promise<{ sandbox: Sandbox }> {
    const decls = this.manifest.pipeline.scripts ?? [];
    const max = (k: 'memoryMiB' | 'timeMs' | 'stackKiB') => {
      const vals = decls.map((d) => d.policy?.[k]).filter((v): v is number => v !== undefined);
      return vals.length ? { [k]: Math.max(...vals) } : {};
    };
    const policy = { ...max('memoryMiB'), ...max('timeMs'), ...max('stackKiB') };
    const assets: Record<string, Uint8Array> = {};
    for (const a of this.manifest.assets ?? []) assets[a.id] = await this.asset(a.id);
    const sandbox = await Sandbox.create({
      policy,
      ...(this.options.sandboxCaps ? { caps: this.options.sandboxCaps } : {}),
      kernels: sandboxKernelsFor(this.budget),
      assets,
    });
    try {
      for (const d of decls)
        await sandbox.load((await this.reader.readVerified(d.path)).toString('utf8'), d.path, { hooks: d.hooks });
    } catch (e) {
      await sandbox.close();
      throw e;
    }
    return { sandbox };
  }

  /** Loads every model the pipeline uses now instead of on the first run. */
  async warmUp(): Promise<void> {
    // A split's tail may run on a peer, and this host may have no variant of it.
    const tails = splitTails(this.manifest);
    await Promise.all(this.manifest.models.filter((m) => !tails.has(m.id)).map((m) => this.model(m.id)));
  }

  /**
   * Runs the tail of split model `headId` on its cut tensors: a peer's side of an offload
   * (serve/routes-fabric.ts), through the same verified, loaded sessions as `run`.
   */
  async runTail(headId: string, inputs: Record<string, Tensor>): Promise<TailResult> {
    this.assertOpen();
    const split = this.manifest.models.find((m) => m.id === headId)?.split;
    if (!split)
      throw new FabricError('E_FABRIC_SPLIT', `model ${JSON.stringify(headId)} is not the head of a split`, {
        model: headId,
      });
    const t0 = performance.now();
    const slot = await this.model(split.tail);
    const names = Object.keys(inputs).sort();
    if (names.join('\u0000') !== [...split.at].sort().join('\u0000'))
      throw new RunnerError('E_RUN_INPUT', `the tail of ${headId} takes the cut tensors ${split.at.join(', ')}`, {
        expected: split.at,
        given: names,
      });
    checkTailFeeds(slot, inputs, split.tail, this.budget);
    const outputs = await slot.run(inputs);
    return {
      outputs,
      variant: slot.current.variant,
      provider: slot.current.session.provider ?? 'cpu',
      ms: performance.now() - t0,
    };
  }

  async run(inputs: Record<string, unknown>): Promise<RunResult> {
    this.assertOpen();
    const t0 = performance.now();
    // Load before timing the pipeline so a first run's stage times are not load times; images the
    // pipeline decodes first decode meanwhile (in the decoder's worker, when it runs).
    const tl = performance.now();
    decodeInputsAhead(this.manifest, inputs, this.budget);
    await this.warmUp();
    const loadMs = performance.now() - tl;
    // Runs may overlap (a daemon): each run's stage times come back with its own result, never
    // through state shared on the runner.
    const { outputs, timings: stages, copies, split } = await this.runSwitching(inputs);
    const timings: Timings = { ...stages };
    if (this.commitRollback) await this.commitRollback().then(() => (this.commitRollback = undefined));
    const variant: Record<string, string> = {};
    const loaded = [];
    for (const [id, p] of this.models) {
      const slot = await p;
      variant[id] = slot.current.variant;
      loaded.push({ model: id, ...slot.current, runFallbacks: slot.runFallbacks });
    }
    if (loadMs > 1) timings.load = loadMs;
    timings.total = performance.now() - t0;
    return {
      outputs,
      variant,
      ...providerReport(loaded),
      timings,
      copies,
      ...(Object.keys(split).length ? { split } : {}),
    };
  }

  /**
   * One pipeline run; when a model falls back, while running, to a variant with other step
   * patches, the run starts over with the new pipeline (at most once per model: each switch
   * rejects the variant that failed).
   */
  private async runSwitching(inputs: Record<string, unknown>): ReturnType<typeof runPipeline> {
    const variants = this.manifest.models.reduce((n, m) => n + m.variants.length, 0);
    for (let switches = 0; ; switches++) {
      try {
        return await runPipeline(this.context, inputs);
      } catch (e) {
        if (!(e instanceof PipelineChanged)) throw e;
        if (switches >= variants)
          throw new RunnerError('E_RUN_BACKEND', `${e.message}, more often than the package has variants`, {
            model: e.model,
          });
      }
    }
  }

  /** Runs the package once per item, in order; a failing item yields its error and the next still runs (run-many.ts). */
  runMany(items: Iterable<ManyInput> | AsyncIterable<ManyInput>): AsyncGenerator<ManyResult, void, undefined> {
    return runMany(this, items);
  }

  /**
   * The one context every run shares: the pipeline memoises per-context work (parsed
   * vocabularies…) by its identity, so it holds nothing that belongs to one run.
   */
  private readonly context: PipelineContext;
  /** The budget with its defaults, resolved once (runner/pipeline/budget.ts). */
  private readonly budget: Required<RunnerBudget>;

  private assertOpen(): void {
    if (this.closed) throw new RunnerError('E_RUN_LOAD', 'runner is closed');
  }

  async close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    // a session is never released while the first touch runs it, which needs the runner open
    await this.#touch;
    this.closed = true;
    for (const p of this.models.values()) {
      const m = await p.catch(() => null);
      await m?.release().catch(() => {});
    }
    for (const p of this.scripts.values()) {
      const s = await p.catch(() => null);
      await s?.sandbox.close().catch(() => {});
    }
    await this.reader.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
