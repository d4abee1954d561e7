/**
 * The mapping of spec/OCI.md §2: a package as an OCI artifact, and back. The config blob is the
 * canonical manifest (so its digest is the package id), one layer holds the archive skeleton (every
 * byte of the `.xpkg` that is not entry data), one the signature envelope, and one layer per payload
 * file whose digest is the file's SHA-256. Reassembly interleaves skeleton and blobs, so the
 * `.xpkg` comes back byte for byte.
 */
import { createHash } from 'node:crypto';
import type { PackageReader } from '../pack/reader.js';
import * as Z from '../pack/zip.js';
import { canonicalBytes, parseStrictJson } from '../spec/canonical.js';
import { OciError } from '../spec/errors.js';
import { MANIFEST_PATH, PADDING_EXTRA_ID, SIGNATURES_PATH } from '../spec/limits.js';
import type { Manifest } from '../spec/schema.js';
import { DIGEST } from './ref.js';

export const MEDIA = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  artifact: 'application/vnd.xpkg.package.v1',
  config: 'application/vnd.xpkg.manifest.v1+json',
  skeleton: 'application/vnd.xpkg.skeleton.v1',
  signatures: 'application/vnd.xpkg.signatures.v1+json',
  file: 'application/vnd.xpkg.file.v1',
} as const;

export const ANNOTATION = {
  title: 'org.opencontainers.image.title',
  version: 'org.opencontainers.image.version',
  name: 'org.xpkg.name',
  sequence: 'org.xpkg.sequence',
  variants: 'org.xpkg.variants',
  packageId: 'org.xpkg.package-id',
} as const;

/** Largest OCI manifest and skeleton accepted from a registry (a skeleton of 20,000 entries fits). */
export const MAX_OCI_MANIFEST = 4 * 1024 * 1024;
export const MAX_SKELETON = 64 * 1024 * 1024;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

export interface OciManifest {
  schemaVersion: 2;
  mediaType: string;
  artifactType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations: Record<string, string>;
}

export const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
export const hexOf = (digest: string) => digest.slice('sha256:'.length);

/** A blob of the artifact and where its bytes are in the package file. */
export interface PackageBlob {
  descriptor: Descriptor;
  /** In-memory bytes (config, skeleton, signatures) or a range of the package file (entry data). */
  bytes?: Buffer;
  offset?: number;
}

export interface Artifact {
  manifest: OciManifest;
  manifestBytes: Buffer;
  digest: string;
  /** Every distinct blob once: config first, then layers in order. */
  blobs: PackageBlob[];
}

/** Offset and data length of the alignment padding record in a local header's extra field, if any. */
function paddingRecord(header: Buffer, at: number, end: number): { at: number; length: number } | null {
  let x = at + Z.LOCAL_SIZE + header.readUInt16LE(at + 26);
  while (x + 4 <= end) {
    const length = header.readUInt16LE(x + 2);
    if (header.readUInt16LE(x) === PADDING_EXTRA_ID) return { at: x, length };
    x += 4 + length;
  }
  return null;
}

/**
 * Every byte of the archive that is not entry data: local headers in order, then the directory and
 * end records; the all-zero data of alignment padding records (up to 64 KiB per model) is left out.
 */
async function skeletonOf(reader: PackageReader): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const e of reader.entries) {
    const header = Buffer.allocUnsafe(e.dataOffset - e.localHeaderOffset);
    await readFully(reader, header, e.localHeaderOffset);
    const pad = paddingRecord(header, 0, header.length);
    parts.push(pad ? header.subarray(0, pad.at + 4) : header);
  }
  const tail = Buffer.allocUnsafe(reader.fileSize - reader.centralDirectoryOffset);
  await readFully(reader, tail, reader.centralDirectoryOffset);
  parts.push(tail);
  return Buffer.concat(parts);
}

async function readFully(reader: PackageReader, buf: Buffer, at: number): Promise<void> {
  for (let got = 0; got < buf.length; ) {
    const chunk = buf.subarray(got);
    const { bytesRead } = await reader.readFrom(chunk, chunk.length, at + got);
    got += bytesRead;
  }
}

/** Builds the artifact of an opened (whole) package. Layer order is the archive's entry order. */
export async function artifactOf(reader: PackageReader): Promise<Artifact> {
  const m = reader.manifest;
  if (reader.absent?.size)
    throw new OciError('E_OCI_PARTIAL', 'a partial package cannot be published; push the whole package', {
      absent: [...reader.absent],
    });
  const skeleton = await skeletonOf(reader);
  const config: Descriptor = {
    mediaType: MEDIA.config,
    digest: `sha256:${reader.id}`,
    size: reader.manifestBytes.length,
  };
  const blobs: PackageBlob[] = [{ descriptor: config, bytes: reader.manifestBytes }];
  const layers: Descriptor[] = [];
  const add = (d: Descriptor, src: Omit<PackageBlob, 'descriptor'>) => {
    layers.push(d);
    if (!blobs.some((b) => b.descriptor.digest === d.digest)) blobs.push({ descriptor: d, ...src });
  };
  add(
    {
      mediaType: MEDIA.skeleton,
      digest: sha256(skeleton),
      size: skeleton.length,
      annotations: { [ANNOTATION.title]: 'xpkg/skeleton' },
    },
    { bytes: skeleton },
  );
  if (reader.signaturesBytes)
    add(
      {
        mediaType: MEDIA.signatures,
        digest: sha256(reader.signaturesBytes),
        size: reader.signaturesBytes.length,
        annotations: { [ANNOTATION.title]: SIGNATURES_PATH },
      },
      { bytes: reader.signaturesBytes },
    );
  const users = variantsByFile(m);
  for (const e of reader.entries) {
    if (e.name === MANIFEST_PATH || e.name === SIGNATURES_PATH) continue;
    const f = m.files.find((x) => x.path === e.name)!;
    // A stored entry's data is the file, so the layer digest is the manifest's sha256 (and identical
    // models dedupe across packages); a deflated entry's layer is its deflate stream, hashed here.
    const digest = e.method === 0 ? `sha256:${f.sha256}` : sha256(await reader.readRaw(e));
    const annotations: Record<string, string> = { [ANNOTATION.title]: e.name };
    const v = users.get(e.name);
    if (v?.length) annotations[ANNOTATION.variants] = v.join(',');
    add({ mediaType: MEDIA.file, digest, size: e.compressedSize, annotations }, { offset: e.dataOffset });
  }
  const manifest: OciManifest = {
    schemaVersion: 2,
    mediaType: MEDIA.ociManifest,
    artifactType: MEDIA.artifact,
    config,
    layers,
    annotations: {
      [ANNOTATION.title]: m.name,
      [ANNOTATION.version]: m.version,
      [ANNOTATION.name]: m.name,
      [ANNOTATION.sequence]: String(m.sequence),
      [ANNOTATION.packageId]: reader.id,
      [ANNOTATION.variants]: m.models.flatMap((x) => x.variants.map((v) => `${x.id}/${v.id}`)).join(','),
    },
  };
  // Canonical JSON: the same package always maps to the same manifest digest.
  const manifestBytes = canonicalBytes(manifest);
  return { manifest, manifestBytes, digest: sha256(manifestBytes), blobs };
}

function variantsByFile(m: Manifest): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const model of m.models)
    for (const v of model.variants) for (const f of v.files) out.set(f, [...(out.get(f) ?? []), v.id]);
  return out;
}

export const badManifest = (summary: string, detail?: unknown) => new OciError('E_OCI_MANIFEST', summary, detail);

export function descriptorOf(x: unknown, where: string): Descriptor {
  const d = x as Descriptor;
  if (
    !d ||
    typeof d !== 'object' ||
    typeof d.mediaType !== 'string' ||
    typeof d.digest !== 'string' ||
    !DIGEST.test(d.digest) ||
    !Number.isSafeInteger(d.size) ||
    d.size < 0 ||
    (d.annotations !== undefined &&
      (typeof d.annotations !== 'object' || !Object.values(d.annotations).every((v) => typeof v === 'string')))
  )
    throw badManifest(`${where} is not a sha256 descriptor`, { where });
  return d;
}

/** The media types a manifest request accepts: xpkg's own, and those a tag may hold instead (to name them in errors). */
export const MANIFEST_ACCEPT = [MEDIA.ociManifest, MEDIA.ociIndex, MEDIA.dockerManifest, MEDIA.dockerList].join(', ');

export const notPackage = (summary: string, detail?: unknown) => new OciError('E_OCI_NOT_PACKAGE', summary, detail);

export function parseJson(bytes: Buffer): Record<string, unknown> {
  if (bytes.length > MAX_OCI_MANIFEST) throw badManifest(`OCI manifest larger than ${MAX_OCI_MANIFEST} bytes`);
  let v: unknown;
  try {
    v = parseStrictJson(bytes);
  } catch (e) {
    throw badManifest(`OCI manifest is not valid JSON: ${(e as Error).message}`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw badManifest('OCI manifest is not a JSON object');
  return v as Record<string, unknown>;
}

export const isIndex = (v: Record<string, unknown>) =>
  v.mediaType === MEDIA.ociIndex || v.mediaType === MEDIA.dockerList || Array.isArray(v.manifests);

/** Whether a manifest's JSON says it is an xpkg package (the checks parseOciManifest starts with). */
export function isPackage(bytes: Buffer): boolean {
  try {
    const v = parseJson(bytes);
    const config = v.config as { mediaType?: unknown } | undefined;
    return !isIndex(v) && (v.artifactType === MEDIA.artifact || config?.mediaType === MEDIA.config);
  } catch {
    return false;
  }
}

/** Parses an OCI manifest from an untrusted source and checks it is an xpkg package artifact. */
export function parseOciManifest(bytes: Buffer): OciManifest {
  const v = parseJson(bytes);
  if (isIndex(v)) throw notPackage('an image index, not a package manifest', { mediaType: v.mediaType ?? null });
  if (v.schemaVersion === 1) throw notPackage('a Docker schema 1 image manifest, not an xpkg package');
  if (v.schemaVersion !== 2 || !Array.isArray(v.layers))
    throw badManifest('not an OCI image manifest (schemaVersion 2 with layers)');
  const raw = v.config as { mediaType?: unknown } | null;
  if (!raw || typeof raw !== 'object' || typeof raw.mediaType !== 'string') descriptorOf(raw, 'config');
  // What the manifest is decides before its descriptors are checked: a container image or another
  // artifact is E_OCI_NOT_PACKAGE even when it names blobs by a digest xpkg does not read (sha512).
  const configType = raw!.mediaType as string;
  const listed = v.layers as (Descriptor | null)[];
  // A .xpkg published whole as one layer (`oras push … pkg.xpkg`, a hand-built layout), titled as a
  // file or not at all: not this mapping, which needs one blob per file to fetch per variant and
  // dedupe; said plainly.
  const whole =
    listed.some((l) => l?.mediaType === MEDIA.artifact || /\.xpkg$/i.test(l?.annotations?.[ANNOTATION.title] ?? '')) ||
    (v.artifactType === MEDIA.artifact && !listed.some((l) => l?.mediaType === MEDIA.skeleton));
  if (configType !== MEDIA.config && whole)
    throw notPackage(
      'a package file published whole as one layer; xpkg pulls packages pushed with `xpkg push` (or copied from them)',
      { mediaType: v.mediaType ?? null, artifactType: v.artifactType ?? null, config: configType },
    );
  if (v.artifactType !== MEDIA.artifact && configType !== MEDIA.config)
    throw notPackage(
      `not an xpkg package: ${v.mediaType === MEDIA.dockerManifest || /docker|oci\.image\.config/.test(configType) ? 'a container image' : 'an artifact'} of type ${JSON.stringify(v.artifactType ?? configType)}`,
      { mediaType: v.mediaType ?? null, artifactType: v.artifactType ?? null, config: configType },
    );
  const config = descriptorOf(v.config, 'config');
  if (config.mediaType !== MEDIA.config) throw badManifest(`config media type must be ${MEDIA.config}`);
  const layers = (v.layers as unknown[]).map((l, i) => descriptorOf(l, `layers[${i}]`));
  return {
    schemaVersion: 2,
    mediaType: String(v.mediaType ?? MEDIA.ociManifest),
    artifactType: MEDIA.artifact,
    config,
    layers,
    annotations: (v.annotations as Record<string, string>) ?? {},
  };
}

export interface SkeletonEntry {
  name: string;
  /** The local header exactly as stored (padding included). */
  header: Buffer;
  method: number;
  crc32: number;
  size: number;
  /** Bytes of entry data after the header. */
  compressedSize: number;
}

export interface Skeleton {
  entries: SkeletonEntry[];
  /** Central directory and end records. */
  tail: Buffer;
  dosTime: { time: number; date: number };
}

/** Splits a skeleton into local headers and the tail, with bounds checks on every field (it is untrusted). */
export function parseSkeleton(bytes: Buffer): Skeleton {
  const entries: SkeletonEntry[] = [];
  const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let p = 0;
  while (p + 4 <= bytes.length && bytes.readUInt32LE(p) === Z.SIG_LOCAL) {
    if (p + Z.LOCAL_SIZE > bytes.length) throw badManifest('skeleton ends inside a local header');
    const nameLen = bytes.readUInt16LE(p + 26);
    const extraLen = bytes.readUInt16LE(p + 28);
    // Walk the extra records: a padding record's zero data is not in the skeleton and is put back.
    let x = p + Z.LOCAL_SIZE + nameLen;
    let left = extraLen;
    let zeros = 0;
    while (left > 0) {
      if (left < 4 || x + 4 > bytes.length) throw badManifest('skeleton ends inside a local header');
      const len = bytes.readUInt16LE(x + 2);
      if (4 + len > left) throw badManifest('extra record runs past its header in the skeleton');
      if (bytes.readUInt16LE(x) === PADDING_EXTRA_ID) {
        if (4 + len !== left) throw badManifest('padding record is not the last extra record');
        zeros = len;
        x += 4;
      } else x += 4 + len;
      left -= 4 + len;
    }
    const end = x;
    if (end > bytes.length) throw badManifest('skeleton ends inside a local header');
    let name: string;
    try {
      name = utf8.decode(bytes.subarray(p + Z.LOCAL_SIZE, p + Z.LOCAL_SIZE + nameLen));
    } catch {
      throw badManifest('skeleton entry name is not UTF-8');
    }
    let compressedSize = bytes.readUInt32LE(p + 18);
    let size = bytes.readUInt32LE(p + 22);
    if (compressedSize === Z.U32_MAX || size === Z.U32_MAX) {
      const z = p + Z.LOCAL_SIZE + nameLen;
      if (extraLen < 20 || bytes.readUInt16LE(z) !== Z.ZIP64_EXTRA_ID || bytes.readUInt16LE(z + 2) !== 16)
        throw badManifest(`skeleton entry ${JSON.stringify(name)} lacks its ZIP64 sizes`);
      size = Number(bytes.readBigUInt64LE(z + 4));
      compressedSize = Number(bytes.readBigUInt64LE(z + 12));
    }
    entries.push({
      name,
      header: zeros ? Buffer.concat([bytes.subarray(p, end), Buffer.alloc(zeros)]) : bytes.subarray(p, end),
      method: bytes.readUInt16LE(p + 8),
      crc32: bytes.readUInt32LE(p + 14),
      size,
      compressedSize,
    });
    p = end;
  }
  if (entries.length === 0) throw badManifest('skeleton has no entries');
  return {
    entries,
    tail: bytes.subarray(p),
    dosTime: { time: entries[0].header.readUInt16LE(10), date: entries[0].header.readUInt16LE(12) },
  };
}
