/** Public API of the runner: host detection, variant selection, backends. */
export * from './types.js';
export {
  detectHost,
  resolveHost,
  renderHost,
  hostSummary,
  loadHostProfile,
  devicesOf,
  HOST_PROFILE_FORMAT,
  type HostProfile,
  type HostDevice,
  type RuntimeInfo,
  type DetectOptions,
  type ResolveHostOptions,
} from './host.js';
export {
  selectVariants,
  loadWithFallback,
  applyAttempts,
  withModel,
  explainVariants,
  DEFAULT_PRECISION_POLICY,
  preferPrecision,
  type Selection,
  type ModelSelection,
  type VariantVerdict,
  type VariantStatus,
  type SelectOptions,
  type LoadAttempt,
  type Loaded,
  type ExplainOutcome,
  type ExplainJson,
  type Precision,
  type PrecisionPolicy,
  type Reason,
  type ReasonCode,
  type ArchMatch,
  type DeviceMatch,
} from './select.js';
export { renderSelection, selectionJson } from './explain.js';
export { satisfies, parseVersion, compareVersions } from './semver.js';
export { variantProviders } from './providers.js';
export {
  defaultRegistry,
  BackendRegistry,
  OnnxruntimeBackend,
  OrtModelSession,
  ortSessionOptions,
  type BackendStatus,
  type OrtInit,
  type OrtSessionOptions,
  type OnnxruntimeBackendOptions,
} from './backends/index.js';
export { loadInputFile, loadInputFiles, inputFromBytes } from './inputs/load.js';
export { parseNpy, NPY_MAX_HEADER, type NpyProblem } from './inputs/npy.js';
export { expandInputPath, type Expanded } from './inputs/expand.js';
export { outputsToJson, typedToJson, JSON_ARRAY_MAX, type Base64Array } from './outputs-json.js';
export { runMany, type ManyInput, type ManyResult } from './run-many.js';
export { annotate, writeAnnotation } from './annotate.js';
