/**
 * Hostile packages for the pipeline tests: a manifest and its files packed, signed with the fixture
 * key (fixtures/keys/test.key) and opened through the normal verification path (Runner.open).
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { encodeModel, type GraphSpec } from '../../fixtures/onnx-tiny.js';
import { packFolder } from '../../pack/pack.js';
import { Runner, type RunnerOptions } from '../../runner/runner.js';
import { sign } from '../../signing/sign.js';
import { tempDir, writeSource } from './source.js';

const made: string[] = [];

/** A one-node ONNX model (`X` in, `Y` out) of `op`. */
export function oneOp(
  op: string,
  x: GraphSpec['inputs'][0],
  y: GraphSpec['outputs'][0],
  intAttrs?: Record<string, number>,
) {
  return encodeModel({
    name: op.toLowerCase(),
    nodes: [{ op, inputs: [x.name], outputs: [y.name], ...(intAttrs ? { intAttrs } : {}) }],
    inputs: [x],
    outputs: [y],
  });
}

/** A manifest with one model `net` (file models/net.onnx) and the given I/O and steps. */
export function manifest(o: {
  inputs: unknown[];
  outputs: unknown[];
  steps: unknown[];
  assets?: unknown[];
  models?: unknown[];
}): Record<string, unknown> {
  return {
    name: 'hostile',
    version: '1.0.0',
    sequence: 1,
    license: 'MIT',
    task: 'other',
    inputs: o.inputs,
    outputs: o.outputs,
    models: o.models ?? [
      { id: 'net', variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['models/net.onnx'] }] },
    ],
    pipeline: { steps: o.steps },
    ...(o.assets ? { assets: o.assets } : {}),
  };
}

/** Packs and signs `m` with `files`; returns the package's path (removed by cleanup()). */
export async function signedPackage(m: Record<string, unknown>, files: Record<string, string | Uint8Array>) {
  const src = writeSource(files, m, tempDir('xpkg-hostile-src-'), false);
  const dir = tempDir('xpkg-hostile-pkg-');
  made.push(src, dir);
  const out = join(dir, 'p.xpkg');
  await packFolder(src, out, { sourceDateEpoch: '' });
  await sign(out, { key: 'fixtures/keys/test.key', out, passphrase: '', force: true });
  return out;
}

/** Opens a package trusting the fixture key only. */
export function openTrusted(path: string, options: RunnerOptions = {}): Promise<Runner> {
  const state = tempDir('xpkg-hostile-state-');
  made.push(state);
  return Runner.open(path, { trust: ['fixtures/keys/test.pub'], stateDir: state, threads: 1, ...options });
}

/** Removes every folder this module made. */
export function cleanup(): void {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
}
