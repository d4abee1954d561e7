/**
 * sharp (libvips), loaded the first time an image is decoded or encoded instead of when the pipeline
 * module is imported: a command or package that touches no image does not pay for it (~60 ms).
 */
import { createRequire } from 'node:module';

// The CJS build (required synchronously so call sites stay as they are); same API as the ESM one.
type SharpFactory = typeof import('sharp').default;
let loaded: SharpFactory | undefined;

/** Same call signature as `sharp(...)`; the module is required on the first call. */
export const sharp = ((...args: Parameters<SharpFactory>) => {
  loaded ??= createRequire(import.meta.url)('sharp') as SharpFactory;
  return loaded(...args);
}) as SharpFactory;
