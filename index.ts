/** Library entry point of xpkg. */

export * from './pack/index.js';
export {
  annotate,
  detectHost,
  expandInputPath,
  explainVariants,
  type HostProfile,
  loadHostProfile,
  loadInputFile,
  loadInputFiles,
  type ManyInput,
  type ManyResult,
  outputsToJson,
  parseNpy,
  resolveHost,
  type Selection,
  selectVariants,
  startImageDecoder,
  writeAnnotation,
} from './runner/index.js';
export { Runner, type RunnerOptions, type RunResult } from './runner/runner.js';
export { Sandbox } from './sandbox/index.js';
export { generateKeyPair, keygen, sign, type VerifyPolicy, type VerifyResult, verify } from './signing/index.js';
export { canonicalBytes, canonicalize, parseStrictJson } from './spec/canonical.js';
export * from './spec/errors.js';
export { packageId, parseManifest, validateManifest, validateManifestSource } from './spec/manifest.js';
export type { FileRecord, Manifest, ManifestSource, Model, Requirements, Step, Variant } from './spec/schema.js';
