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
