/**
 * Helpers for the signing end-to-end tests: tiny source folders, and a raw ZIP re-assembler that
 * lets a test craft hostile variants of a real signed package (extra, missing, renamed entries,
 * patched headers, gaps) with the archive layer's own record encoders.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';
import { packFolder } from '../pack/pack.js';
import { PackageReader } from '../pack/reader.js';
import * as Z from '../pack/zip.js';

export interface SourceOptions {
  name?: string;
  sequence?: number;
  expires?: string;
  description?: string;
  /** Model bytes; empty by default so nothing is aligned and the package stays a few KiB. */
  model?: Buffer;
}

/** Writes a minimal valid source folder (`xpkg.json`, a model, labels, a script) into `dir`. */
export async function writeSource(dir: string, o: SourceOptions = {}): Promise<void> {
  await mkdir(join(dir, 'scripts'), { recursive: true });
  const manifest = {
    name: o.name ?? 'tiny',
    version: '1.0.0',
    sequence: o.sequence ?? 3,
    description: o.description ?? 'a tiny test package',
    license: 'MIT',
    task: 'image-classification',
    ...(o.expires ? { expires: o.expires } : {}),
    inputs: [{ name: 'image', type: 'image' }],
    outputs: [{ name: 'label', type: 'classification' }],
    models: [{ id: 'm', variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['model.onnx'] }] }],
    pipeline: {
      steps: [
        { op: 'run', model: 'm' },
        { op: 'script', script: 'scripts/post.js', hook: 'post' },
      ],
      scripts: [{ path: 'scripts/post.js', hooks: ['post'] }],
    },
    assets: [{ id: 'labels', path: 'labels.txt', kind: 'labels' }],
  };
  await writeFile(join(dir, 'xpkg.json'), JSON.stringify(manifest, null, 2));
  await writeFile(join(dir, 'model.onnx'), o.model ?? Buffer.alloc(0));
  await writeFile(join(dir, 'labels.txt'), 'cat\ndog\n');
  await writeFile(join(dir, 'scripts', 'post.js'), 'export function post(x) { return x; }\n');
}

export async function packSource(dir: string, out: string, o: SourceOptions = {}): Promise<string> {
  await writeSource(dir, o);
  await mkdir(dirname(out), { recursive: true });
  await packFolder(dir, out, { sourceDateEpoch: '' });
  return out;
}

export interface RawEntry {
  name: string;
  method: 0 | 8;
  crc32: number;
  size: number;
  /** Entry data as stored (compressed when method is 8). */
  data: Buffer;
  padding?: number;
  /** Patches applied to the encoded local / central header of this entry. */
  patchLocal?: (h: Buffer) => void;
  patchCentral?: (h: Buffer) => void;
  /** Stray bytes written after this entry's data. */
  gapAfter?: Buffer;
}

/** Reads a package's entries (checked by the strict reader) as raw, re-assemblable records. */
export async function rawEntries(
  path: string,
): Promise<{ entries: RawEntry[]; dosTime: { time: number; date: number } }> {
  const bytes = await readFile(path);
  const reader = await PackageReader.open(path);
  try {
    const entries = reader.entries.map((e) => ({
      name: e.name,
      method: e.method,
      crc32: e.crc32,
      size: e.size,
      data: bytes.subarray(e.dataOffset, e.dataOffset + e.compressedSize),
    }));
    return { entries, dosTime: reader.dosTime };
  } finally {
    await reader.close();
  }
}

export function storedEntry(name: string, data: Buffer): RawEntry {
  return { name, method: 0, crc32: crc32(data) >>> 0, size: data.length, data };
}

/** Lays out entries contiguously and writes the central directory and end record. */
export function assemble(
  entries: RawEntry[],
  dosTime: { time: number; date: number },
  o: { prefix?: Buffer; trailing?: Buffer } = {},
): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = o.prefix?.length ?? 0;
  if (o.prefix) parts.push(o.prefix);
  for (const e of entries) {
    const layout: Z.EntryLayout = {
      name: Buffer.from(e.name, 'utf8'),
      method: e.method,
      crc32: e.crc32,
      compressedSize: e.data.length,
      size: e.size,
      localHeaderOffset: offset,
      padding: e.padding ?? 0,
    };
    const local = Z.encodeLocalHeader(layout, dosTime);
    e.patchLocal?.(local);
    const c = Z.encodeCentralHeader(layout, dosTime);
    e.patchCentral?.(c);
    central.push(c);
    parts.push(local, e.data);
    offset += local.length + e.data.length;
    if (e.gapAfter) {
      parts.push(e.gapAfter);
      offset += e.gapAfter.length;
    }
  }
  const cd = Buffer.concat(central);
  parts.push(cd, Z.encodeEnd(entries.length, offset, cd.length));
  if (o.trailing) parts.push(o.trailing);
  return Buffer.concat(parts);
}
