/** Small package source folders for tests. */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export function tempDir(prefix = 'xpkg-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function baseManifest(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'demo',
    version: '1.0.0',
    sequence: 1,
    license: 'MIT',
    task: 'image-classification',
    inputs: [{ name: 'image', type: 'image' }],
    outputs: [{ name: 'labels', type: 'classification' }],
    models: [
      {
        id: 'net',
        variants: [{ id: 'cpu-fp32', runtime: 'onnxruntime', precision: 'fp32', files: ['models/net.onnx'] }],
      },
    ],
    pipeline: { steps: [{ op: 'infer', model: 'net' }] },
    assets: [{ id: 'labels', path: 'assets/labels.txt', kind: 'labels' }],
    ...extra,
  };
}

/**
 * A package with one model, one tensor in and one out (`infer` alone): for tests and benches that
 * need a model's bytes in a package (a big one to read and verify, a real one to time the runner
 * around), not a pipeline. Its model file is `models/<file>`.
 */
export function oneModelManifest(
  o: { name?: string; id?: string; file?: string; license?: string; task?: string } = {},
): Record<string, unknown> {
  const { name = 'big-model', id = 'net', file = 'big.onnx', license = 'MIT', task = 'other' } = o;
  return baseManifest({
    name,
    license,
    task,
    inputs: [{ name: 'x', type: 'tensor', dtype: 'float32' }],
    outputs: [{ name: 'y', type: 'tensor' }],
    models: [{ id, variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: [`models/${file}`] }] }],
    pipeline: { steps: [{ op: 'infer', model: id, params: { inputs: 'x', outputs: 'y' } }] },
    assets: undefined,
  });
}

/**
 * Writes a source folder: xpkg.json plus files (path → content), and unless `defaults` is false
 * the files baseManifest() names.
 */
export function writeSource(
  files: Record<string, string | Uint8Array> = {},
  manifest: Record<string, unknown> = baseManifest(),
  dir = tempDir(),
  defaults = true,
): string {
  const all: Record<string, string | Uint8Array> = {
    ...(defaults ? { 'models/net.onnx': Buffer.alloc(5000, 7), 'assets/labels.txt': 'cat\ndog\n' } : {}),
    ...files,
  };
  for (const [p, c] of Object.entries(all)) {
    mkdirSync(dirname(join(dir, p)), { recursive: true });
    writeFileSync(join(dir, p), c);
  }
  writeFileSync(join(dir, 'xpkg.json'), JSON.stringify(manifest, null, 2));
  return dir;
}

/**
 * A copy of the package at `path`, written to `out`, with one byte of the stored file `entry` flipped
 * (the middle one): intact archive and signatures, one file's digest wrong.
 */
export async function flipByteIn(path: string, entry: string, out: string): Promise<void> {
  const { readFile, writeFile } = await import('node:fs/promises');
  const { PackageReader } = await import('../../pack/reader.js');
  const bytes = await readFile(path);
  await using r = await PackageReader.open(path);
  const e = r.entry(entry);
  if (!e) throw new Error(`${path} has no ${entry}`);
  bytes[e.dataOffset + (e.size >> 1)] ^= 0x01;
  await writeFile(out, bytes);
}
