/**
 * Static checks of a manifest's pipeline, before anything runs: every op is known, its params
 * match its schema, the models and assets it names exist, every value it reads was written by
 * an earlier step (or is an input), every declared output gets written, and no step asks for
 * more than the runner's budget whatever the input.
 */
import type { Manifest } from '../../spec/schema.js';
import type { RunnerBudget } from '../types.js';
import { overBudget, resolveBudget } from './budget.js';
import { paramProblems } from './params.js';
import { getOp, pipelineError, stepError } from './registry.js';
import './builtin-ops.js';

export type PipelineManifest = Pick<Manifest, 'inputs' | 'outputs' | 'models' | 'pipeline'> &
  Partial<Pick<Manifest, 'assets'>>;

const checked = new WeakMap<object, true>();

/**
 * Throws RunnerError E_RUN_PIPELINE naming the first bad step (index, op, problems), or
 * E_RUN_BUDGET naming the first step whose least allocation is above `budget` (default: DEFAULT_BUDGET).
 */
export function validatePipeline(m: PipelineManifest, budget?: RunnerBudget): void {
  validateSteps(m);
  const b = resolveBudget(budget);
  m.pipeline.steps.forEach((step, index) => {
    const need = getOp(step.op)!.size?.((step.params ?? {}) as never);
    const over = need && overBudget(b, need, need.what);
    if (over) throw stepError('E_RUN_BUDGET', index, step, over.message, over.detail);
  });
}

function validateSteps(m: PipelineManifest): void {
  if (checked.has(m.pipeline)) return;
  const models = new Set(m.models.map((x) => x.id));
  const assets = new Set((m.assets ?? []).map((a) => a.id));
  const defined = new Set(m.inputs.map((i) => i.name));
  const steps = m.pipeline.steps;
  if (!steps.length) throw pipelineError(0, undefined, 'the pipeline has no steps');
  steps.forEach((step, index) => {
    const def = getOp(step.op);
    if (!def) throw pipelineError(index, step, `unknown op ${JSON.stringify(step.op)}`);
    const scripted = step.op === 'script';
    if (scripted && (step.script === undefined || step.hook === undefined))
      throw pipelineError(index, step, 'a script step names its `script` and `hook`');
    if (!scripted && (step.script !== undefined || step.hook !== undefined))
      throw pipelineError(index, step, 'only `script` steps take `script` and `hook`');
    if (scripted && !(m.pipeline.scripts ?? []).some((s) => s.path === step.script && s.hooks.includes(step.hook!))) {
      throw pipelineError(
        index,
        step,
        `hook ${JSON.stringify(step.hook)} of ${JSON.stringify(step.script)} is not declared in pipeline.scripts`,
      );
    }
    const params = step.params ?? {};
    const errors = paramProblems(def, params);
    if (errors.length) {
      const problems = errors.map((e) => ({ path: `/params${e.path}`, message: e.message }));
      throw pipelineError(index, step, `bad params: ${problems.map((p) => `${p.path} ${p.message}`).join('; ')}`, {
        problems,
      });
    }
    const problem = def.check?.(params as never);
    if (problem) throw pipelineError(index, step, problem, { problems: [{ path: '/params', message: problem }] });
    if (def.model) {
      if (!step.model) throw pipelineError(index, step, 'needs a model');
      if (!models.has(step.model))
        throw pipelineError(index, step, `unknown model ${JSON.stringify(step.model)}`, { model: step.model });
    } else if (step.model !== undefined) throw pipelineError(index, step, 'takes no model');
    for (const a of def.assets?.(params as never) ?? []) {
      if (!assets.has(a)) throw pipelineError(index, step, `unknown asset ${JSON.stringify(a)}`, { asset: a });
    }
    for (const r of def.reads(params as never)) {
      if (!defined.has(r))
        throw pipelineError(index, step, `reads ${JSON.stringify(r)} before any step writes it`, { name: r });
    }
    const writes = def.writes(params as never);
    // two values of one step under one name: which one a later step reads would be an accident of order
    const twice = writes.find((w, i) => writes.indexOf(w) !== i);
    if (twice !== undefined) throw pipelineError(index, step, `writes ${JSON.stringify(twice)} twice`, { name: twice });
    for (const w of writes) defined.add(w);
  });
  for (const o of m.outputs) {
    if (!o.optional && !defined.has(o.name))
      throw pipelineError(
        steps.length - 1,
        steps[steps.length - 1],
        `no step writes output ${JSON.stringify(o.name)}`,
        { output: o.name },
      );
  }
  checked.set(m.pipeline, true);
}
