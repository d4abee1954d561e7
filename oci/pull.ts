/**
 * `xpkg pull`: a reference → a package in the cache (whole, or partial with the variants asked for),
 * every blob's digest checked, then optionally copied out. Offline, a reference already resolved
 * once is served from the cache.
 */
import { constants } from 'node:fs';
import { copyFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { OciError, UsageError } from '../spec/errors.js';
import { LIMITS } from '../spec/limits.js';
import { parseManifest } from '../spec/manifest.js';
import type { Manifest } from '../spec/schema.js';
import { hexOf, MAX_SKELETON, MEDIA, type OciManifest, parseOciManifest } from './artifact.js';
import { assemble, type BlobSource, fetchSmall, type TransferCounts } from './assemble.js';
import { Cache } from './cache.js';
import { packageInIndex } from './image-index.js';
import { planPartial, planWhole } from './plan.js';
import { formatReference, manifestRef, parseReference } from './ref.js';
import { Registry } from './registry.js';

export interface MaterializeOptions {
  /** Variant ids to keep (a partial package), or a function of the manifest choosing them; absent: the whole package. */
  variants?: ReadonlySet<string> | ((manifest: Manifest) => ReadonlySet<string>);
  /** Accept an already cached whole package when a partial one is asked for (run by reference). */
  preferWhole?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface Materialized {
  /** The package file in the cache. */
  path: string;
  packageId: string;
  name: string;
  version: string;
  /** Payload files left out; empty for a whole package. */
  absent: string[];
  size: number;
  /** True when it was already in the cache. */
  cached: boolean;
  transfer: TransferCounts;
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

/** An artifact (its OCI manifest) from a source → a package file in the cache. */
export async function materialize(
  cache: Cache,
  ociBytes: Buffer,
  source: BlobSource,
  options: MaterializeOptions = {},
): Promise<Materialized> {
  const oci = parseOciManifest(ociBytes);
  const small = async (digest: string, limit: number) => {
    const desc = [oci.config, ...oci.layers].find((d) => d.digest === digest)!;
    const hit = await cache.getBlob(digest);
    if (hit) return hit;
    const bytes = await fetchSmall(source, desc, limit);
    await cache.putBlob(digest, bytes);
    return bytes;
  };
  const { manifest, bytes: manifestBytes, id } = parseManifest(await small(oci.config.digest, LIMITS.manifestBytes));
  if (id !== hexOf(oci.config.digest)) throw new OciError('E_OCI_MANIFEST', 'config is not the package manifest');
  const one = (type: string) => {
    const ls = oci.layers.filter((l) => l.mediaType === type);
    if (ls.length > 1) throw new OciError('E_OCI_MANIFEST', `more than one ${type} layer`);
    return ls[0];
  };
  const skLayer = one(MEDIA.skeleton);
  if (!skLayer) throw new OciError('E_OCI_MANIFEST', 'no skeleton layer: not an xpkg package artifact');
  const sigLayer = one(MEDIA.signatures);
  const input = {
    oci,
    manifest,
    manifestBytes,
    skeleton: await small(skLayer.digest, MAX_SKELETON),
    signatures: sigLayer ? await small(sigLayer.digest, LIMITS.signaturesBytes) : null,
  };
  const keep = typeof options.variants === 'function' ? options.variants(manifest) : options.variants;
  const known = manifest.models.flatMap((m) => m.variants.map((v) => v.id));
  const unknown = [...(keep ?? [])].filter((v) => !known.includes(v));
  if (unknown.length)
    throw new UsageError(
      'E_USAGE',
      `no variant ${unknown.join(', ')} in ${manifest.name}@${manifest.version} (variants: ${known.join(', ')})`,
      {
        unknown,
        known,
      },
    );
  const plan = keep ? planPartial(input, keep) : planWhole(input);
  const whole = Cache.packageName(id, null);
  const name =
    options.preferWhole && (await exists(cache.packagePath(whole))) ? whole : Cache.packageName(id, plan.partial);
  const result = async (cached: boolean, transfer: TransferCounts): Promise<Materialized> => ({
    path: cache.packagePath(name),
    packageId: id,
    name: manifest.name,
    version: manifest.version,
    absent: name === whole ? [] : plan.absent,
    size: (await stat(cache.packagePath(name))).size,
    cached,
    transfer,
  });
  const none = { downloaded: 0, reused: 0, resumed: 0 };
  if (await exists(cache.packagePath(name))) return result(true, none);
  return cache.withLock(name, async () => {
    if (await exists(cache.packagePath(name))) return result(true, none);
    return result(false, await assemble(cache, plan, name, id, source, options.onProgress));
  });
}

export interface PullOptions extends MaterializeOptions {
  cache?: Cache;
  env?: NodeJS.ProcessEnv;
  retries?: number;
}

export interface PullResult extends Materialized {
  reference: string;
  digest: string;
  /** True when the registry could not be reached and the cached resolution was used. */
  offline: boolean;
}

export function registrySource(registry: Registry, repository: string): BlobSource {
  return {
    where: `${registry.registry}/${repository}`,
    retries: registry.retries,
    open: (desc, offset) => registry.getBlob(repository, desc.digest, offset, desc.size),
  };
}

/** Resolves a reference (the registry, or the cache when it cannot be reached) and materializes it. */
export async function pull(reference: string, options: PullOptions = {}): Promise<PullResult> {
  const env = options.env ?? process.env;
  const ref = parseReference(reference, env);
  const cache = options.cache ?? (await Cache.open());
  const registry = new Registry(ref.registry, {
    env,
    ...(options.retries !== undefined ? { retries: options.retries } : {}),
  });
  const name = formatReference(ref);
  let oci: { bytes: Buffer; digest: string };
  let offline = false;
  // With a cached resolution to fall back on, an unreachable registry is not waited for.
  const known = ref.digest ?? (await cache.getRef(name));
  try {
    oci = await registry.getManifest(ref.repository, manifestRef(ref), known ? 0 : registry.retries);
    // A tag may name an image index (multi-platform, multi-artifact): its one xpkg package is taken.
    const fetch = async (d: { digest: string }) => (await registry.getManifest(ref.repository, d.digest)).bytes;
    const listed = await packageInIndex(oci.bytes, fetch);
    if (listed) oci = { bytes: listed.bytes, digest: listed.descriptor.digest };
    await cache.putBlob(oci.digest, oci.bytes);
  } catch (e) {
    if (!(e instanceof OciError && e.code === 'E_OCI_NETWORK')) throw e;
    const bytes = known ? await cache.getBlob(known) : null;
    if (!known || !bytes) throw e;
    oci = { bytes, digest: known };
    offline = true;
  }
  const m = await materialize(cache, oci.bytes, registrySource(registry, ref.repository), options);
  // Recorded only once it gave a package: a tag moved to something broken or not a package must not
  // replace the resolution an offline run falls back on.
  if (!offline) await cache.setRef(name, oci.digest);
  return { ...m, reference: name, digest: oci.digest, offline };
}

/** Copies a cached package out (a reflink or kernel copy where the file system has one), atomically. */
export async function copyOut(from: string, to: string): Promise<void> {
  const tmp = join(dirname(to), `.${Date.now().toString(36)}.${process.pid}.xpkg.tmp`);
  try {
    await copyFile(from, tmp, constants.COPYFILE_FICLONE);
    await rename(tmp, to);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

export type { OciManifest };
