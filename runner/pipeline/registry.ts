/**
 * The op registry: each pipeline op declares its parameter schema (TypeBox), which environment
 * names it reads and writes (so a pipeline is checked for dataflow before it runs), the stage its
 * time is charged to, and how it runs.
 */
import type { Static, TSchema } from '@sinclair/typebox';
import { RunnerError, type RunnerErrorCode } from '../../spec/errors.js';
import type { Step } from '../../spec/schema.js';
import { Type } from '../../spec/typebox-lite.js';
import type { PipelineContext, RunnerBudget, SplitPlacement } from '../types.js';
import type { Need } from './budget.js';
import type { ScratchOf, ScratchType } from './scratch.js';
import type { Value, ValueKind } from './values.js';

export type Stage = 'decode' | 'pre' | 'infer' | 'post';

/** What a running op sees: its step, the environment, and the runner's context. */
export interface OpRun {
  readonly ctx: PipelineContext;
  readonly step: Step;
  readonly index: number;
  /** Reads a value, checking its kind. */
  get<K extends ValueKind>(name: string, ...kinds: K[]): Extract<Value, { kind: K }>;
  /**
   * Reads a value the op declared in `lateReads`, once the step writing it has finished (the step
   * itself started without waiting for it); `get` of such a name before `wait` fails.
   */
  wait<K extends ValueKind>(name: string, ...kinds: K[]): Promise<Extract<Value, { kind: K }>>;
  /** Reads a value if present. */
  peek(name: string): Value | undefined;
  set(name: string, value: Value): void;
  /** UTF-8 text of an asset, read once per context. */
  text(assetId: string): Promise<string>;
  /** A value derived once per context (e.g. a parsed vocabulary), by key. */
  memo<T>(key: string, make: () => Promise<T>): Promise<T>;
  /** Throws E_RUN_PIPELINE naming this step. */
  fail(message: string, detail?: Record<string, unknown>): never;
  /** The runner's budget, defaults filled in. */
  readonly budget: Required<RunnerBudget>;
  /**
   * An array for a value that usually dies with the run (a model's input tensor), reused across
   * runs of this runner: given back when the run has finished unless its result refers to it
   * (scratch.ts). Call `fits` first.
   */
  scratch<T extends ScratchType>(type: T, length: number): ScratchOf<T>;
  /** Call before allocating: throws E_RUN_BUDGET naming this step when `need` is above the budget. */
  fits(need: Need, what: string): void;
  /** Counts bytes a model on an accelerator took in and handed back (run.ts PipelineCopies). */
  copied(model: string, hostToDevice: number, deviceToHost: number): void;
  /** Records where the parts of a split model ran (the `split` op), by its head model id. */
  placed(model: string, placement: SplitPlacement): void;
}

export interface OpDef<S extends TSchema = TSchema> {
  readonly op: string;
  readonly stage: Stage;
  /** One line for PIPELINE.md and error messages. */
  readonly summary: string;
  readonly params: S;
  /** The step must name a model (`step.model`). */
  readonly model?: boolean;
  reads(p: Static<S>): string[];
  /**
   * Names among `reads` the op asks for with `OpRun.wait`, after work that does not need them: the
   * step may start before the steps writing them have finished (schedule.ts).
   */
  lateReads?(p: Static<S>): string[];
  writes(p: Static<S>): string[];
  /** Asset ids the step needs. */
  assets?(p: Static<S>): string[];
  /** Cross-field checks a schema can't express; returns a problem or undefined. */
  check?(p: Static<S>): string | undefined;
  /**
   * The least the step allocates whatever its input (for one item of a batch), when the params
   * alone tell: validation refuses a step that could never fit the runner's budget.
   */
  size?(p: Static<S>): (Need & { what: string }) | undefined;
  run(p: Static<S>, x: OpRun): Promise<void> | void;
}

const registry = new Map<string, OpDef>();

export function defineOp<S extends TSchema>(def: OpDef<S>): OpDef<S> {
  if (registry.has(def.op)) throw new Error(`pipeline op ${def.op} registered twice`);
  registry.set(def.op, def as unknown as OpDef);
  return def;
}

export function getOp(op: string): OpDef | undefined {
  return registry.get(op);
}

export function listOps(): OpDef[] {
  return [...registry.values()];
}

export function pipelineError(
  index: number,
  step: Step | undefined,
  message: string,
  detail?: Record<string, unknown>,
  cause?: unknown,
): RunnerError {
  return stepError('E_RUN_PIPELINE', index, step, message, detail, cause);
}

/**
 * Thrown by a model session when this run's feeds no longer fit it (it fell back to a variant
 * with other step patches): steps pass it on untouched and the runner starts the run over.
 */
export class RestartPipeline extends Error {}

/** An error naming the step (index, op, id) it happened in. */
export function stepError(
  code: RunnerErrorCode,
  index: number,
  step: Step | undefined,
  message: string,
  detail?: Record<string, unknown>,
  cause?: unknown,
): RunnerError {
  const where = step ? `step ${index} (${step.op}${step.id ? ` "${step.id}"` : ''})` : `step ${index}`;
  return new RunnerError(
    code,
    `pipeline ${where}: ${message}`,
    { step: index, op: step?.op, ...detail },
    cause === undefined ? undefined : { cause },
  );
}

// Shared parameter schemas.
export const Name = Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_.-]{0,63}$', description: 'environment value name' });
export const AssetId = Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' });
export const Labels = Type.Array(Type.String({ maxLength: 256 }), { maxItems: 100_000 });
