/**
 * Sandboxed package scripts: QuickJS in a worker thread, a capability API over host kernels, and
 * limits that hold (see sandbox.ts and worker.ts).
 */

export { argmax, basicKernels, gather, nms, normalize, queued, resize, softmax, threshold } from './kernels.js';
export { validateOutputs } from './outputs.js';
export { DEFAULT_CAPS, DEFAULT_POLICY, resolvePolicy } from './policy.js';
export { Sandbox } from './sandbox.js';
export { liveSandboxThreads } from './thread.js';
export type {
  CallOptions,
  EffectivePolicy,
  Kernel,
  KernelBudget,
  KernelResults,
  KernelTable,
  LoadedScript,
  LoadOptions,
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
