/**
 * What ran where, for every result: the execution provider each model actually ran on, and every
 * fallback on the way there (a variant that did not load, a provider of a variant that did not),
 * with its reason. A GPU variant that falls back to the CPU is never silent.
 */
import type { LoadAttempt } from './select.js';
import type { ModelSession, SessionBinding } from './types.js';

export interface ModelFallback {
  /** The variant that was tried. */
  variant: string;
  /** The provider that failed, when the variant itself loaded on another of its providers. */
  provider?: string;
  /** Error code of a variant that did not load (E_RUN_LOAD, E_RUN_BACKEND, …). */
  code?: string;
  /** `run`: the session loaded and then failed while running; later runs use the fallback. */
  at?: 'run';
  reason: string;
}

export interface ProviderReport {
  /** Per model id: the provider its session runs on (`cpu`, `cuda`, `webgpu`, …). */
  actualProvider: Record<string, string>;
  /** Per model id, only for models where something fell back. */
  fallbacks: Record<string, ModelFallback[]>;
  /**
   * Per model id, where known: how many nodes each provider ran. On an accelerator the `cpu`
   * count is the nodes its provider could not take (onnxruntime placed them on the CPU).
   */
  nodes: Record<string, Readonly<Record<string, number>>>;
  /**
   * Per model id, for models whose backend chose between native bindings (onnxruntime on CUDA):
   * which one made its sessions, cuDNN's search mode, and why not xpkg's when it was not.
   */
  bindings?: Record<string, SessionBinding>;
  /**
   * Per model id, for models whose sessions were asked to run as CUDA graphs: sessions by state
   * (`captured`; `pending` before their first run; `failed: <why>`, which then run node by node).
   */
  graphs?: Record<string, Readonly<Record<string, number>>>;
}

/** The fallbacks of one loaded model: failed variants first, then failed providers of the one that loaded. */
export function modelFallbacks(
  variant: string,
  session: ModelSession,
  attempts: readonly LoadAttempt[],
): ModelFallback[] {
  return [
    ...attempts
      .filter((a) => !a.ok)
      .map((a) => ({ variant: a.variant, ...(a.code ? { code: a.code } : {}), reason: a.reason ?? 'load failed' })),
    ...(session.providerFallbacks ?? []).map((f) => ({ variant, provider: f.provider, reason: f.reason })),
  ];
}

export function providerReport(
  models: Iterable<{
    model: string;
    variant: string;
    session: ModelSession;
    attempts: readonly LoadAttempt[];
    /** Switches made because a session failed while running (runner/model-slot.ts), first to last. */
    runFallbacks?: readonly ModelFallback[];
  }>,
): ProviderReport {
  const report: ProviderReport = { actualProvider: {}, fallbacks: {}, nodes: {} };
  for (const m of models) {
    // a backend that does not say runs on the CPU (the only place xpkg's other backends run today)
    report.actualProvider[m.model] = m.session.provider ?? 'cpu';
    // the first load's failures, then every run-time switch, then the current session's failed providers
    const f = [...(m.runFallbacks ?? []), ...modelFallbacks(m.variant, m.session, m.attempts)];
    if (f.length) report.fallbacks[m.model] = f;
    if (m.session.nodesByProvider) report.nodes[m.model] = { ...m.session.nodesByProvider };
    if (m.session.binding) (report.bindings ??= {})[m.model] = { ...m.session.binding };
    const g = m.session.graphs;
    if (g && Object.keys(g).length) (report.graphs ??= {})[m.model] = { ...g };
  }
  return report;
}
