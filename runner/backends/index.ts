/** The backends this build of xpkg ships, registered once with their priorities. */
import { OnnxruntimeBackend } from './onnxruntime.js';
import { BackendRegistry } from './registry.js';

export {
  OnnxruntimeBackend,
  type OnnxruntimeBackendOptions,
  type OrtInit,
  OrtModelSession,
  type OrtSessionOptions,
  ortSessionOptions,
} from './onnxruntime.js';
export { BackendRegistry, type BackendStatus } from './registry.js';

let registry: BackendRegistry | undefined;

/** The process-wide registry: onnxruntime-node at priority 100. Backends initialise on first use. */
export function defaultRegistry(): BackendRegistry {
  if (!registry) {
    registry = new BackendRegistry();
    registry.register(new OnnxruntimeBackend(), 100);
  }
  return registry;
}
