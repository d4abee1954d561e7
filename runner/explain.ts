/** Renders a selection: a table for people, a stable JSON document for machines. */

import type { Selection, VariantStatus, VariantVerdict } from './select.js';
import type { ArchMatch, PrecisionPolicy, Reason } from './select-rules.js';

export interface ExplainVariantJson {
  id: string;
  status: VariantStatus;
  rank: number | null;
  runtime: string;
  precision: string;
  device: { kind: string; vendor: string; name: string; arch: string | null; match: ArchMatch } | null;
  providers: string[] | null;
  reasons: Reason[];
  notes: string[];
}

export interface ExplainJson {
  host: string;
  backends: string[];
  policy: PrecisionPolicy;
  models: { model: string; forced: string | null; chosen: string | null; variants: ExplainVariantJson[] }[];
}

function variantJson(v: VariantVerdict): ExplainVariantJson {
  return {
    id: v.variant.id,
    status: v.status,
    rank: v.rank ?? null,
    runtime: v.variant.runtime,
    precision: v.variant.precision,
    device: v.device
      ? {
          kind: v.device.kind,
          vendor: v.device.vendor,
          name: v.device.name,
          arch: v.device.arch ?? null,
          match: v.device.match,
        }
      : null,
    providers: v.providers ?? null,
    reasons: v.reasons,
    notes: v.notes,
  };
}

export function selectionJson(s: Selection): ExplainJson {
  return {
    host: s.host,
    backends: s.backends,
    policy: s.policy,
    models: s.models.map((m) => ({
      model: m.model,
      forced: m.forced ?? null,
      chosen: m.chosen?.variant.id ?? null,
      variants: m.variants.map(variantJson),
    })),
  };
}

/**
 * One block per model:
 *   STATUS     VARIANT        RUNTIME      PRECISION  WHY
 *   chosen #1  cpu-int8-vnni  onnxruntime  int8       cpu; providers: cpu; precision int8: 1st in …
 *   rejected   cuda-fp16      onnxruntime  fp16       accelerator: needs a nvidia gpu; host has none
 * Several reasons go on continuation lines under WHY.
 */
export function renderSelection(s: Selection): string {
  const out = [`host: ${s.host}`, `backends: ${s.backends.join(', ') || 'none'}`];
  for (const m of s.models) {
    out.push(
      '',
      `model ${m.model}${m.forced ? ` (forced: ${m.forced})` : ''}: ${m.chosen ? `runs ${m.chosen.variant.id}` : 'NO VARIANT CAN RUN HERE'}`,
    );
    const rows = m.variants.map((v) => {
      const why = v.status === 'rejected' ? v.reasons.map((r) => `${r.code}: ${r.message}`) : [v.notes.join('; ')];
      return [
        v.status === 'rejected' ? 'rejected' : `${v.status} #${v.rank}`,
        v.variant.id,
        v.variant.runtime,
        v.variant.precision,
        why,
      ] as const;
    });
    const head = ['STATUS', 'VARIANT', 'RUNTIME', 'PRECISION'];
    const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
    const pad = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(w[i])).join('  ');
    out.push(`  ${pad(head)}  WHY`);
    for (const r of rows) {
      const [first, ...rest] = r[4].length ? r[4] : [''];
      out.push(`  ${pad(r.slice(0, 4) as string[])}  ${first}`.trimEnd());
      for (const line of rest) out.push(`  ${pad(['', '', '', ''])}  ${line}`);
    }
  }
  return out.join('\n');
}
