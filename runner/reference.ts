/**
 * Run by reference (spec/OCI.md §6): `Runner.open('oci://host/repo:tag')` pulls what this host can
 * run into the cache (or finds it there, also offline) and hands back the cached package's path,
 * which Runner.open then opens through the one verification path like any other file.
 */
import { Cache } from '../oci/cache.js';
import { pull } from '../oci/pull.js';
import type { Manifest } from '../spec/schema.js';
import { defaultRegistry as defaultBackends } from './backends/index.js';
import { type HostProfile, resolveHost } from './host.js';
import { selectVariants } from './select.js';

export interface ReferenceOptions {
  variant?: string | string[];
  host?: string | HostProfile;
  runtimes?: readonly string[];
  onProgress?: (done: number, total: number) => void;
  cacheDir?: string;
}

/** Variants to fetch: the forced ones, or every variant this host can run (for fallback). */
export function variantsForHost(manifest: Manifest, host: HostProfile, options: ReferenceOptions): Set<string> {
  if (options.variant !== undefined)
    return new Set(typeof options.variant === 'string' ? [options.variant] : options.variant);
  const sel = selectVariants(manifest, host, { backends: options.runtimes ?? defaultBackends().runtimes() });
  return new Set(sel.models.flatMap((m) => m.candidates.map((c) => c.variant.id)));
}

/** The cached package's path, and the host profile resolved on the way (Runner.open reuses it). */
export async function resolveReference(
  reference: string,
  options: ReferenceOptions = {},
): Promise<{ path: string; host: HostProfile }> {
  const host =
    typeof options.host === 'object'
      ? options.host
      : await resolveHost(options.host !== undefined ? { host: options.host } : {});
  const r = await pull(reference, {
    cache: await Cache.open(options.cacheDir),
    variants: (m) => variantsForHost(m, host, options),
    preferWhole: true,
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  return { path: r.path, host };
}
