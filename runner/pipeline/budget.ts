/**
 * The runner's resource budget: the most pixels of one image and the most bytes of one tensor a
 * pipeline may make. A manifest is data from whoever built the package, and sizes in it multiply:
 * without a ceiling, a `preprocess` step asking for 32768×32768 made a 1×1 input cost 12.7 GB and
 * a minute before failing. The budget is checked three times: from the manifest alone when the
 * package is opened (`validatePipeline`, each op's `size`), against every model's declared input
 * shape at load, and before every buffer a step sizes from its input.
 */
import { DTYPE_BYTES } from '../../spec/dtypes.js';
import { RunnerError } from '../../spec/errors.js';
import type { DType, ModelSession, RunnerBudget } from '../types.js';

/**
 * Defaults. 100 MP is above every common camera (phones give 12–50 MP, medium format 100 MP) and is
 * 300 MB decoded as RGB; sharp's own default (268 MP) would let one input take 800 MB before any
 * step runs. 1 GiB per tensor holds a 4096-side detector plane in float32 (201 MB) five times over
 * and a batch of 500 text lines of 48×3200 (920 MB), and still fits a small machine. Both are
 * raised or lowered per runner (`budget`, `--max-pixels`, `--max-tensor-bytes`).
 */
export const DEFAULT_BUDGET: Readonly<Required<RunnerBudget>> = Object.freeze({
  maxPixels: 100_000_000,
  maxTensorBytes: 2 ** 30,
});

/** The longest image side the image kernels take (native/plan.ts `planImage`). */
export const KERNEL_MAX_SIDE = 1 << 16;

export { DTYPE_BYTES } from '../../spec/dtypes.js';

/** The budget with defaults filled in; a bad value is E_RUN_BUDGET. */
export function resolveBudget(b: RunnerBudget = {}): Required<RunnerBudget> {
  const out = { ...DEFAULT_BUDGET };
  for (const k of ['maxPixels', 'maxTensorBytes'] as const) {
    const v = b[k];
    if (v === undefined) continue;
    if (!Number.isSafeInteger(v) || v < 1)
      throw new RunnerError('E_RUN_BUDGET', `budget.${k} must be a positive integer, not ${String(v)}`, { [k]: v });
    out[k] = v;
  }
  return out;
}

/** What a step is about to allocate: pixels of its largest image (or plane), bytes of its tensor value. */
export interface Need {
  pixels?: number;
  bytes?: number;
}

/** Why `need` does not fit `budget` (message and detail), or undefined when it fits. */
export function overBudget(
  budget: Required<RunnerBudget>,
  need: Need,
  what: string,
): { message: string; detail: Record<string, unknown> } | undefined {
  if (need.pixels !== undefined && need.pixels > budget.maxPixels) {
    return {
      message: `${what} needs ${need.pixels} pixels, above the budget of ${budget.maxPixels} (maxPixels, --max-pixels)`,
      detail: { limit: 'maxPixels', need: need.pixels, budget: budget.maxPixels },
    };
  }
  if (need.bytes !== undefined && need.bytes > budget.maxTensorBytes) {
    return {
      message: `${what} needs ${need.bytes} bytes, above the budget of ${budget.maxTensorBytes} (maxTensorBytes, --max-tensor-bytes)`,
      detail: { limit: 'maxTensorBytes', need: need.bytes, budget: budget.maxTensorBytes },
    };
  }
  return undefined;
}

/** Bytes of a tensor of `dims` (open dims, strings or negative, counted as 1: the least it can be). */
export function tensorBytes(type: string, dims: readonly (number | string)[]): number {
  const per = DTYPE_BYTES[type as DType] ?? 1;
  return dims.reduce<number>((n, d) => n * (typeof d === 'number' && d >= 0 ? d : 1), per);
}

/**
 * Refuses a loaded model whose declared input, at its least (open dims as 1), is above the tensor
 * budget: no input the pipeline could make would fit.
 */
export function checkModelInputs(
  session: ModelSession,
  budget: Required<RunnerBudget>,
  model: string,
  variant: string,
): void {
  for (const i of session.inputShapes ?? []) {
    const over = overBudget(
      budget,
      { bytes: tensorBytes(i.type, i.shape) },
      `input ${i.name} [${i.shape.join(', ')}] of model ${model} (variant ${variant})`,
    );
    if (over)
      throw new RunnerError('E_RUN_BUDGET', over.message, {
        model,
        variant,
        input: i.name,
        shape: [...i.shape],
        ...over.detail,
      });
  }
}
