/**
 * Partial packages (spec/OCI.md §4): the full package's manifest and signatures with some variants'
 * model files left out, recorded in `xpkg/partial.json`. The manifest is untouched, so the package
 * id and every signature still hold; the record can only take files away, never add or change one.
 */
import { canonicalBytes, parseStrictJson } from './canonical.js';
import { FormatError } from './errors.js';
import { modelPaths, referencedPaths } from './manifest.js';
import type { Manifest } from './schema.js';

export const PARTIAL_PATH = 'xpkg/partial.json';

const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** Files that only variants name, minus every file a kept variant or anything else needs. */
export function absentFilesFor(manifest: Manifest, keepVariants: ReadonlySet<string>): string[] {
  const needed = new Set<string>();
  for (const [path] of referencedPaths(manifest)) if (!modelPaths(manifest).has(path)) needed.add(path);
  for (const m of manifest.models)
    for (const v of m.variants) if (keepVariants.has(v.id)) for (const f of v.files) needed.add(f);
  return manifest.files
    .map((f) => f.path)
    .filter((p) => !needed.has(p))
    .sort(byteOrder);
}

/** Canonical bytes of the record for a set of absent files. */
export function partialBytes(absent: Iterable<string>): Buffer {
  return canonicalBytes({ absent: [...new Set(absent)].sort(byteOrder) });
}

const bad = (summary: string, detail?: unknown) => new FormatError('E_FILE_PARTIAL', summary, detail);

/**
 * Parses and checks a partial record against the manifest: canonical JSON `{"absent": [...]}`,
 * paths sorted, unique, at least one, each a model file of the manifest that no asset or script
 * needs. Returns the absent paths.
 */
export function parsePartial(bytes: Buffer, manifest: Manifest): ReadonlySet<string> {
  let value: unknown;
  try {
    value = parseStrictJson(bytes);
  } catch (e) {
    throw bad(`${PARTIAL_PATH} is not valid JSON: ${(e as Error).message}`);
  }
  const absent = (value as { absent?: unknown })?.absent;
  if (
    typeof value !== 'object' ||
    value === null ||
    Array.isArray(value) ||
    Object.keys(value).length !== 1 ||
    !Array.isArray(absent) ||
    absent.length === 0 ||
    !absent.every((p) => typeof p === 'string')
  )
    throw bad(`${PARTIAL_PATH} must be {"absent": [one or more paths]}`);
  if (!canonicalBytes(value).equals(bytes) || !partialBytes(absent as string[]).equals(bytes))
    throw bad(`${PARTIAL_PATH} is not canonical (paths sorted, unique, no white space)`);
  const listed = new Set(manifest.files.map((f) => f.path));
  const models = modelPaths(manifest);
  const other = new Set([...referencedPaths(manifest).keys()].filter((p) => !models.has(p)));
  for (const p of absent as string[]) {
    if (!listed.has(p))
      throw bad(`${PARTIAL_PATH} names ${JSON.stringify(p)}, which the manifest does not list`, { path: p });
    if (!models.has(p) || other.has(p))
      throw bad(`${PARTIAL_PATH} leaves out ${JSON.stringify(p)}, which is not only a model file`, { path: p });
  }
  return new Set(absent as string[]);
}

/** Variants with at least one absent file: a runner never selects them. */
export function absentVariants(manifest: Manifest, absent: ReadonlySet<string>): Set<string> {
  const out = new Set<string>();
  if (absent.size === 0) return out;
  for (const m of manifest.models) for (const v of m.variants) if (v.files.some((f) => absent.has(f))) out.add(v.id);
  return out;
}
