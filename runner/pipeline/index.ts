/**
 * The declarative pipeline: `runPipeline(ctx, inputs)` interprets `manifest.pipeline.steps`
 * (vocabulary in runner/PIPELINE.md); `validatePipeline` checks them without running.
 */
export { runPipeline, type PipelineResult } from './run.js';
export { validatePipeline, type PipelineManifest } from './validate.js';
export { DEFAULT_BUDGET, resolveBudget } from './budget.js';
export { listOps, getOp, type OpDef, type OpRun, type Stage } from './registry.js';
export { convertOutput, type OutputValue, type Classification, type DetectedBox, type Mask } from './outputs.js';
export { openLocalContext, type LocalContext } from './local.js';
export type { TextLine, Value, ValueKind, ImageValue, ImagesValue, RegionsValue, BoxesValue, ClassesValue, TextsValue, MaskValue, TextLinesValue, TensorValue, TensorsValue, ImageTransform } from './values.js';
