export { packFolder, readManifestSource, SOURCE_MANIFEST, type PackOptions, type PackResult } from './pack.js';
export { PackageReader } from './reader.js';
export { writeSignatures } from './writer.js';
export { unpackPackage, sourceManifestOf, type UnpackResult } from './unpack.js';
export { inspectPackage, renderInspect, formatBytes, type InspectResult } from './inspect.js';
export type { EntryInfo, IntegrityReport, OpenOptions, PackageReaderLike } from './types.js';
