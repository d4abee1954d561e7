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

/** Writes a source folder: xpkg.json plus files (path → content). */
export function writeSource(
  files: Record<string, string | Buffer> = {},
  manifest: Record<string, unknown> = baseManifest(),
  dir = tempDir(),
): string {
  const all: Record<string, string | Buffer> = {
    'models/net.onnx': Buffer.alloc(5000, 7),
    'assets/labels.txt': 'cat\ndog\n',
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
