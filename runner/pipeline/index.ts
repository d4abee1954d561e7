/**
 * The declarative pipeline: `runPipeline(ctx, inputs)` interprets `manifest.pipeline.steps`
 * (vocabulary in runner/PIPELINE.md); `validatePipeline` checks them without running.
 */

export { DEFAULT_BUDGET, resolveBudget } from './budget.js';
export { type LocalContext, openLocalContext } from './local.js';
export { type Classification, convertOutput, type DetectedBox, type Mask, type OutputValue } from './outputs.js';
export { getOp, listOps, type OpDef, type OpRun, type Stage } from './registry.js';
export { type PipelineResult, runPipeline } from './run.js';
export { type PipelineManifest, validatePipeline } from './validate.js';
export type {
  BoxesValue,
  ClassesValue,
  ImagesValue,
  ImageTransform,
  ImageValue,
  MaskValue,
  RegionsValue,
  TensorsValue,
  TensorValue,
  TextLine,
  TextLinesValue,
  TextsValue,
  Value,
  ValueKind,
} from './values.js';
