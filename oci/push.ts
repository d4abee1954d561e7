/**
 * `xpkg push`: a package file → its artifact in a repository (spec/OCI.md §2). Blobs the repository
 * has are skipped, blobs another repository of the same registry has (known from the cache) are
 * mounted, the rest uploaded (in chunks when large); the manifest goes last, under the tag.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { PackageReader } from '../pack/reader.js';
import { OciError } from '../spec/errors.js';
import { artifactOf, hexOf, parseOciManifest } from './artifact.js';
import { Cache } from './cache.js';
import { formatReference, parseReference } from './ref.js';
import { Registry, type UploadOutcome } from './registry.js';

export interface PushOptions {
  cache?: Cache;
  env?: NodeJS.ProcessEnv;
  retries?: number;
  chunkBytes?: number;
  /** Repository (same registry) to mount blobs from, besides those the cache knows. */
  mountFrom?: string;
  onProgress?: (done: number, total: number) => void;
}

export interface PushResult {
  reference: string;
  digest: string;
  packageId: string;
  blobs: { digest: string; size: number; outcome: UploadOutcome }[];
  uploadedBytes: number;
}

/** Repositories of this registry whose cached manifests list `digest` (mount sources). */
async function mountCandidates(cache: Cache, registry: string, repo: string): Promise<Map<string, string>> {
  const byDigest = new Map<string, string>();
  for (const r of await cache.refs()) {
    const ref = (() => {
      try {
        return parseReference(r.reference, {});
      } catch {
        return null;
      }
    })();
    if (!ref || ref.registry !== registry || ref.repository === repo) continue;
    const mb = await cache.getBlob(r.digest);
    if (!mb) continue;
    try {
      for (const l of parseOciManifest(mb).layers) if (!byDigest.has(l.digest)) byDigest.set(l.digest, ref.repository);
    } catch {
      // not a package manifest
    }
  }
  return byDigest;
}

export async function push(pkgPath: string, reference: string, options: PushOptions = {}): Promise<PushResult> {
  const env = options.env ?? process.env;
  const ref = parseReference(reference, env);
  if (ref.digest) throw new OciError('E_OCI_REFERENCE', 'push to a tag, not a digest', { reference });
  const tag = ref.tag ?? 'latest';
  const cache = options.cache ?? (await Cache.open());
  const registry = new Registry(ref.registry, {
    env,
    ...(options.retries !== undefined ? { retries: options.retries } : {}),
    ...(options.chunkBytes !== undefined ? { chunkBytes: options.chunkBytes } : {}),
  });
  const reader = await PackageReader.open(pkgPath);
  try {
    const art = await artifactOf(reader);
    const mounts = await mountCandidates(cache, ref.registry, ref.repository);
    const total = art.blobs.reduce((n, b) => n + b.descriptor.size, 0);
    let done = 0;
    const blobs: PushResult['blobs'] = [];
    let uploadedBytes = 0;
    for (const b of art.blobs) {
      const d = b.descriptor;
      // Entry data is read from the package file (the same bytes the reader checked the layout of).
      // An empty range is no stream at all: createReadStream refuses end < start (an empty file).
      const read = (start: number, end: number): Readable =>
        b.bytes || end <= start
          ? Readable.from(b.bytes && end > start ? [b.bytes.subarray(start, end)] : [])
          : createReadStream(pkgPath, { start: b.offset! + start, end: b.offset! + end - 1, highWaterMark: 1 << 20 });
      const mountFrom = options.mountFrom ?? mounts.get(d.digest);
      const outcome = await registry.upload(ref.repository, d, read, {
        ...(mountFrom ? { mountFrom } : {}),
        onBytes: (n) => {
          uploadedBytes += n;
        },
      });
      blobs.push({ digest: d.digest, size: d.size, outcome });
      done += d.size;
      options.onProgress?.(done, total);
    }
    await registry.putManifest(ref.repository, tag, art.manifestBytes);
    const name = formatReference({ ...ref, tag });
    // Remembered so later pushes of packages sharing blobs can mount them from here.
    await cache.putBlob(art.digest, art.manifestBytes);
    await cache.putBlob(art.blobs[0].descriptor.digest, reader.manifestBytes);
    await cache.setRef(name, art.digest);
    return { reference: name, digest: art.digest, packageId: hexOf(art.manifest.config.digest), blobs, uploadedBytes };
  } finally {
    await reader.close();
  }
}
