/**
 * Packages for the browser sweep (test/browser-sweep.test.ts), written into one folder served as
 * /packages/: the shipped ones copied; `model-flipped` with one byte flipped in the model a browser
 * runs and `gpu-flipped` in a GPU variant it never reads (both still signed and well formed);
 * `truncated`, cut in the middle of that model (a download stopped short); and signed script
 * packages whose script spins, grows or recurses past its policy (`script-time`, `-memory`, `-stack`).
 */
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packFolder } from '../../pack/pack.js';
import { PackageReader } from '../../pack/reader.js';
import { sign } from '../../signing/sign.js';
import { scriptPackageSource } from './script-pkg.js';

const ROOT = join(import.meta.dirname, '..', '..');
export const FIXTURES = join(ROOT, 'fixtures', 'dist');
export const SHIPPED = ['detector', 'segmenter', 'detector-split', 'multi-variant', 'ocr-script', 'paddleocr-v4'];

const SCRIPTS = {
  time: 'export function post(i) { for (;;) {} }',
  memory: 'export function post(i) { const a = []; for (;;) a.push(new Array(1e5).fill(1)); }',
  stack: 'function f(n) { return f(n + 1) + 1; } export function post(i) { return f(0); }',
  ok: 'export function post(i) { return { z: i.y }; }',
};

/** A copy of the detector with one byte flipped in the middle of `file`. */
async function flipped(dir: string, name: string, file: string, cut = false): Promise<void> {
  const path = join(FIXTURES, 'detector.xpkg');
  const bytes = await readFile(path);
  await using r = await PackageReader.open(path);
  const e = r.entry(file)!;
  const at = e.dataOffset + (e.size >> 1);
  if (cut) return writeFile(join(dir, `${name}.xpkg`), bytes.subarray(0, at));
  bytes[at] ^= 0x01;
  await writeFile(join(dir, `${name}.xpkg`), bytes);
}

export async function sweepPackages(dir: string): Promise<void> {
  for (const n of SHIPPED) await copyFile(join(FIXTURES, `${n}.xpkg`), join(dir, `${n}.xpkg`));
  await flipped(dir, 'model-flipped', 'model.onnx');
  await flipped(dir, 'gpu-flipped', 'model-cuda-fp16.onnx');
  await flipped(dir, 'truncated', 'model.onnx', true);
  for (const [limit, post] of Object.entries(SCRIPTS)) {
    const src = scriptPackageSource({ name: `script-${limit}`, post, policy: { timeMs: 500, memoryMiB: 16 } });
    const out = join(dir, `script-${limit}.xpkg`);
    await packFolder(src, out, { sourceDateEpoch: '' });
    await sign(out, { key: join(ROOT, 'fixtures', 'keys', 'test.key'), out, passphrase: '', force: true });
  }
}
