/** The backends this build of xpkg ships, registered once with their priorities. */
import { OnnxruntimeBackend } from './onnxruntime.js';
import { BackendRegistry } from './registry.js';

export { BackendRegistry, type BackendStatus } from './registry.js';
export { OnnxruntimeBackend, OrtModelSession, ortSessionOptions, type OrtInit, type OrtSessionOptions, type OnnxruntimeBackendOptions } from './onnxruntime.js';

let registry: BackendRegistry | undefined;

/** The process-wide registry: onnxruntime-node at priority 100. Backends initialise on first use. */
export function defaultRegistry(): BackendRegistry {
  if (!registry) {
    registry = new BackendRegistry();
    registry.register(new OnnxruntimeBackend(), 100);
  }
  return registry;
}
