/** Alignment corner cases of the layout (FORMAT.md §2.5): padding that would be 1–3 bytes. */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packFolder } from '../pack/pack.js';
import { PackageReader } from '../pack/reader.js';
import { ALIGNMENT } from '../spec/limits.js';
import { baseManifest, tempDir, writeSource } from './helpers/source.js';

const LOCAL = 30;

async function packAndCheck(files: Record<string, Buffer | string>, manifest: Record<string, unknown>) {
  const out = join(tempDir(), 'p.xpkg');
  await packFolder(writeSource(files, manifest), out);
  const r = await PackageReader.open(out);
  try {
    await r.verifyIntegrity();
    for (const v of r.manifest.models.flatMap((m) => m.variants)) {
      for (const f of v.files) {
        const e = r.entry(f)!;
        if (e.size > 0) expect(e.dataOffset % ALIGNMENT).toBe(0);
      }
    }
    return r.entries;
  } finally {
    await r.close();
  }
}

describe('layout when alignment needs 1–3 bytes of padding', () => {
  it('a model that would need 1–3 bytes of padding gets a 4-byte shim on the entry before it', async () => {
    const name = 'models/net.onnx';
    // Probe with a 5-digit labels size so the manifest's own length stays fixed across the sweep.
    const probe = await packAndCheck({ 'assets/labels.txt': 'x'.repeat(10_000) }, baseManifest());
    const h0 = probe.find((e) => e.name === name)!.localHeaderOffset;
    // Each extra byte of the labels file (sorted before the model) moves the model's header one byte later.
    const k0 = (((ALIGNMENT - 3 - (h0 + LOCAL + name.length)) % ALIGNMENT) + ALIGNMENT) % ALIGNMENT;
    const shims: boolean[] = [];
    for (let j = -2; j <= 4; j++) {
      const entries = await packAndCheck({ 'assets/labels.txt': 'x'.repeat(10_000 + k0 + j) }, baseManifest());
      const before = entries[entries.findIndex((e) => e.name === name) - 1];
      // A shim shows as 4 bytes between the end of the entry before and the end of its usual header.
      shims.push(before.dataOffset - before.localHeaderOffset - LOCAL - Buffer.byteLength(before.name) === 4);
    }
    expect(shims).toEqual([false, false, true, true, true, false, false]);
  });

  it('two adjacent models where the second would need 1–3 bytes are reordered, still aligned', async () => {
    const nameB = 'models/b.onnx';
    for (const r of [1, 2, 3]) {
      // Model a's data starts aligned; b's header follows a's data: (−(sizeA + 30 + |nameB|)) mod 64K = r.
      const sizeA = ALIGNMENT * 2 - r - LOCAL - nameB.length;
      const manifest = baseManifest({
        models: [
          {
            id: 'net',
            variants: [{ id: 'v1', runtime: 'onnxruntime', precision: 'fp32', files: ['models/a.onnx', nameB] }],
          },
        ],
      });
      const entries = await packAndCheck(
        { 'models/a.onnx': Buffer.alloc(sizeA, 1), [nameB]: Buffer.alloc(1000, 2) },
        manifest,
      );
      expect(entries.map((e) => e.name).sort()).toEqual(
        ['assets/labels.txt', 'models/a.onnx', nameB, 'xpkg/manifest.json'].sort(),
      );
    }
  });
});
