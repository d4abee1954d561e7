/** Public API of the runner: host detection, variant selection, backends. */

export { annotate, writeAnnotation } from './annotate.js';
export {
  BackendRegistry,
  type BackendStatus,
  defaultRegistry,
  OnnxruntimeBackend,
  type OnnxruntimeBackendOptions,
  type OrtInit,
  OrtModelSession,
  type OrtSessionOptions,
  ortSessionOptions,
} from './backends/index.js';
export { renderSelection, selectionJson } from './explain.js';
export {
  type DetectOptions,
  detectHost,
  devicesOf,
  HOST_PROFILE_FORMAT,
  type HostDevice,
  type HostProfile,
  hostSummary,
  loadHostProfile,
  type ResolveHostOptions,
  type RuntimeInfo,
  renderHost,
  resolveHost,
} from './host.js';
export { type Expanded, expandInputPath } from './inputs/expand.js';
export { inputFromBytes, loadInputFile, loadInputFiles } from './inputs/load.js';
export { NPY_MAX_HEADER, type NpyProblem, parseNpy } from './inputs/npy.js';
export { type Base64Array, JSON_ARRAY_MAX, outputsToJson, typedToJson } from './outputs-json.js';
export { startImageDecoder } from './pipeline/image-decoder.js';
export { variantProviders } from './providers.js';
export { type ManyInput, type ManyResult, runMany } from './run-many.js';
export {
  type ArchMatch,
  applyAttempts,
  DEFAULT_PRECISION_POLICY,
  type DeviceMatch,
  type ExplainJson,
  type ExplainOutcome,
  explainVariants,
  type LoadAttempt,
  type Loaded,
  loadWithFallback,
  type ModelSelection,
  type Precision,
  type PrecisionPolicy,
  preferPrecision,
  type Reason,
  type ReasonCode,
  type Selection,
  type SelectOptions,
  selectVariants,
  type VariantStatus,
  type VariantVerdict,
  withModel,
} from './select.js';
export { compareVersions, parseVersion, satisfies } from './semver.js';
export * from './types.js';
