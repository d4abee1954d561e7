/** Library entry point of xpkg. */
export * from './spec/errors.js';
export { canonicalize, canonicalBytes, parseStrictJson } from './spec/canonical.js';
export { parseManifest, validateManifest, validateManifestSource, packageId } from './spec/manifest.js';
export type { Manifest, ManifestSource, Variant, Model, Requirements, Step, FileRecord } from './spec/schema.js';
export * from './pack/index.js';
export { sign, verify, generateKeyPair, keygen, type VerifyPolicy, type VerifyResult } from './signing/index.js';
export { Runner, type RunnerOptions, type RunResult } from './runner/runner.js';
export { detectHost, resolveHost, loadHostProfile, selectVariants, explainVariants, type HostProfile, type Selection } from './runner/index.js';
export { loadInputFile, loadInputFiles, parseNpy, outputsToJson, annotate, writeAnnotation, expandInputPath, type ManyInput, type ManyResult } from './runner/index.js';
export { Sandbox } from './sandbox/index.js';
