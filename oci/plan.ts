/**
 * Where every byte of the package being assembled comes from (spec/OCI.md §3–§4): for the whole
 * package, the skeleton's headers and tail interleaved with the entries' blobs at their original
 * offsets; for a partial one, the present entries laid out afresh by pack's layout rule (§2.5–2.6 of
 * FORMAT.md) with `xpkg/partial.json` before the signatures. Pure: no I/O.
 */
import { crc32 } from 'node:zlib';
import { layoutPayloads } from '../pack/pack.js';
import { encodeDirectory } from '../pack/writer.js';
import * as Z from '../pack/zip.js';
import { OciError } from '../spec/errors.js';
import { MANIFEST_PATH, SIGNATURES_PATH } from '../spec/limits.js';
import { modelPaths } from '../spec/manifest.js';
import { absentFilesFor, PARTIAL_PATH, partialBytes } from '../spec/partial.js';
import type { Manifest } from '../spec/schema.js';
import { ANNOTATION, type Descriptor, MEDIA, type OciManifest, parseSkeleton, type SkeletonEntry } from './artifact.js';

export type Piece = { at: number; bytes: Buffer } | { at: number; layer: Descriptor; path: string };

export interface Plan {
  size: number;
  pieces: Piece[];
  /** Payload files left out (empty: the whole package). */
  absent: string[];
  /** Canonical `xpkg/partial.json` bytes, or null for the whole package. */
  partial: Buffer | null;
}

export interface PlanInput {
  oci: OciManifest;
  manifest: Manifest;
  manifestBytes: Buffer;
  skeleton: Buffer;
  signatures: Buffer | null;
}

const bad = (summary: string, detail?: unknown) => new OciError('E_OCI_MANIFEST', summary, detail);

/** Skeleton entries matched with their blobs; every mismatch between the two is E_OCI_MANIFEST. */
function match(input: PlanInput): { entry: SkeletonEntry; layer?: Descriptor; bytes?: Buffer }[] {
  const { oci, manifest, manifestBytes, signatures } = input;
  const sk = parseSkeleton(input.skeleton);
  const files = new Map(
    oci.layers.filter((l) => l.mediaType === MEDIA.file).map((l) => [l.annotations?.[ANNOTATION.title], l]),
  );
  const listed = new Map(manifest.files.map((f) => [f.path, f]));
  const out = sk.entries.map((entry) => {
    if (entry.name === MANIFEST_PATH) {
      if (entry.compressedSize !== manifestBytes.length || entry.method !== 0)
        throw bad('skeleton and config disagree on the manifest entry');
      return { entry, bytes: manifestBytes };
    }
    if (entry.name === SIGNATURES_PATH) {
      if (!signatures || entry.compressedSize !== signatures.length || entry.method !== 0)
        throw bad('skeleton and signatures layer disagree');
      return { entry, bytes: signatures };
    }
    const layer = files.get(entry.name);
    const f = listed.get(entry.name);
    if (!layer || !f) throw bad(`no layer for ${JSON.stringify(entry.name)}`, { path: entry.name });
    if (layer.size !== entry.compressedSize || (entry.method === 0 && layer.digest !== `sha256:${f.sha256}`))
      throw bad(`layer of ${JSON.stringify(entry.name)} does not match the manifest`, { path: entry.name });
    files.delete(entry.name);
    return { entry, layer };
  });
  if (files.size) throw bad('layers that are not entries of the package', { paths: [...files.keys()] });
  if (signatures && !sk.entries.some((e) => e.name === SIGNATURES_PATH))
    throw bad('signatures layer without its entry');
  return out;
}

/** The whole package, byte-identical to the one pushed. */
export function planWhole(input: PlanInput): Plan {
  const pieces: Piece[] = [];
  let at = 0;
  for (const { entry, layer, bytes } of match(input)) {
    pieces.push({ at, bytes: entry.header });
    at += entry.header.length;
    pieces.push(bytes ? { at, bytes } : { at, layer: layer!, path: entry.name });
    at += entry.compressedSize;
  }
  const tail = parseSkeleton(input.skeleton).tail;
  pieces.push({ at, bytes: tail });
  return { size: at + tail.length, pieces, absent: [], partial: null };
}

/**
 * A package holding only `keepVariants` (plus every file that is not a model file). When nothing
 * would be left out, the whole package.
 */
export function planPartial(input: PlanInput, keepVariants: ReadonlySet<string>): Plan {
  const absent = absentFilesFor(input.manifest, keepVariants);
  if (absent.length === 0) return planWhole(input);
  return layoutPartial(input, absent, partialBytes(absent));
}

/**
 * The partial layout with `absent` left out and `record` as `xpkg/partial.json`. planPartial passes
 * the canonical record of exactly what it leaves out; tests pass others to check that readers refuse them.
 */
export function layoutPartial(input: PlanInput, absent: readonly string[], record: Buffer): Plan {
  const gone = new Set(absent);
  const matched = match(input);
  const ts = parseSkeleton(input.skeleton).dosTime;
  const layoutOf = (e: SkeletonEntry, offset = 0): Z.EntryLayout => ({
    name: Buffer.from(e.name, 'utf8'),
    method: e.method as 0 | 8,
    crc32: e.crc32,
    compressedSize: e.compressedSize,
    size: e.size,
    localHeaderOffset: offset,
    padding: 0,
  });
  const head = matched.find((m) => m.entry.name === MANIFEST_PATH)!;
  const manifestLayout = layoutOf(head.entry);
  const models = modelPaths(input.manifest);
  const present = matched
    .filter((m) => m.layer && !gone.has(m.entry.name))
    .map((m) => ({ path: m.entry.name, size: m.entry.compressedSize, aligned: models.has(m.entry.name), m }));
  // The layout rule writes stored entries; method, CRC and sizes come from the skeleton.
  const { order, cursor } = layoutPayloads(manifestLayout, present);
  const pieces: Piece[] = [];
  const put = (layout: Z.EntryLayout, data: Buffer | { layer: Descriptor; path: string }) => {
    const header = Z.encodeLocalHeader(layout, ts);
    pieces.push({ at: layout.localHeaderOffset, bytes: header });
    const at = layout.localHeaderOffset + header.length;
    pieces.push(Buffer.isBuffer(data) ? { at, bytes: data } : { at, ...data });
  };
  put(manifestLayout, input.manifestBytes);
  const layouts = [manifestLayout];
  for (const { s, layout } of order) {
    Object.assign(layout, { method: s.m.entry.method, crc32: s.m.entry.crc32, size: s.m.entry.size });
    put(layout, { layer: s.m.layer!, path: s.path });
    layouts.push(layout);
  }
  let at = cursor;
  const partial = record;
  const stored = (name: string, bytes: Buffer, crc: number): Z.EntryLayout => {
    const l: Z.EntryLayout = {
      name: Buffer.from(name),
      method: 0,
      crc32: crc,
      compressedSize: bytes.length,
      size: bytes.length,
      localHeaderOffset: at,
      padding: 0,
    };
    put(l, bytes);
    layouts.push(l);
    at += Z.localHeaderLength(l) + bytes.length;
    return l;
  };
  stored(PARTIAL_PATH, partial, crc32(partial) >>> 0);
  const sig = matched.find((m) => m.entry.name === SIGNATURES_PATH);
  if (sig) stored(SIGNATURES_PATH, sig.bytes!, sig.entry.crc32);
  const tail = encodeDirectory(layouts, at, ts);
  pieces.push({ at, bytes: tail });
  return { size: at + tail.length, pieces, absent: [...absent], partial };
}
