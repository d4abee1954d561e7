/** Public API of the inference daemon (`xpkg serve`), a subpath of its own so `import 'xpkg'` does not load fastify. */
export { batchPlan } from './batch.js';
export { httpStatusOf } from './errors.js';
export { createLogger, type LogFormat } from './log.js';
export { ServeMetrics } from './metrics.js';
export { Repository } from './repository.js';
export { type ServeOptions, startServer, type XpkgServer } from './server.js';
export { metadataTensor } from './tensors.js';
export type { Isolation } from './worker-handle.js';
