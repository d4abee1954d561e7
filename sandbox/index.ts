/**
 * Sandboxed package scripts: QuickJS in a worker thread, a capability API over host kernels, and
 * limits that hold (see sandbox.ts and worker.ts).
 */
export { Sandbox } from './sandbox.js';
export { liveSandboxThreads } from './thread.js';
export { DEFAULT_CAPS, DEFAULT_POLICY, resolvePolicy } from './policy.js';
export { validateOutputs } from './outputs.js';
export { basicKernels, queued, resize, normalize, softmax, argmax, threshold, nms, gather } from './kernels.js';
export type {
  CallOptions,
  EffectivePolicy,
  Kernel,
  KernelResults,
  KernelTable,
  LoadOptions,
  LoadedScript,
  SandboxCaps,
  SandboxDType,
  SandboxGrants,
  SandboxOptions,
  SandboxPolicy,
  SandboxStats,
  SandboxTensor,
  SandboxTypedData,
  SandboxValue,
} from './types.js';
