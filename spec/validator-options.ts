/** ajv options of each generated validator (spec/gen-validators.ts), shared with the run-time fallback. */
import type { Options } from 'ajv';

/** Every failing field reported at once. */
export const MANIFEST_AJV_OPTIONS: Options = {
  allErrors: true,
  strict: true,
  strictRequired: false,
  allowUnionTypes: true,
};
export const HOST_AJV_OPTIONS: Options = { allErrors: true, strict: true, allowUnionTypes: true };
export const OPS_AJV_OPTIONS: Options = { allErrors: true, strict: true, allowUnionTypes: true };
