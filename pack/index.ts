export { formatBytes, type InspectResult, inspectPackage, inspectReader, renderInspect } from './inspect.js';
export { type PackOptions, type PackResult, packFolder, readManifestSource, SOURCE_MANIFEST } from './pack.js';
export { PackageReader } from './reader.js';
export type { EntryInfo, IntegrityReport, OpenOptions, PackageReaderLike } from './types.js';
export { sourceManifestOf, type UnpackResult, unpackPackage } from './unpack.js';
export { writeSignatures } from './writer.js';
