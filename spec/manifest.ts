/**
 * Reading and validating manifests: strict JSON, canonical form, JSON Schema (every failing field
 * reported at once), then the cross-references a schema cannot express.
 */
import type { ErrorObject, ValidateFunction } from 'ajv';
import { sha256Hex } from '../platform/index.js';
import { canonicalBytes, parseStrictJson } from './canonical.js';
import { rfc3339Instant } from './date-time.js';
import { FormatError } from './errors.js';
import * as generated from './generated/manifest.js';
import { BLOCK_SIZE, LIMITS } from './limits.js';
import { assertNoCollisions, isReserved, pathProblem } from './paths.js';
import type { Manifest, ManifestSource } from './schema.js';

export interface FieldProblem {
  /** JSON pointer of the offending field. */
  path: string;
  message: string;
}

// Compiled at build time from spec/schema.ts by spec/gen-validators.ts (MANIFEST_AJV_OPTIONS, with
// ajv-formats): building the TypeBox schemas and compiling them with ajv took most of the CLI's start.
const compiled = {
  manifest: generated.manifest as unknown as ValidateFunction,
  source: generated.manifestSource as unknown as ValidateFunction,
};
const validators = () => compiled;

function ajvProblems(errors: ErrorObject[] | null | undefined): FieldProblem[] {
  return (errors ?? []).map((e) => {
    let message = e.message ?? 'invalid';
    if (e.keyword === 'additionalProperties')
      message = `unknown field ${JSON.stringify((e.params as { additionalProperty: string }).additionalProperty)}`;
    if (e.keyword === 'enum' || e.keyword === 'const')
      message += `: ${JSON.stringify((e.params as { allowedValues?: unknown; allowedValue?: unknown }).allowedValues ?? (e.params as { allowedValue?: unknown }).allowedValue)}`;
    return { path: e.instancePath || '/', message };
  });
}

function schemaError(kind: string, problems: FieldProblem[]): FormatError {
  const head = problems
    .slice(0, 3)
    .map((p) => `${p.path}: ${p.message}`)
    .join('; ');
  const more = problems.length > 3 ? ` (and ${problems.length - 3} more)` : '';
  return new FormatError('E_MANIFEST_SCHEMA', `${kind} does not match the schema: ${head}${more}`, { problems });
}

/** Every path the manifest points at, with where it is referenced from. */
export function referencedPaths(m: ManifestSource | Manifest): Map<string, string> {
  const refs = new Map<string, string>();
  m.models.forEach((model, i) =>
    model.variants.forEach((v, j) => v.files.forEach((f, k) => refs.set(f, `/models/${i}/variants/${j}/files/${k}`))),
  );
  (m.assets ?? []).forEach((a, i) => refs.set(a.path, `/assets/${i}/path`));
  (m.pipeline.scripts ?? []).forEach((s, i) => refs.set(s.path, `/pipeline/scripts/${i}/path`));
  if ('include' in m) (m.include ?? []).forEach((p, i) => refs.set(p, `/include/${i}`));
  return refs;
}

/** Paths of model files: these are stored uncompressed and aligned. */
export function modelPaths(m: ManifestSource | Manifest): Set<string> {
  return new Set(m.models.flatMap((model) => model.variants.flatMap((v) => v.files)));
}

function semanticProblems(m: ManifestSource | Manifest): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const unique = (items: { id: string }[], where: string, what: string) => {
    const seen = new Set<string>();
    items.forEach((it, i) => {
      if (seen.has(it.id))
        problems.push({ path: `${where}/${i}/id`, message: `duplicate ${what} id ${JSON.stringify(it.id)}` });
      seen.add(it.id);
    });
  };
  unique(m.models, '/models', 'model');
  unique(
    m.models.flatMap((x) => x.variants),
    '/variants',
    'variant',
  );
  unique(m.assets ?? [], '/assets', 'asset');
  const ioNames = (list: { name: string }[], where: string) => {
    const seen = new Set<string>();
    list.forEach((io, i) => {
      if (seen.has(io.name))
        problems.push({ path: `${where}/${i}/name`, message: `duplicate name ${JSON.stringify(io.name)}` });
      seen.add(io.name);
    });
  };
  ioNames(m.inputs, '/inputs');
  ioNames(m.outputs, '/outputs');
  const modelIds = new Set(m.models.map((x) => x.id));
  const scriptPaths = new Set((m.pipeline.scripts ?? []).map((s) => s.path));
  m.pipeline.steps.forEach((s, i) => {
    if (s.model !== undefined && !modelIds.has(s.model))
      problems.push({ path: `/pipeline/steps/${i}/model`, message: `no model with id ${JSON.stringify(s.model)}` });
    if (s.script !== undefined && !scriptPaths.has(s.script))
      problems.push({
        path: `/pipeline/steps/${i}/script`,
        message: `script ${JSON.stringify(s.script)} is not declared in pipeline.scripts`,
      });
    if (s.hook !== undefined && s.script === undefined)
      problems.push({ path: `/pipeline/steps/${i}/hook`, message: 'hook without script' });
  });
  problems.push(...stepPatchProblems(m), ...splitProblems(m));
  for (const [p, where] of referencedPaths(m)) {
    const why = pathProblem(p);
    if (why) problems.push({ path: where, message: `unsafe path ${JSON.stringify(p)}: ${why}` });
    else if (isReserved(p))
      problems.push({ path: where, message: `path ${JSON.stringify(p)} is under the reserved xpkg/ prefix` });
  }
  if (m.expires !== undefined && rfc3339Instant(m.expires) === undefined)
    problems.push({ path: '/expires', message: 'not an RFC 3339 date-time' });
  return problems;
}

/** A split's tail is another declared model, the tail of one split only, and not itself a head. */
function splitProblems(m: ManifestSource | Manifest): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const byId = new Map(m.models.map((x) => [x.id, x]));
  const tails = new Set<string>();
  m.models.forEach((model, i) => {
    if (!model.split) return;
    const where = `/models/${i}/split/tail`;
    const tail = byId.get(model.split.tail);
    if (!tail) problems.push({ path: where, message: `no model with id ${JSON.stringify(model.split.tail)}` });
    else if (tail.id === model.id) problems.push({ path: where, message: 'a model cannot be its own tail' });
    else if (tail.split) problems.push({ path: where, message: `the tail ${JSON.stringify(tail.id)} is itself split` });
    else if (tails.has(tail.id))
      problems.push({ path: where, message: `${JSON.stringify(tail.id)} is already the tail of another split` });
    tails.add(model.split.tail);
  });
  return problems;
}

/** Ops whose steps carry more than params (a model, a script): a variant may not turn a step into one or out of one. */
const BOUND_OPS = new Set(['infer', 'script']);

/**
 * Variants' step patches (FORMAT.md §4.1): each names one step by a unique id; a step is patched
 * by the variants of one model at most, so any choice of variants combines without conflict.
 */
function stepPatchProblems(m: ManifestSource | Manifest): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const steps = m.pipeline.steps;
  const patchedBy = new Map<string, string>();
  m.models.forEach((model, i) =>
    model.variants.forEach((v, j) => {
      for (const [id, patch] of Object.entries(v.steps ?? {})) {
        const where = `/models/${i}/variants/${j}/steps/${id}`;
        const matches = steps.filter((s) => s.id === id);
        if (matches.length !== 1) {
          problems.push({
            path: where,
            message: matches.length
              ? `step id ${JSON.stringify(id)} is not unique`
              : `no pipeline step with id ${JSON.stringify(id)}`,
          });
          continue;
        }
        const other = patchedBy.get(id);
        if (other !== undefined && other !== model.id)
          problems.push({
            path: where,
            message: `step ${JSON.stringify(id)} is already changed by variants of model ${JSON.stringify(other)}`,
          });
        patchedBy.set(id, model.id);
        const op = matches[0].op;
        if (patch.op !== undefined && patch.op !== op && (BOUND_OPS.has(op) || BOUND_OPS.has(patch.op)))
          problems.push({
            path: `${where}/op`,
            message: `${op} → ${patch.op}: infer and script steps keep their op, and no step becomes one`,
          });
      }
    }),
  );
  return problems;
}

function filesProblems(m: Manifest): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const present = new Set<string>();
  m.files.forEach((f, i) => {
    const why = pathProblem(f.path);
    if (why) problems.push({ path: `/files/${i}/path`, message: `unsafe path: ${why}` });
    else if (isReserved(f.path))
      problems.push({ path: `/files/${i}/path`, message: 'path under the reserved xpkg/ prefix' });
    if (i > 0 && !(Buffer.compare(Buffer.from(m.files[i - 1].path), Buffer.from(f.path)) < 0)) {
      problems.push({
        path: `/files/${i}/path`,
        message: 'files are not sorted by path (UTF-8 byte order) or repeat a path',
      });
    }
    const nBlocks = Math.ceil(f.size / BLOCK_SIZE);
    if (f.blocks.length !== nBlocks)
      problems.push({
        path: `/files/${i}/blocks`,
        message: `a ${f.size}-byte file has ${nBlocks} blocks, not ${f.blocks.length}`,
      });
    else if (nBlocks === 1 && f.blocks[0] !== f.sha256)
      problems.push({
        path: `/files/${i}/blocks/0`,
        message: 'a one-block file has its sha256 as its only block digest',
      });
    if (f.size === 0 && f.sha256 !== EMPTY_SHA256)
      problems.push({ path: `/files/${i}/sha256`, message: 'an empty file has the SHA-256 of no bytes' });
    present.add(f.path);
  });
  for (const [p, where] of referencedPaths(m)) {
    if (!present.has(p))
      problems.push({ path: where, message: `references ${JSON.stringify(p)}, which is not in files` });
  }
  return problems;
}

export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** Validates a manifest source object (for `xpkg pack`). Throws E_MANIFEST_SCHEMA or E_MANIFEST_REFERENCE. */
export function validateManifestSource(value: unknown): ManifestSource {
  const v = validators().source;
  if (!v(value)) throw schemaError('manifest source', ajvProblems(v.errors));
  const m = value as ManifestSource;
  const problems = semanticProblems(m);
  if (problems.length) throw referenceError(problems);
  assertNoCollisions(referencedPaths(m).keys());
  return m;
}

function referenceError(problems: FieldProblem[]): FormatError {
  const head = problems
    .slice(0, 3)
    .map((p) => `${p.path}: ${p.message}`)
    .join('; ');
  return new FormatError(
    'E_MANIFEST_REFERENCE',
    `manifest is inconsistent: ${head}${problems.length > 3 ? ` (and ${problems.length - 3} more)` : ''}`,
    { problems },
  );
}

/** Validates a complete manifest object. Throws E_MANIFEST_SCHEMA, E_MANIFEST_REFERENCE or E_PATH_*. */
export function validateManifest(value: unknown): Manifest {
  if (
    value &&
    typeof value === 'object' &&
    'format' in value &&
    typeof value.format === 'string' &&
    value.format !== 'xpkg/1' &&
    /^xpkg\//.test(value.format)
  ) {
    throw new FormatError(
      'E_MANIFEST_VERSION',
      `unsupported format ${JSON.stringify(value.format)}; this reader knows xpkg/1`,
      { format: value.format },
    );
  }
  const v = validators().manifest;
  if (!v(value)) throw schemaError('manifest', ajvProblems(v.errors));
  const m = value as Manifest;
  const problems = [...semanticProblems(m), ...filesProblems(m)];
  if (problems.length) throw referenceError(problems);
  assertNoCollisions(m.files.map((f) => f.path));
  return m;
}

export interface ParsedManifest {
  manifest: Manifest;
  /** The canonical bytes, exactly as stored and signed. */
  bytes: Buffer;
  /** Package id: lower-case hex SHA-256 of `bytes`. */
  id: string;
}

/** Parses stored manifest bytes: size limit, strict JSON, canonical form, schema, references. */
export function parseManifest(bytes: Uint8Array): ParsedManifest {
  if (bytes.length > LIMITS.manifestBytes) {
    throw new FormatError(
      'E_MANIFEST_TOO_LARGE',
      `manifest is ${bytes.length} bytes; the limit is ${LIMITS.manifestBytes}`,
      { size: bytes.length, limit: LIMITS.manifestBytes },
    );
  }
  const value = parseStrictJson(bytes);
  const canon = canonicalBytes(value);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (!canon.equals(buf)) {
    throw new FormatError('E_MANIFEST_NOT_CANONICAL', 'manifest bytes are not in canonical JSON form (RFC 8785)', {
      expectedSize: canon.length,
      actualSize: buf.length,
    });
  }
  const manifest = validateManifest(value);
  return { manifest, bytes: buf, id: packageId(buf) };
}

export function packageId(canonicalManifest: Uint8Array): string {
  return sha256Hex(canonicalManifest);
}
