/**
 * The session a model runs on, replaceable while the package stays open: when the session fails
 * *while running* (it loaded, then onnxruntime failed: a GPU out of memory, a kernel the provider
 * cannot run at this shape, a lost device), the same feeds are tried on the model's next candidate
 * (the same variant on its next provider, or the next variant). If that one runs them, it replaces
 * the failed session for every later run and the switch is recorded with its reason; if every
 * candidate fails on the same feeds the feeds are at fault, not the provider, and the first error
 * is thrown with nothing switched.
 */
import { RestartPipeline } from './pipeline/registry.js';
import { type ModelFallback, modelFallbacks } from './provider-report.js';
import { variantProviders } from './providers.js';
import { applyAttempts, type LoadAttempt, type ModelSelection, type VariantVerdict } from './select.js';
import type { ModelSession, ProviderFallback, Tensor } from './types.js';

export interface SlotLoad {
  session: ModelSession;
  variant: string;
  /** Variants tried before (and including) the one that loaded. */
  attempts: LoadAttempt[];
}

/** A (variant, provider) whose session failed while running. */
export interface RunFailure {
  variant: string;
  provider: string;
}

/** Loads the model's best candidate other than the failed ones; null when none loads. */
export type Replace = (failed: readonly RunFailure[]) => Promise<SlotLoad | null>;

/** Told of each switch once the replacement ran the feeds (every failure so far, the new session). */
export type OnSwitch = (next: SlotLoad, failed: readonly RunFailure[]) => void;

/** A session's own failure while running (not bad feeds caught before the runtime was called). */
export function isRunFailure(e: unknown): e is Error & { code: string; detail?: { phase?: unknown } } {
  const x = e as { code?: unknown; detail?: { phase?: unknown } } | null;
  return x?.code === 'E_RUN_BACKEND' && x.detail?.phase === 'run';
}

/** The providers of a variant that failed while running. */
export const failedProviders = (failed: readonly RunFailure[]) => (variant: string) =>
  failed.filter((f) => f.variant === variant).map((f) => f.provider);

/** Whether every provider a variant declares failed while running. */
const allFailed = (v: VariantVerdict, excluded: (variant: string) => string[]) =>
  variantProviders(v.variant).every((p) => excluded(v.variant.id).includes(p));

/** The model's candidates still worth loading after `failed`, best first. */
export function replacementCandidates(sel: ModelSelection, failed: readonly RunFailure[]): VariantVerdict[] {
  const excluded = failedProviders(failed);
  return sel.candidates.filter((v) => !allFailed(v, excluded));
}

/** The selection after a switch: variants whose every provider failed while running are rejected (run-failed). */
export function selectionAfterSwitch(
  sel: ModelSelection,
  next: SlotLoad,
  failed: readonly RunFailure[],
): ModelSelection {
  const excluded = failedProviders(failed);
  const runFailed = sel.variants
    .filter((v) => allFailed(v, excluded))
    .map((v) => ({
      variant: v.variant.id,
      ok: false,
      code: 'E_RUN_BACKEND',
      phase: 'run' as const,
      reason: `failed while running on ${excluded(v.variant.id).join(', ')}`,
    }));
  return applyAttempts(sel, [...runFailed, ...next.attempts]);
}

const firstLine = (e: unknown) =>
  String((e as Error)?.message ?? e)
    .split('\n')[0]
    .slice(0, 500);

/**
 * Thrown by a slot that switched, while running, to a variant whose step patches differ from the
 * failed one's (FORMAT.md §4.1): the feeds it holds were made for the other pipeline, so the
 * runner runs the whole pipeline again with the new variant's patches.
 */
export class PipelineChanged extends RestartPipeline {
  constructor(readonly model: string) {
    super(`model ${model} switched to a variant with its own pipeline steps`);
  }
}

export class ModelSlot implements ModelSession {
  #current: SlotLoad;
  readonly #replace: Replace;
  readonly #onSwitch: OnSwitch | undefined;
  /** Run-time switches so far, each with the load failures met on the way. */
  readonly #fallbacks: ModelFallback[] = [];
  readonly #failed: RunFailure[] = [];
  #switching: Promise<void> | null = null;
  readonly #inflight = new Map<ModelSession, number>();
  readonly #retired = new Set<ModelSession>();
  #released = false;

  readonly #sameFeeds: (a: string, b: string) => boolean;

  /**
   * `sameFeeds(a, b)`: whether variant b takes the feeds made for variant a (same step patches);
   * when not, a switch to b ends the failed run with PipelineChanged instead of retrying in place.
   */
  constructor(
    first: SlotLoad,
    replace: Replace,
    onSwitch?: OnSwitch,
    sameFeeds: (a: string, b: string) => boolean = () => true,
    readonly model = '',
  ) {
    this.#current = first;
    this.#replace = replace;
    this.#onSwitch = onSwitch;
    this.#sameFeeds = sameFeeds;
  }

  /** The session every new run goes to, its variant and load attempts. */
  get current(): Readonly<SlotLoad> {
    return this.#current;
  }

  /** Switches made because a session failed while running, in order, with the fallbacks of each replaced session's load. */
  get runFallbacks(): readonly ModelFallback[] {
    return this.#fallbacks;
  }

  get inputNames(): readonly string[] {
    return this.#current.session.inputNames;
  }
  get outputNames(): readonly string[] {
    return this.#current.session.outputNames;
  }
  get inputShapes(): ModelSession['inputShapes'] {
    return this.#current.session.inputShapes;
  }
  get outputShapes(): ModelSession['outputShapes'] {
    return this.#current.session.outputShapes;
  }
  get provider(): string | undefined {
    return this.#current.session.provider;
  }
  get providerFallbacks(): readonly ProviderFallback[] | undefined {
    return this.#current.session.providerFallbacks;
  }
  get nodesByProvider(): Readonly<Record<string, number>> | undefined {
    return this.#current.session.nodesByProvider;
  }
  get sessions(): number | undefined {
    return this.#current.session.sessions;
  }

  async run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    const used = this.#current;
    try {
      return await this.#runOn(used.session, feeds);
    } catch (e) {
      if (!isRunFailure(e)) throw e;
      return this.#fallBack(used, e, feeds);
    }
  }

  async #fallBack(used: SlotLoad, error: unknown, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    // one switch at a time; a run that failed on a session already replaced retries on its replacement
    while (this.#switching) await this.#switching;
    if (this.#current !== used) return this.run(feeds);
    let done!: () => void;
    this.#switching = new Promise((r) => (done = r));
    const failed: RunFailure[] = [{ variant: used.variant, provider: used.session.provider ?? 'cpu' }];
    const reasons = [firstLine(error)];
    try {
      for (;;) {
        const next = await this.#replace([...this.#failed, ...failed]).catch(() => null);
        if (!next) throw error;
        if (!this.#sameFeeds(used.variant, next.variant)) {
          this.#commit(used, next, failed, reasons);
          throw new PipelineChanged(this.model);
        }
        try {
          const out = await this.#runOn(next.session, feeds);
          this.#commit(used, next, failed, reasons);
          return out;
        } catch (e) {
          await next.session.release().catch(() => {});
          if (!isRunFailure(e)) throw error;
          failed.push({ variant: next.variant, provider: next.session.provider ?? 'cpu' });
          reasons.push(firstLine(e));
        }
      }
    } finally {
      this.#switching = null;
      done();
    }
  }

  #commit(used: SlotLoad, next: SlotLoad, failed: RunFailure[], reasons: string[]): void {
    this.#failed.push(...failed);
    // how the replaced session came to be stays on record; the report adds the new one's own load
    this.#fallbacks.push(...modelFallbacks(used.variant, used.session, used.attempts));
    failed.forEach((f, i) =>
      this.#fallbacks.push({
        variant: f.variant,
        provider: f.provider,
        code: 'E_RUN_BACKEND',
        at: 'run',
        reason: reasons[i],
      }),
    );
    this.#current = next;
    this.#retire(used.session);
    this.#onSwitch?.(next, this.#failed);
  }

  async #runOn(session: ModelSession, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    this.#inflight.set(session, (this.#inflight.get(session) ?? 0) + 1);
    try {
      return await session.run(feeds);
    } finally {
      const n = (this.#inflight.get(session) ?? 1) - 1;
      if (n) this.#inflight.set(session, n);
      else {
        this.#inflight.delete(session);
        if (this.#retired.delete(session)) await session.release().catch(() => {});
      }
    }
  }

  /** A replaced session is released once no run uses it any more. */
  #retire(session: ModelSession): void {
    if (this.#inflight.has(session)) this.#retired.add(session);
    else void session.release().catch(() => {});
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await this.#current.session.release();
  }
}
