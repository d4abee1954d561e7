/**
 * Browser twin of sandbox/index.ts. The Node sandbox runs QuickJS in a worker thread that blocks on
 * the host with receiveMessageOnPort, which browsers do not have; until a browser transport exists,
 * a package with scripts is refused with a code when its first script is needed (never silently
 * skipped). Everything else here is the sandbox's own portable code.
 */

import type { SandboxOptions } from '../../sandbox/types.js';
import { SandboxError } from '../../spec/errors.js';

export {
  argmax,
  basicKernels,
  gather,
  nms,
  normalize,
  queued,
  resize,
  softmax,
  threshold,
} from '../../sandbox/kernels.js';
export { DEFAULT_CAPS, DEFAULT_POLICY, resolvePolicy } from '../../sandbox/policy.js';
export type {
  CallOptions,
  EffectivePolicy,
  Kernel,
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
} from '../../sandbox/types.js';

export class Sandbox {
  static async create(_options: SandboxOptions = {}): Promise<Sandbox> {
    throw new SandboxError('E_SANDBOX_KILLED', 'package scripts do not run in the browser build yet', {
      reason: 'unsupported',
    });
  }
  async load(): Promise<never> {
    throw new SandboxError('E_SANDBOX_KILLED', 'package scripts do not run in the browser build yet');
  }
  async call(..._args: unknown[]): Promise<never> {
    throw new SandboxError('E_SANDBOX_KILLED', 'package scripts do not run in the browser build yet');
  }
  async close(): Promise<void> {}
}

export function liveSandboxThreads(): number {
  return 0;
}
