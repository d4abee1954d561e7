/**
 * Variant selection: every variant of every model is listed as chosen, candidate or rejected, with
 * the reasons; runnable ones are ranked (accelerator over CPU, exact arch over compatible, the
 * precision policy, then declared order). `loadWithFallback` then tries the ranking in order and
 * records why each failed; `explainVariants` renders the whole decision.
 */
import { RunnerError } from '../spec/errors.js';
import type { Model, Variant } from '../spec/schema.js';
import { defaultRegistry } from './backends/index.js';
import { type ExplainJson, renderSelection, selectionJson } from './explain.js';
import { hostSummary } from './host.js';
import type { HostProfile } from './host-profile.js';
import {
  DEFAULT_PRECISION_POLICY,
  type DeviceMatch,
  evaluateVariant,
  type Precision,
  type PrecisionPolicy,
  precisionList,
  preferPrecision,
  type Reason,
} from './select-rules.js';

export type { ExplainJson } from './explain.js';
export {
  type ArchMatch,
  DEFAULT_PRECISION_POLICY,
  type DeviceMatch,
  ONE_SHOT_PRECISION,
  type Precision,
  type PrecisionPolicy,
  preferPrecision,
  type Reason,
  type ReasonCode,
} from './select-rules.js';

export type VariantStatus = 'chosen' | 'candidate' | 'rejected';

export interface VariantVerdict {
  model: string;
  variant: Variant;
  status: VariantStatus;
  /** 1-based place among runnable variants; absent when rejected. */
  rank?: number;
  /** Why it cannot run here (rejected only). */
  reasons: Reason[];
  /** Facts behind the ranking (accelerator matched, precision policy place, providers). */
  notes: string[];
  device?: DeviceMatch;
  providers?: string[];
  /** Index in the manifest's variant list. */
  declared: number;
}

export interface ModelSelection {
  model: string;
  /** Variant id forced with `--variant`; no fallback to others then. */
  forced?: string;
  chosen: VariantVerdict | null;
  /** What loading tries, best first. */
  candidates: VariantVerdict[];
  /** Every variant: candidates in rank order, then the rejected in declared order. */
  variants: VariantVerdict[];
}

export interface Selection {
  host: string;
  policy: PrecisionPolicy;
  /** Runtimes xpkg has backends for. */
  backends: string[];
  models: ModelSelection[];
}

export interface SelectOptions {
  /** Force a variant by id (`--variant`); one per model at most. */
  variant?: string | readonly string[];
  /** A whole policy, a partial one merged over the default, or one precision to prefer everywhere. */
  precision?: Precision | Partial<PrecisionPolicy>;
  /** Runtimes with a registered backend (default: the process-wide registry's). */
  backends?: readonly string[];
  /** Variant ids a partial package lacks (spec/partial.ts absentVariants): never selected. */
  absent?: ReadonlySet<string>;
}

function resolvePolicy(p: SelectOptions['precision']): PrecisionPolicy {
  if (p === undefined) return { ...DEFAULT_PRECISION_POLICY };
  if (typeof p === 'string') return preferPrecision(p);
  return { ...DEFAULT_PRECISION_POLICY, ...p };
}

const ordinal = (n: number) =>
  `${n}${n % 10 === 1 && n % 100 !== 11 ? 'st' : n % 10 === 2 && n % 100 !== 12 ? 'nd' : n % 10 === 3 && n % 100 !== 13 ? 'rd' : 'th'}`;
const MATCH_RANK = { exact: 0, compatible: 1, any: 2 } as const;

function selectModel(
  model: Model,
  host: HostProfile,
  policy: PrecisionPolicy,
  backends: readonly string[],
  forced: string | undefined,
  absent: ReadonlySet<string>,
): ModelSelection {
  const runnable: { v: VariantVerdict; key: number[] }[] = [];
  const rejected: VariantVerdict[] = [];
  model.variants.forEach((variant, declared) => {
    const ev = evaluateVariant(variant, host, backends);
    if (absent.has(variant.id))
      ev.reasons.push({ code: 'absent', message: 'this partial package leaves its files out' });
    const verdict: VariantVerdict = {
      model: model.id,
      variant,
      status: 'rejected',
      reasons: ev.reasons,
      notes: ev.notes,
      declared,
    };
    if (ev.device) verdict.device = ev.device;
    if (ev.providers) verdict.providers = ev.providers;
    if (ev.reasons.length) return rejected.push(verdict);
    const { list, label } = precisionList(policy, host, ev.device);
    const place = list.indexOf(variant.precision);
    verdict.notes.push(
      place >= 0
        ? `precision ${variant.precision}: ${ordinal(place + 1)} in ${label}`
        : `precision ${variant.precision}: not in ${label}`,
    );
    verdict.status = 'candidate';
    runnable.push({
      v: verdict,
      key: [ev.device ? 0 : 1, ev.device ? MATCH_RANK[ev.device.match] : 3, place >= 0 ? place : list.length, declared],
    });
  });
  runnable.sort((a, b) => {
    for (let i = 0; i < a.key.length; i++) if (a.key[i] !== b.key[i]) return a.key[i] - b.key[i];
    return 0;
  });
  const ranked = runnable.map((r, i) => ((r.v.rank = i + 1), r.v));
  let candidates = ranked;
  if (forced) {
    const f = ranked.find((v) => v.variant.id === forced)!;
    for (const v of ranked) if (v !== f) v.notes.push(`not tried: --variant forces ${forced}`);
    candidates = [f];
  }
  const chosen = candidates[0] ?? null;
  if (chosen) chosen.status = 'chosen';
  return { model: model.id, ...(forced ? { forced } : {}), chosen, candidates, variants: [...ranked, ...rejected] };
}

/**
 * Decides, for each model of the manifest, which variants this host can run and in what order.
 * Throws E_RUN_VARIANT_UNKNOWN / E_RUN_VARIANT_UNSUPPORTED for a bad `variant` option; a model
 * with no runnable variant is not an error here (explain lists it), loading reports it.
 */
export function selectVariants(
  manifest: { models: readonly Model[] },
  host: HostProfile,
  options: SelectOptions = {},
): Selection {
  const policy = resolvePolicy(options.precision);
  const backends = [...(options.backends ?? defaultRegistry().runtimes())].sort();
  const forcedIds =
    options.variant === undefined ? [] : typeof options.variant === 'string' ? [options.variant] : [...options.variant];
  const forcedByModel = new Map<string, string>();
  for (const id of forcedIds) {
    const model = manifest.models.find((m) => m.variants.some((v) => v.id === id));
    if (!model) {
      const known = manifest.models.flatMap((m) => m.variants.map((v) => v.id));
      throw new RunnerError(
        'E_RUN_VARIANT_UNKNOWN',
        `no variant ${JSON.stringify(id)} in this package (variants: ${known.join(', ')})`,
        { variant: id, known },
      );
    }
    const other = forcedByModel.get(model.id);
    if (other && other !== id)
      throw new RunnerError(
        'E_RUN_VARIANT_UNSUPPORTED',
        `--variant names two variants of model ${model.id}: ${other} and ${id}`,
        { model: model.id, variants: [other, id] },
      );
    forcedByModel.set(model.id, id);
  }
  const absent = options.absent ?? new Set<string>();
  for (const [modelId, id] of forcedByModel) {
    if (absent.has(id))
      throw new RunnerError(
        'E_RUN_VARIANT_ABSENT',
        `variant ${id} is not in this partial package; pull it (xpkg pull --variant ${id}) or use the whole package`,
        { variant: id, model: modelId },
      );
    const model = manifest.models.find((m) => m.id === modelId)!;
    const ev = evaluateVariant(model.variants.find((v) => v.id === id)!, host, backends);
    if (ev.reasons.length) {
      throw new RunnerError(
        'E_RUN_VARIANT_UNSUPPORTED',
        `variant ${id} cannot run on this host: ${ev.reasons.map((r) => `${r.code}: ${r.message}`).join('; ')}`,
        { variant: id, model: modelId, reasons: ev.reasons },
      );
    }
  }
  return {
    host: hostSummary(host),
    policy,
    backends,
    models: manifest.models.map((m) => selectModel(m, host, policy, backends, forcedByModel.get(m.id), absent)),
  };
}

export interface LoadAttempt {
  variant: string;
  ok: boolean;
  /** `run`: the variant loaded, then failed while running (runner/model-slot.ts). */
  phase?: 'run';
  /** Error code of the failure (E_RUN_LOAD, E_RUN_BACKEND, …). */
  code?: string;
  reason?: string;
}

export interface Loaded<T> {
  verdict: VariantVerdict;
  value: T;
  attempts: LoadAttempt[];
  /** The model's selection updated with the attempts: failed ones rejected (load-failed), the loaded one chosen. */
  selection?: ModelSelection;
}

/** The model's selection after loading: failures become `load-failed` rejections. */
export function applyAttempts(sel: ModelSelection, attempts: readonly LoadAttempt[]): ModelSelection {
  const byId = new Map(attempts.map((a) => [a.variant, a]));
  const loaded = attempts.find((a) => a.ok)?.variant;
  const variants = sel.variants.map((v): VariantVerdict => {
    const a = byId.get(v.variant.id);
    if (a && !a.ok)
      return {
        ...v,
        status: 'rejected',
        rank: undefined,
        reasons: [
          ...v.reasons,
          {
            code: a.phase === 'run' ? 'run-failed' : 'load-failed',
            message: `${a.code ?? 'error'}: ${a.reason}`,
            detail: { code: a.code },
          },
        ],
      };
    if (v.status === 'rejected') return v;
    return { ...v, status: v.variant.id === loaded ? 'chosen' : 'candidate' };
  });
  const order = (v: VariantVerdict) => (v.status === 'rejected' ? 1 : 0);
  const sorted = [...variants].sort(
    (a, b) => order(a) - order(b) || (a.rank ?? 0) - (b.rank ?? 0) || a.declared - b.declared,
  );
  const chosen = sorted.find((v) => v.status === 'chosen') ?? null;
  // a forced variant stays the only candidate (a fallback after a run failure must not pick another)
  const candidates = sorted.filter((v) => v.status !== 'rejected' && (!sel.forced || v.variant.id === sel.forced));
  return { ...sel, chosen, candidates, variants: sorted };
}

/**
 * Tries the candidates best first; a failing load falls back to the next, and each failure is
 * recorded. Throws E_RUN_NO_VARIANT with every selection rejection and load failure when nothing
 * loads. Given a ModelSelection it also returns the selection updated with the attempts.
 */
export async function loadWithFallback<T>(
  candidates: ModelSelection | readonly VariantVerdict[],
  load: (verdict: VariantVerdict) => Promise<T>,
): Promise<Loaded<T>> {
  const sel = 'candidates' in candidates ? candidates : undefined;
  const list = sel ? sel.candidates : (candidates as readonly VariantVerdict[]);
  const attempts: LoadAttempt[] = [];
  for (const verdict of list) {
    try {
      const value = await load(verdict);
      attempts.push({ variant: verdict.variant.id, ok: true });
      return { verdict, value, attempts, ...(sel ? { selection: applyAttempts(sel, attempts) } : {}) };
    } catch (e) {
      const err = e as { code?: unknown; message?: unknown };
      attempts.push({
        variant: verdict.variant.id,
        ok: false,
        code: typeof err?.code === 'string' ? err.code : 'E_INTERNAL',
        reason: String(err?.message ?? e),
      });
    }
  }
  const modelId = sel?.model ?? list[0]?.model ?? '?';
  const rejected = (sel?.variants ?? [])
    .filter((v) => v.status === 'rejected')
    .map((v) => ({ variant: v.variant.id, reasons: v.reasons }));
  const parts = [
    ...rejected.map((r) => `${r.variant}: ${r.reasons.map((x) => x.code).join(', ')}`),
    ...attempts.map((a) => `${a.variant}: load failed (${a.code})`),
  ];
  throw new RunnerError(
    'E_RUN_NO_VARIANT',
    `no variant of model ${modelId} can run on this host${parts.length ? `: ${parts.join('; ')}` : ''}`,
    { model: modelId, rejected, attempts },
  );
}

/** Replaces one model's entry of a selection (after loadWithFallback). */
export function withModel(selection: Selection, model: ModelSelection): Selection {
  return { ...selection, models: selection.models.map((m) => (m.model === model.model ? model : m)) };
}

export interface ExplainOutcome {
  /** What `xpkg explain --json` prints under `result`. */
  result: ExplainJson;
  /** The human table. */
  human: string;
  selection: Selection;
}

/** The pure part of `xpkg explain`: select, then render as a table and as JSON. */
export function explainVariants(
  manifest: { models: readonly Model[] },
  host: HostProfile,
  options: SelectOptions = {},
): ExplainOutcome {
  const selection = selectVariants(manifest, host, options);
  return { result: selectionJson(selection), human: renderSelection(selection), selection };
}
