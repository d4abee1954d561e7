/**
 * Finding the xpkg package an image index lists (a tag or a layout entry naming an index: multi-
 * platform, multi-artifact, or an index of indexes), for pull and import.
 */
import {
  badManifest,
  type Descriptor,
  descriptorOf,
  isIndex,
  isPackage,
  MEDIA,
  notPackage,
  parseJson,
} from './artifact.js';
import { DIGEST } from './ref.js';

/** Most manifests and nested indexes fetched to look for the package in an index without artifactType. */
const MAX_INDEX_PROBES = 16;
/** Most levels of indexes within an index followed (an index of platform indexes is two). */
const MAX_INDEX_DEPTH = 4;

/** A digest of another algorithm than sha256 (sha512…), as the image spec's grammar writes one. */
const OTHER_DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

type Listed = Descriptor & { artifactType?: unknown };

/**
 * The descriptors of an index that xpkg can follow: those of another digest algorithm (an index
 * may list a sha512 signature or attestation beside the package) cannot be the package, which is
 * pushed by sha256, and are passed over rather than failing the whole index.
 */
function listedIn(v: Record<string, unknown>): Listed[] {
  if (!Array.isArray(v.manifests)) throw badManifest('image index without a manifests list');
  return v.manifests.flatMap((m, i) => {
    const d = m as { digest?: unknown; artifactType?: unknown } | null;
    if (d && typeof d.digest === 'string' && !DIGEST.test(d.digest) && OTHER_DIGEST.test(d.digest)) return [];
    return [{ ...descriptorOf(m, `manifests[${i}]`), artifactType: d?.artifactType }];
  });
}

const isIndexType = (t: string) => t === MEDIA.ociIndex || t === MEDIA.dockerList;
const isManifestType = (t: string) => t === MEDIA.ociManifest || t === MEDIA.dockerManifest;

/**
 * The xpkg packages an index lists, by digest (one package listed once per platform is one):
 * descriptors with our artifactType decide; without any, the image manifests listed are fetched and
 * looked at, and nested indexes (skopeo and buildx write indexes of indexes) searched the same way.
 */
async function packagesIn(
  v: Record<string, unknown>,
  fetch: (d: Descriptor) => Promise<Buffer>,
  depth: number,
  budget: { left: number; total: number },
): Promise<Map<string, { descriptor: Descriptor; bytes: Buffer | null }>> {
  const listed = listedIn(v);
  const found = new Map<string, { descriptor: Descriptor; bytes: Buffer | null }>();
  for (const m of listed)
    if (m.artifactType === MEDIA.artifact && m.mediaType === MEDIA.ociManifest)
      found.set(m.digest, { descriptor: m, bytes: null });
  if (found.size) return found;
  const unique = (ms: Listed[]) => [...new Map(ms.map((m) => [m.digest, m])).values()];
  // Docker schema 2 too: a registry that converts OCI to Docker serves a list of converted manifests.
  const unknown = unique(listed.filter((m) => m.artifactType === undefined && isManifestType(m.mediaType)));
  const nested = depth < MAX_INDEX_DEPTH ? unique(listed.filter((m) => isIndexType(m.mediaType))) : [];
  budget.total += listed.length;
  budget.left -= unknown.length + nested.length;
  if (budget.left < 0)
    throw notPackage(`an image index of ${budget.total} manifests, none marked as an xpkg package`, {
      limit: MAX_INDEX_PROBES,
    });
  for (const m of unknown) {
    const b = await fetch(m);
    if (isPackage(b)) found.set(m.digest, { descriptor: m, bytes: b });
  }
  for (const m of nested) {
    const inner = parseJson(await fetch(m));
    if (!isIndex(inner)) continue;
    for (const [digest, p] of await packagesIn(inner, fetch, depth + 1, budget)) found.set(digest, p);
  }
  return found;
}

/**
 * When `bytes` is an image index (multi-platform or multi-artifact), the one xpkg package it lists
 * and its manifest bytes (from `fetch`, which checks the digest); null when it is not an index.
 * Descriptors with our artifactType decide; tools that predate OCI 1.1 (skopeo 1.9) drop that
 * field when they copy an index, so without any, the image manifests listed (and the indexes
 * nested in it) are fetched and looked at. None, or several, is E_OCI_NOT_PACKAGE: the user pins
 * one by digest.
 */
export async function packageInIndex(
  bytes: Buffer,
  fetch: (d: Descriptor) => Promise<Buffer>,
): Promise<{ descriptor: Descriptor; bytes: Buffer } | null> {
  const v = parseJson(bytes);
  if (!isIndex(v)) return null;
  const listed = listedIn(v);
  const detail = {
    manifests: listed.map((m) => ({ digest: m.digest, mediaType: m.mediaType, artifactType: m.artifactType ?? null })),
  };
  const found = [...(await packagesIn(v, fetch, 1, { left: MAX_INDEX_PROBES, total: 0 })).values()];
  if (found.length !== 1)
    throw notPackage(
      found.length
        ? `the image index lists ${found.length} xpkg packages; name one by digest (@sha256:…)`
        : `an image index of ${listed.length} manifests, none an xpkg package`,
      detail,
    );
  const { mediaType, digest, size } = found[0].descriptor;
  const descriptor = { mediaType, digest, size };
  return { descriptor, bytes: found[0].bytes ?? (await fetch(descriptor)) };
}
