/**
 * Variant step patches (FORMAT.md §4.1): a variant may change pipeline steps, by step id, when it
 * is the variant a model runs — a GPU variant that takes uint8 pixels and returns class ids instead
 * of scores changes the steps around its `infer`. The pipeline a run executes is the manifest's,
 * with the patches of the variants actually loaded applied; the manifest validator has already
 * checked that each patched id names one step and that patches of different models never meet.
 */
import type { Manifest, Step, Variant } from '../../spec/schema.js';

/** RFC 7396 JSON merge patch: objects merge key by key, null removes a key, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    // Defined, not assigned: a "__proto__" member (the strict parser keeps it as a key) set the
    // merged object's prototype instead, so the params seen by a run differed from their own keys.
    else
      Object.defineProperty(out, k, {
        value: mergePatch(Object.hasOwn(out, k) ? out[k] : undefined, v),
        enumerable: true,
        writable: true,
        configurable: true,
      });
  }
  return out;
}

/** `steps` with the patches of `variants` applied (unpatched steps are the same objects). */
export function patchSteps(steps: readonly Step[], variants: readonly Variant[]): Step[] {
  const patches = new Map(variants.flatMap((v) => Object.entries(v.steps ?? {})));
  if (!patches.size) return [...steps];
  return steps.map((s) => {
    const p = s.id === undefined ? undefined : patches.get(s.id);
    if (!p) return s;
    // A new op gets exactly the patch's params; the same op gets them merged over its own.
    const params =
      p.op !== undefined && p.op !== s.op
        ? (p.params ?? {})
        : (mergePatch(s.params ?? {}, p.params ?? {}) as Record<string, unknown>);
    return { ...s, ...(p.op !== undefined ? { op: p.op } : {}), params };
  });
}

/** The manifest as a run with `variants` sees it: the same, with their step patches applied. */
export function withVariants<M extends Pick<Manifest, 'pipeline'>>(m: M, variants: readonly Variant[]): M {
  if (!variants.some((v) => v.steps)) return m;
  return { ...m, pipeline: { ...m.pipeline, steps: patchSteps(m.pipeline.steps, variants) } };
}

/** Ids of the models with a variant that patches steps: only their loaded variants change the pipeline. */
export function patchingModels(m: Pick<Manifest, 'models'>): string[] {
  return m.models.filter((x) => x.variants.some((v) => v.steps)).map((x) => x.id);
}
