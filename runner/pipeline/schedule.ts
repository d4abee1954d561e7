/**
 * Which steps of a pipeline may run at the same time: the order the manifest lists them in, kept
 * wherever the dataflow needs it. A step waits for the last earlier step that writes a name it reads
 * (read after write), for the earlier steps that read or write a name it writes (so it never
 * overwrites a value another step still reads, or is overwritten by one), and for the earlier step
 * calling a package script (the package's scripts share one sandbox runtime and may keep state
 * between hooks that no name shows).
 *
 * Why: on an accelerator most of a run is the host waiting for the device; steps of independent
 * branches (an OCR package's line crops beside its orientation classifier) fill that wait. A chain
 * (every step reading its predecessor's output) runs exactly as before.
 *
 * `lateReads` are names a step reads only after it has started (an op that can do most of its work
 * first, e.g. `crop-batch` cutting lines before their orientation is known): the step starts
 * without waiting for their writers, and awaits each writer when it asks for the value.
 */
import type { Step } from '../../spec/schema.js';
import type { OpDef } from './registry.js';

export interface StepPlan {
  /** Indices of earlier steps this one starts after. */
  after: number[];
  /** For each late-read name: the index of the step that writes it (absent: a pipeline input). */
  lateWriters: Map<string, number>;
}

export function planSchedule(steps: readonly Step[], defOf: (step: Step) => OpDef): StepPlan[] {
  const lastWriter = new Map<string, number>();
  const readersSince = new Map<string, number[]>();
  let lastScript: number | undefined;
  return steps.map((step, j) => {
    const def = defOf(step);
    const params = (step.params ?? {}) as never;
    const reads = def.reads(params);
    const late = new Set(def.lateReads?.(params) ?? []);
    const writes = def.writes(params);
    const after = new Set<number>();
    const lateWriters = new Map<string, number>();
    for (const r of reads) {
      const w = lastWriter.get(r);
      if (w === undefined) continue;
      if (late.has(r)) lateWriters.set(r, w);
      else after.add(w);
    }
    for (const w of writes) {
      const prev = lastWriter.get(w);
      if (prev !== undefined) after.add(prev);
      for (const r of readersSince.get(w) ?? []) if (r !== j) after.add(r);
    }
    if (step.script !== undefined) {
      if (lastScript !== undefined) after.add(lastScript);
      lastScript = j;
    }
    for (const r of reads) (readersSince.get(r) ?? readersSince.set(r, []).get(r)!).push(j);
    for (const w of writes) {
      lastWriter.set(w, j);
      readersSince.set(w, []);
    }
    return { after: [...after].sort((a, b) => a - b), lateWriters };
  });
}

/** The same steps one after another, in list order (late reads then find their writer finished). */
export function serialPlans(plans: readonly StepPlan[]): StepPlan[] {
  return plans.map((p, i) => ({ after: i ? [i - 1] : [], lateWriters: p.lateWriters }));
}

/**
 * Runs `run(i)` for every step as soon as the steps it comes after have finished. After a failure
 * no further step starts; the ones running are waited for, and the failure of the lowest-indexed
 * step is thrown (the one a run in list order would have met first among those that ran).
 * `wait(i)` is the promise of step i's end, for late reads.
 */
export async function runScheduled(
  plans: readonly StepPlan[],
  run: (i: number, wait: (j: number) => Promise<void>) => Promise<void>,
): Promise<void> {
  let failed = false;
  const skipped = new Error('not started after an earlier failure');
  const done: Promise<void>[] = [];
  const wait = (j: number) => done[j];
  for (let i = 0; i < plans.length; i++) {
    const before = plans[i].after.map((j) => done[j]);
    const start = before.length === 0 ? Promise.resolve() : before.length === 1 ? before[0] : Promise.all(before);
    done.push(
      start.then(() => {
        if (failed) throw skipped;
        return run(i, wait).catch((e) => {
          failed = true;
          throw e;
        });
      }),
    );
  }
  const settled = await Promise.allSettled(done);
  for (const s of settled) if (s.status === 'rejected' && s.reason !== skipped) throw s.reason;
}
