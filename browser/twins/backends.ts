/** Browser twin of runner/backends/index.ts: the backends this build ships, onnxruntime-web at priority 100. */
import { BackendRegistry } from '../../runner/backends/registry.js';
import { WebOrtBackend } from '../ort-web.js';

export { BackendRegistry, type BackendStatus } from '../../runner/backends/registry.js';

let registry: BackendRegistry | undefined;

export function defaultRegistry(): BackendRegistry {
  if (!registry) {
    registry = new BackendRegistry();
    registry.register(new WebOrtBackend(), 100);
  }
  return registry;
}
