/**
 * Hand-built OCI image layouts for interoperability tests: a minimal container image (the kind of
 * thing a tag may hold instead of a package) and image indexes listing manifests of a layout,
 * which skopeo then publishes. Written from the image spec, not by xpkg's own code.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

export interface Desc {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  platform?: { architecture: string; os: string };
  annotations?: Record<string, string>;
}

const REF = 'org.opencontainers.image.ref.name';

/** Writes a blob into the layout and returns its descriptor. */
export function putBlob(dir: string, mediaType: string, bytes: Buffer): Desc {
  const hex = createHash('sha256').update(bytes).digest('hex');
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(dir, 'blobs', 'sha256', hex), bytes);
  return { mediaType, digest: `sha256:${hex}`, size: bytes.length };
}

function readIndex(dir: string): { schemaVersion: 2; mediaType?: string; manifests: Desc[] } {
  try {
    return JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
  } catch {
    return { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] };
  }
}

/** Adds `desc` to the layout's index.json under `tag`. */
export function tagIn(dir: string, desc: Desc, tag: string): void {
  writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const index = readIndex(dir);
  index.manifests = index.manifests.filter((m) => m.annotations?.[REF] !== tag);
  index.manifests.push({ ...desc, annotations: { [REF]: tag } });
  writeFileSync(join(dir, 'index.json'), JSON.stringify(index));
}

/** The descriptor tagged `tag` in the layout (xpkg export writes one). */
export function tagged(dir: string, tag: string): Desc {
  const d = readIndex(dir).manifests.find((m) => m.annotations?.[REF] === tag);
  if (!d) throw new Error(`no ${tag} in ${dir}`);
  const { annotations: _, ...rest } = d;
  return rest;
}

/** A minimal linux/amd64 container image (one empty gzip'd tar layer), tagged `tag`. */
export function containerImage(dir: string, tag: string): Desc {
  const tar = Buffer.alloc(1024);
  const layer = putBlob(dir, 'application/vnd.oci.image.layer.v1.tar+gzip', gzipSync(tar));
  const diffId = `sha256:${createHash('sha256').update(tar).digest('hex')}`;
  const config = putBlob(
    dir,
    'application/vnd.oci.image.config.v1+json',
    Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [diffId] } })),
  );
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config,
    layers: [layer],
  };
  const d = putBlob(dir, manifest.mediaType, Buffer.from(JSON.stringify(manifest)));
  tagIn(dir, d, tag);
  return { ...d, platform: { architecture: 'amd64', os: 'linux' } };
}

/** An image index listing `manifests`, tagged `tag`. */
export function imageIndex(dir: string, manifests: Desc[], tag: string): Desc {
  const mediaType = 'application/vnd.oci.image.index.v1+json';
  const d = putBlob(dir, mediaType, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, manifests })));
  tagIn(dir, d, tag);
  return d;
}

/** A .xpkg file published whole as one layer, as `oras push --artifact-type … pkg.xpkg` does, tagged `tag`. */
export function wholeFileArtifact(dir: string, file: Buffer, tag: string): Desc {
  const layer = {
    ...putBlob(dir, 'application/vnd.xpkg.package.v1', file),
    annotations: { 'org.opencontainers.image.title': 'model.xpkg' },
  };
  const config = putBlob(dir, 'application/vnd.oci.empty.v1+json', Buffer.from('{}'));
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    artifactType: 'application/vnd.xpkg.package.v1',
    config,
    layers: [layer],
  };
  const d = putBlob(dir, manifest.mediaType, Buffer.from(JSON.stringify(manifest)));
  tagIn(dir, d, tag);
  return d;
}
