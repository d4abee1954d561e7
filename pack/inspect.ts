/**
 * `xpkg inspect`: what a package holds, read through the strict reader (no digest pass, no
 * signature check: signatures are reported as present, never as verified).
 */

import { toXpkgError } from '../spec/errors.js';
import { modelPaths } from '../spec/manifest.js';
import type { Requirements, Step } from '../spec/schema.js';
import { escapeLine } from '../spec/terminal.js';
import { PackageReader } from './reader.js';

export interface InspectResult {
  name: string;
  version: string;
  sequence: number;
  id: string;
  task: string;
  license: string;
  description?: string;
  expires?: string;
  size: number;
  inputs: { name: string; type: string }[];
  outputs: { name: string; type: string }[];
  models: {
    id: string;
    variants: {
      id: string;
      runtime: string;
      precision: string;
      files: string[];
      bytes: number;
      requires: Requirements;
    }[];
  }[];
  pipeline: { steps: Step[]; scripts: { path: string; hooks: string[] }[] };
  assets: { id: string; path: string; kind: string }[];
  files: {
    path: string;
    size: number;
    sha256: string;
    /** `absent`: left out of a partial package (spec/OCI.md §4); its offset is then -1. */
    stored: 'stored' | 'deflate' | 'absent';
    aligned: boolean;
    offset: number;
  }[];
  /** `present`: a signatures entry exists; whether it verifies is `xpkg verify`'s question. */
  signatures: { status: 'unsigned' | 'present' | 'unreadable'; verified: false; keyids: string[]; error?: string };
}

export interface InspectOptions {
  /**
   * Envelope decoder for the key ids (signing's `decodeEnvelope`, passed in because pack sits
   * below signing). Without one, a signed package reports `present` with no key ids.
   */
  decodeEnvelope?: (bytes: Uint8Array) => { signatures: { keyid: string }[] };
}

export async function inspectPackage(path: string, options: InspectOptions = {}): Promise<InspectResult> {
  await using r = await PackageReader.open(path);
  return inspectReader(r, options);
}

/** What an open package holds (the browser build inspects a File or URL it opened). */
export function inspectReader(r: PackageReader, options: InspectOptions = {}): InspectResult {
  const m = r.manifest;
  const sizeOf = new Map(m.files.map((f) => [f.path, f.size]));
  const models = modelPaths(m);
  let signatures: InspectResult['signatures'] = { status: 'unsigned', verified: false, keyids: [] };
  if (r.signaturesBytes) {
    try {
      signatures = {
        status: 'present',
        verified: false,
        keyids: options.decodeEnvelope ? options.decodeEnvelope(r.signaturesBytes).signatures.map((s) => s.keyid) : [],
      };
    } catch (e) {
      signatures = { status: 'unreadable', verified: false, keyids: [], error: toXpkgError(e).code };
    }
  }
  return {
    name: m.name,
    version: m.version,
    sequence: m.sequence,
    id: r.id,
    task: m.task,
    license: m.license,
    ...(m.description ? { description: m.description } : {}),
    ...(m.expires ? { expires: m.expires } : {}),
    size: r.fileSize,
    inputs: m.inputs.map(({ name, type }) => ({ name, type })),
    outputs: m.outputs.map(({ name, type }) => ({ name, type })),
    models: m.models.map((mod) => ({
      id: mod.id,
      variants: mod.variants.map((v) => ({
        id: v.id,
        runtime: v.runtime,
        precision: v.precision,
        files: v.files,
        bytes: v.files.reduce((n, f) => n + (sizeOf.get(f) ?? 0), 0),
        requires: v.requires ?? {},
      })),
    })),
    pipeline: {
      steps: m.pipeline.steps,
      scripts: (m.pipeline.scripts ?? []).map(({ path: p, hooks }) => ({ path: p, hooks })),
    },
    assets: (m.assets ?? []).map(({ id, path: p, kind }) => ({ id, path: p, kind })),
    files: m.files.map((f) => {
      const e = r.entry(f.path);
      return {
        path: f.path,
        size: f.size,
        sha256: f.sha256,
        stored: !e ? 'absent' : e.method === 0 ? 'stored' : 'deflate',
        aligned: models.has(f.path),
        offset: e ? e.dataOffset : -1,
      };
    }),
    signatures,
  };
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  let v = n;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

/**
 * A package's free text on one line: a newline in a description or license must not forge a line
 * of this report ("signature verified"), and no escape sequence reaches the terminal.
 */
const L = (s: string) => escapeLine(s);

function describeRequires(r: Requirements): string {
  const parts: string[] = [];
  if (r.os) parts.push(`os ${r.os.join('|')}`);
  if (r.arch) parts.push(`arch ${r.arch.join('|')}`);
  if (r.cpuFeatures?.length) parts.push(`cpu ${r.cpuFeatures.join('+')}`);
  if (r.accelerator) {
    const a = r.accelerator;
    parts.push(`${a.vendor} ${a.kind}${a.arch ? ` ${a.arch.join('|')}` : ''}${a.minArch ? ` ≥${a.minArch}` : ''}`);
  }
  if (r.runtimeVersion) parts.push(`runtime ${L(r.runtimeVersion)}`);
  return parts.length ? parts.join(', ') : 'any host';
}

export function renderInspect(i: InspectResult): string {
  const lines = [
    `${L(i.name)}@${L(i.version)} (sequence ${i.sequence})`,
    `  id        ${i.id}`,
    `  task      ${L(i.task)}    license ${L(i.license)}    size ${formatBytes(i.size)}`,
  ];
  if (i.description) lines.push(`  about     ${L(i.description)}`);
  if (i.expires) lines.push(`  expires   ${L(i.expires)}`);
  lines.push(`  inputs    ${i.inputs.map((x) => `${x.name}: ${x.type}`).join(', ')}`);
  lines.push(`  outputs   ${i.outputs.map((x) => `${x.name}: ${x.type}`).join(', ')}`);
  const sig = i.signatures;
  if (sig.status === 'unsigned') lines.push('  signature none');
  else if (sig.status === 'unreadable')
    lines.push(`  signature present but unreadable (${L(String(sig.error))}); not verified`);
  else
    lines.push(
      `  signature present, not verified${sig.keyids.length ? ` (key ids ${sig.keyids.join(', ')})` : ''}; check it with xpkg verify --trust <key.pub>`,
    );
  lines.push('models:');
  for (const m of i.models) {
    lines.push(`  ${m.id}`);
    for (const v of m.variants)
      lines.push(
        `    ${v.id.padEnd(22)} ${v.runtime} ${v.precision}  ${formatBytes(v.bytes).padStart(9)}  needs ${describeRequires(v.requires)}`,
      );
  }
  lines.push(
    `pipeline: ${i.pipeline.steps.map((s) => s.op + (s.model ? `(${s.model})` : '')).join(' → ') || '(none)'}`,
  );
  for (const s of i.pipeline.scripts) lines.push(`  script ${s.path} hooks ${s.hooks.join(', ')}`);
  if (i.assets.length) lines.push(`assets: ${i.assets.map((a) => `${a.id} (${L(a.kind)}, ${a.path})`).join(', ')}`);
  lines.push(`files (${i.files.length}):`);
  for (const f of i.files)
    lines.push(
      `  ${formatBytes(f.size).padStart(9)}  ${f.sha256.slice(0, 16)}…  ${f.path}${f.aligned ? '  [aligned]' : ''}${f.stored === 'absent' ? '  [absent]' : ''}`,
    );
  return lines.join('\n');
}
