/** Which onnxruntime execution providers a variant asks for (shared by selection and the backend). */
import type { Variant } from '../spec/schema.js';

/** The provider an accelerator vendor's variants use when the manifest names none. */
const PROVIDER_BY_VENDOR: Record<string, string> = {
  nvidia: 'cuda',
  apple: 'coreml',
  intel: 'openvino',
  amd: 'migraphx',
  qualcomm: 'qnn',
};

/**
 * The variant's execution providers in preference order: `requires.executionProviders` when
 * given, else the accelerator vendor's provider, else `cpu`.
 */
export function variantProviders(variant: Variant): string[] {
  const listed = variant.requires?.executionProviders;
  if (listed?.length) return [...listed];
  const vendor = variant.requires?.accelerator?.vendor;
  if (vendor && PROVIDER_BY_VENDOR[vendor]) return [PROVIDER_BY_VENDOR[vendor]];
  return ['cpu'];
}

/** The providers to use on a host that loads `available`, in the variant's order. */
export function usableProviders(variant: Variant, available: readonly string[]): string[] {
  return variantProviders(variant).filter((p) => available.includes(p));
}
