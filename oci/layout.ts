/**
 * `xpkg export --oci-layout` and `xpkg import`: the same artifact as in a registry, written as an
 * OCI image layout (a folder, or a tar of one) for air-gapped transfer, and read back through the
 * same assembly as a pull, every blob checked against its digest.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';
import { PackageReader } from '../pack/reader.js';
import { OciError } from '../spec/errors.js';
import { artifactOf, hexOf, MAX_OCI_MANIFEST, MEDIA } from './artifact.js';
import { type BlobSource, fetchSmall } from './assemble.js';
import type { Cache } from './cache.js';
import { packageInIndex } from './image-index.js';
import { type Materialized, type MaterializeOptions, materialize } from './pull.js';
import { DIGEST } from './ref.js';

const REF_NAME = 'org.opencontainers.image.ref.name';
const isTar = (p: string) => /\.tar$/i.test(p);

export interface ExportResult {
  path: string;
  digest: string;
  tag: string;
  blobs: number;
  bytes: number;
}

/** Writes the package's artifact as an OCI layout at `dest` (a folder, or a `.tar` file). */
export async function exportLayout(pkgPath: string, dest: string, tag = 'latest'): Promise<ExportResult> {
  const reader = await PackageReader.open(pkgPath);
  const dir = isTar(dest) ? await mkdtemp(join(tmpdir(), 'xpkg-layout-')) : resolve(dest);
  try {
    const art = await artifactOf(reader);
    // A folder that already is a layout (an earlier export, skopeo's) keeps what it lists: only the
    // entry of this tag is replaced. Its index.json is read before any blob is written.
    const held = isTar(dest) ? null : await readLayoutIndex(dir, dest, true);
    const version = isTar(dest) ? null : await readLayoutVersion(dir, dest);
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    let bytes = 0;
    const put = async (hex: string, write: (path: string) => Promise<void>) => {
      const path = join(dir, 'blobs', 'sha256', hex);
      if (
        await stat(path).then(
          () => true,
          () => false,
        )
      )
        return;
      await write(`${path}.tmp`);
      await rename(`${path}.tmp`, path);
    };
    for (const b of art.blobs) {
      const d = b.descriptor;
      bytes += d.size;
      await put(hexOf(d.digest), (p) =>
        b.bytes
          ? writeFile(p, b.bytes)
          : d.size === 0
            ? writeFile(p, Buffer.alloc(0))
            : pipeline(
                createReadStream(pkgPath, { start: b.offset!, end: b.offset! + d.size - 1 }),
                createWriteStream(p),
              ),
      );
    }
    await put(hexOf(art.digest), (p) => writeFile(p, art.manifestBytes));
    const mine = {
      mediaType: MEDIA.ociManifest,
      artifactType: MEDIA.artifact,
      digest: art.digest,
      size: art.manifestBytes.length,
      annotations: { [REF_NAME]: tag },
    };
    const index = {
      schemaVersion: 2,
      mediaType: MEDIA.ociIndex,
      ...held?.index,
      manifests: [...(held?.manifests ?? []).filter((m) => m.annotations?.[REF_NAME] !== tag), mine],
    };
    // A 1.x layout's own marker is kept as it is.
    if (!version) await writeFile(join(dir, 'oci-layout'), LAYOUT_MARKER);
    await writeFile(join(dir, 'index.json.tmp'), JSON.stringify(index));
    await rename(join(dir, 'index.json.tmp'), join(dir, 'index.json'));
    if (isTar(dest)) {
      const tmp = `${resolve(dest)}.${process.pid}.tmp`;
      await tar.c({ file: tmp, cwd: dir, portable: true, noMtime: true }, ['oci-layout', 'index.json', 'blobs']);
      await rename(tmp, resolve(dest));
    }
    return { path: resolve(dest), digest: art.digest, tag, blobs: art.blobs.length + 1, bytes };
  } finally {
    await reader.close();
    if (isTar(dest)) await rm(dir, { recursive: true, force: true });
  }
}

const bad = (summary: string, detail?: unknown) => new OciError('E_OCI_LAYOUT', summary, detail);

const LAYOUT_MARKER = '{"imageLayoutVersion":"1.0.0"}';

/**
 * The layout's `oci-layout` version, or null when the file is missing (skopeo reads such folders,
 * so import does too). Another major version is a layout whose structure xpkg does not know: read
 * as 1.0 it could be misread, and an export would relabel it 1.0.0, so it is E_OCI_LAYOUT (as ORAS).
 */
async function readLayoutVersion(dir: string, src: string): Promise<string | null> {
  const path = join(dir, 'oci-layout');
  const st = await stat(path).catch(() => null);
  if (!st) return null;
  let version: unknown;
  try {
    if (!st.isFile() || st.size > 64 * 1024) throw new Error('not a small file');
    version = (JSON.parse(await readFile(path, 'utf8')) as { imageLayoutVersion?: unknown } | null)?.imageLayoutVersion;
  } catch {
    throw bad(`${src}: oci-layout is not a JSON object with an imageLayoutVersion`);
  }
  if (typeof version !== 'string' || !/^1\.\d+\.\d+$/.test(version))
    throw bad(`${src} is an OCI layout of version ${JSON.stringify(version)}; xpkg reads and writes version 1`, {
      imageLayoutVersion: version ?? null,
    });
  return version;
}

interface LayoutEntry {
  digest?: unknown;
  size?: number;
  annotations?: Record<string, string>;
}

/**
 * A layout's index.json: its other fields and its descriptors (objects; their fields are checked
 * where used). Not a file, over the manifest limit, not JSON or not an index: E_OCI_LAYOUT, never
 * a crash on `null` or a `manifests` that is no list. With `optional`, a missing one is null.
 */
async function readLayoutIndex(
  dir: string,
  src: string,
  optional: boolean,
): Promise<{ index: Record<string, unknown>; manifests: LayoutEntry[] } | null> {
  const path = join(dir, 'index.json');
  const st = await stat(path).catch(() => null);
  if (!st && optional) return null;
  if (!st?.isFile()) throw bad(`${src} is not an OCI layout (no readable index.json)`);
  if (st.size > MAX_OCI_MANIFEST)
    throw bad(`${src}: index.json is larger than ${MAX_OCI_MANIFEST} bytes`, { size: st.size });
  let index: unknown;
  try {
    index = JSON.parse(await readFile(path, 'utf8'));
  } catch {
    throw bad(`${src} is not an OCI layout (no readable index.json)`);
  }
  const manifests = (index as { manifests?: unknown } | null)?.manifests ?? [];
  if (
    !index ||
    typeof index !== 'object' ||
    Array.isArray(index) ||
    !Array.isArray(manifests) ||
    !manifests.every((m) => m && typeof m === 'object' && !Array.isArray(m))
  )
    throw bad(`${src}: index.json is not an image index (an object with a list of descriptors)`);
  return { index: index as Record<string, unknown>, manifests: manifests as LayoutEntry[] };
}

/** The tag part of a ref.name written as a full reference (`localhost:5000/models/ocr:4` → `4`), else null. */
function tagOf(name: unknown): string | null {
  if (typeof name !== 'string') return null;
  const colon = name.lastIndexOf(':');
  return colon > 0 && colon > name.lastIndexOf('/') ? name.slice(colon + 1) : null;
}

/**
 * The entries named `tag`: its exact ref.name; else, for a bare tag, the entries whose ref.name is
 * a full reference with that tag (podman save and `skopeo copy … oci:dir:host/repo:tag` write the
 * full form, xpkg, umoci and BuildKit the tag alone).
 */
function taggedAs(all: LayoutEntry[], tag: string): LayoutEntry[] {
  const exact = all.filter((m) => m.annotations?.[REF_NAME] === tag);
  if (exact.length || /[/:@]/.test(tag)) return exact;
  return all.filter((m) => tagOf(m.annotations?.[REF_NAME]) === tag);
}

function layoutSource(dir: string): BlobSource {
  return {
    where: dir,
    retries: 0,
    async open(desc, offset) {
      const path = join(dir, 'blobs', 'sha256', hexOf(desc.digest));
      const st = await stat(path).catch(() => null);
      if (!st?.isFile()) throw bad(`the layout has no blob ${desc.digest}`, { digest: desc.digest });
      // A truncated copy can never match (and nothing would come of reading it again).
      if (st.size !== desc.size)
        throw new OciError(
          'E_OCI_DIGEST',
          `blob ${desc.digest} in ${dir} is ${st.size} bytes; its descriptor says ${desc.size}`,
          {
            digest: desc.digest,
            size: st.size,
            expected: desc.size,
          },
        );
      return { stream: createReadStream(path, { start: offset, highWaterMark: 1 << 20 }), offset };
    },
  };
}

/** Reads an OCI layout (folder or tar) into the cache: the manifest tagged `tag`, or the only one. */
export async function importLayout(
  cache: Cache,
  src: string,
  tag: string | undefined,
  options: MaterializeOptions = {},
): Promise<Materialized & { digest: string }> {
  let dir = resolve(src);
  let extracted: string | null = null;
  try {
    if (isTar(src)) {
      extracted = await mkdtemp(join(cache.tmpPath(''), 'layout-'));
      // Only the layout's own regular files are taken out of the archive.
      await tar
        .x({
          file: src,
          cwd: extracted,
          strict: true,
          filter: (p, e) =>
            (e as { type?: string }).type === 'File' &&
            /^(\.\/)?(oci-layout|index\.json|blobs\/sha256\/[a-f0-9]{64})$/.test(p),
        })
        .catch((e: Error) => {
          throw bad(`${src} is not a readable tar: ${e.message}`);
        });
      dir = extracted;
    }
    await readLayoutVersion(dir, src);
    const { manifests: all } = (await readLayoutIndex(dir, src, false))!;
    // One manifest under several tags (umoci tag, skopeo copies to two names) is one choice.
    const chosen = [...new Map((tag ? taggedAs(all, tag) : all).map((m) => [m.digest, m])).values()];
    if (chosen.length !== 1)
      throw bad(
        tag
          ? `the layout has ${chosen.length} manifests tagged ${JSON.stringify(tag)}`
          : all.length
            ? `the layout has ${chosen.length} manifests; name one with --tag`
            : 'the layout lists no manifest',
        { tags: all.map((m) => m.annotations?.[REF_NAME] ?? null) },
      );
    const digest = chosen[0].digest;
    if (typeof digest !== 'string' || !DIGEST.test(digest))
      throw bad(
        `the layout's descriptor names ${typeof digest === 'string' ? digest : 'no digest'}; xpkg reads sha256 blobs`,
        { digest: digest ?? null },
      );
    const size = chosen[0].size;
    // A descriptor without its size would read as a digest mismatch of an empty blob.
    if (!Number.isSafeInteger(size) || size! < 0)
      throw bad(`the layout's descriptor of ${digest} has no valid size`, { digest });
    const desc = { mediaType: MEDIA.ociManifest, digest, size: size! };
    const source = layoutSource(dir);
    let bytes = await fetchSmall(source, desc, MAX_OCI_MANIFEST);
    // The tag may name an image index (skopeo copy --all of a multi-artifact index): its one package.
    const listed = await packageInIndex(bytes, (d) => fetchSmall(source, d, MAX_OCI_MANIFEST));
    if (listed) {
      bytes = listed.bytes;
      desc.digest = listed.descriptor.digest;
    }
    await cache.putBlob(desc.digest, bytes);
    const m = await materialize(cache, bytes, source, options);
    return { ...m, digest: desc.digest };
  } finally {
    if (extracted) await rm(extracted, { recursive: true, force: true });
  }
}
