/**
 * Runner hardening (issue 10): an ONNX model with external data runs from verified bytes only (never
 * from files in the working directory, never from a location outside the variant's own files), and
 * concurrent runs on one Runner each get their own complete timings.
 */
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeModel } from '../fixtures/onnx-tiny.js';
import { packFolder } from '../pack/pack.js';
import { PackageReader } from '../pack/reader.js';
import { filesFromMap, writePrivateFolder } from '../runner/backends/model-files.js';
import { externalDataRefs } from '../runner/backends/onnx-external.js';
import { OnnxruntimeBackend } from '../runner/backends/onnxruntime.js';
import { Runner } from '../runner/runner.js';
import type { Variant } from '../spec/schema.js';
import { codeOf } from './helpers/errors.js';
import { externalAddModel } from './helpers/external-model.js';
import { tempDir } from './helpers/source.js';

const WEIGHTS = new Float32Array([10, 20, 30, 40]);
const PLANTED = new Float32Array([1000, 2000, 3000, 4000]);
const bytesOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

const variant = (files: string[], id = 'cpu-ext'): Variant =>
  ({ id, runtime: 'onnxruntime', precision: 'fp32', files }) as Variant;
const x = new Float32Array([1, 2, 3, 4]);
const expected = [11, 22, 33, 44];

/** A package whose model `net` keeps its weights in `models/weights.bin` (+ an unreferenced file). */
async function externalPackage(
  extraVariants: { id: string; files: string[] }[] = [],
  extraFiles: Record<string, Buffer> = {},
): Promise<string> {
  const dir = tempDir('xpkg-ext-src-');
  const files: Record<string, Buffer> = {
    'models/net.onnx': externalAddModel('weights.bin'),
    'models/weights.bin': bytesOf(WEIGHTS),
    'models/notes.bin': Buffer.from('not used by the model'),
    ...extraFiles,
  };
  for (const [p, b] of Object.entries(files)) {
    mkdirSync(join(dir, p, '..'), { recursive: true });
    writeFileSync(join(dir, p), b);
  }
  const manifest = {
    name: 'external-data',
    version: '1.0.0',
    sequence: 1,
    license: 'MIT',
    task: 'tensor',
    inputs: [{ name: 'x', type: 'tensor', dtype: 'float32', shape: [4] }],
    outputs: [{ name: 'y', type: 'tensor', dtype: 'float32', shape: [4] }],
    models: [
      {
        id: 'net',
        variants: [
          ...extraVariants.map((v) => ({ ...v, runtime: 'onnxruntime', precision: 'fp32' })),
          {
            id: 'cpu-ext',
            runtime: 'onnxruntime',
            precision: 'fp32',
            files: ['models/net.onnx', 'models/weights.bin', 'models/notes.bin'],
          },
        ],
      },
    ],
    pipeline: { steps: [{ op: 'infer', model: 'net', params: { inputs: 'x', outputs: 'y' } }] },
  };
  writeFileSync(join(dir, 'xpkg.json'), JSON.stringify(manifest));
  const out = join(tempDir('xpkg-ext-pkg-'), 'ext.xpkg');
  await packFolder(dir, out);
  return out;
}

const ours = () => new Set(readdirSync(tmpdir()).filter((n) => n.startsWith('xpkg-model-')));

let backend: OnnxruntimeBackend;
beforeAll(async () => {
  backend = new OnnxruntimeBackend();
  expect((await backend.init()).ok).toBe(true);
});

describe('external data', () => {
  it('the scan finds every external tensor, wherever onnx.proto allows one', () => {
    expect(externalDataRefs(externalAddModel('weights.bin'))).toEqual([{ tensor: 'W', location: 'weights.bin' }]);
    expect(
      externalDataRefs(
        encodeModel({
          name: 'g',
          nodes: [{ op: 'Identity', inputs: ['X'], outputs: ['Y'] }],
          inputs: [{ name: 'X', type: 'float32', shape: [1] }],
          outputs: [{ name: 'Y', type: 'float32', shape: [1] }],
        }),
      ),
    ).toEqual([]);
  });

  it('a model with external data runs from the variant’s verified files, and leaves no folder behind', async () => {
    const files = new Map([
      ['m/net.onnx', externalAddModel('weights.bin')],
      ['m/weights.bin', bytesOf(WEIGHTS)],
      ['m/unused.bin', Buffer.from('x')],
    ]);
    const before = ours();
    await using s = await backend.load(variant(['m/net.onnx', 'm/weights.bin', 'm/unused.bin']), files, { threads: 1 });
    expect([...ours()].filter((n) => !before.has(n))).toEqual([]);
    const y = await s.run({ X: { type: 'float32', dims: [4], data: x } });
    expect(Array.from(y.Y.data as Float32Array)).toEqual(expected);
  });

  it('the private folder is 0700 with read-only files, holds just what it is given, and is removed', async () => {
    const folder = await writePrivateFolder(filesFromMap(new Map([['m/weights.bin', bytesOf(WEIGHTS)]])), [
      { path: 'm/net.onnx', bytes: Buffer.from('entry') },
      { path: 'm/weights.bin' },
    ]);
    try {
      expect(statSync(folder.dir).mode & 0o777).toBe(0o700);
      expect(statSync(join(folder.dir, 'm')).mode & 0o777).toBe(0o700);
      expect(readdirSync(join(folder.dir, 'm')).sort()).toEqual(['net.onnx', 'weights.bin']);
      expect(statSync(folder.path('m/weights.bin')).mode & 0o777).toBe(0o400);
      expect(readFileSync(folder.path('m/weights.bin')).equals(bytesOf(WEIGHTS))).toBe(true);
    } finally {
      await folder.remove();
    }
    expect(existsSync(folder.dir)).toBe(false);
  });

  it('external weights changed after open are refused while streamed (E_DIGEST_MISMATCH), leaving no folder', async () => {
    const pkg = await externalPackage();
    await using runner = await Runner.open(pkg, { allowUnsigned: true, stateDir: tempDir('xpkg-state-'), threads: 1 });
    const reader = await PackageReader.open(pkg);
    const at = reader.entry('models/weights.bin')!.dataOffset;
    await reader.close();
    const fd = openSync(pkg, 'r+');
    writeSync(fd, bytesOf(PLANTED), 0, 16, at);
    closeSync(fd);
    const before = ours();
    expect(await codeOf(runner.run({ x: { type: 'float32', dims: [4], data: x } }))).toBe('E_DIGEST_MISMATCH');
    expect([...ours()].filter((n) => !before.has(n))).toEqual([]);
  });

  it('a location outside the variant’s files is refused before onnxruntime sees the model', async () => {
    const load = (location: string, files: string[]) =>
      codeOf(
        backend
          .load(
            variant(['m/net.onnx', ...files]),
            new Map([
              ['m/net.onnx', externalAddModel(location)],
              ...files.map((f) => [f, bytesOf(WEIGHTS)] as [string, Buffer]),
            ]),
            {},
          )
          .then((s) => s.release()),
      );
    expect(await load('../weights.bin', ['weights.bin'])).toBe('E_RUN_MODEL_EXTERNAL');
    expect(await load('sub/../weights.bin', ['m/weights.bin'])).toBe('E_RUN_MODEL_EXTERNAL');
    expect(await load('/etc/passwd', ['m/weights.bin'])).toBe('E_RUN_MODEL_EXTERNAL');
    expect(await load('other.bin', ['m/weights.bin'])).toBe('E_RUN_MODEL_EXTERNAL');
    expect(await load('weights.bin', [])).toBe('E_RUN_MODEL_EXTERNAL');
    expect(await load('net.onnx', ['m/weights.bin'])).toBe('E_RUN_MODEL_EXTERNAL');
    expect(await load('*/_ORT_MEM_ADDR_/*', ['m/weights.bin'])).toBe('E_RUN_MODEL_EXTERNAL');
    expect(await load('weights.bin', ['m/weights.bin'])).toBe('OK');
  });

  it('a weights file planted in the working directory is not used (graph optimisation off)', async () => {
    const pkg = await externalPackage();
    const cwd = tempDir('xpkg-ext-cwd-');
    writeFileSync(join(cwd, 'weights.bin'), bytesOf(PLANTED));
    mkdirSync(join(cwd, 'models'));
    writeFileSync(join(cwd, 'models', 'weights.bin'), bytesOf(PLANTED));
    const back = process.cwd();
    process.chdir(cwd);
    try {
      await using runner = await Runner.open(pkg, {
        allowUnsigned: true,
        stateDir: tempDir('xpkg-state-'),
        graphOptimization: 'disabled',
        threads: 1,
      });
      const r = await runner.run({ x: { type: 'float32', dims: [4], data: x } });
      expect(r.variant).toEqual({ net: 'cpu-ext' });
      expect(Array.from((r.outputs.y as { data: Float32Array }).data)).toEqual(expected);
    } finally {
      process.chdir(back);
    }
  });

  it('a package whose model names an undeclared file stops the run with E_RUN_MODEL_EXTERNAL (no fallback)', async () => {
    const pkg = await externalPackage([{ id: 'cpu-bad', files: ['models/bad.onnx', 'models/weights.bin'] }], {
      'models/bad.onnx': externalAddModel('../weights.bin'),
    });
    await using runner = await Runner.open(pkg, { allowUnsigned: true, stateDir: tempDir('xpkg-state-'), threads: 1 });
    expect(await codeOf(runner.run({ x: { type: 'float32', dims: [4], data: x } }))).toBe('E_RUN_MODEL_EXTERNAL');
  });
});

describe('concurrent runs', () => {
  it('several overlapping runs on one Runner each get complete timings and their own outputs', async () => {
    await using runner = await Runner.open('fixtures/dist/multi-variant.xpkg', {
      trust: ['fixtures/keys/test.pub'],
      stateDir: tempDir('xpkg-state-'),
      variant: 'cpu-fp32',
      threads: 1,
    });
    const inputs = Array.from({ length: 6 }, (_, i) => new Float32Array([i, i + 0.5, 100 * i]));
    const results = await Promise.all(inputs.map((data) => runner.run({ x: { type: 'float32', dims: [3], data } })));
    results.forEach((r, i) => {
      expect(Array.from((r.outputs.y as { data: Float32Array }).data)).toEqual(Array.from(inputs[i], (v) => v + 1));
      expect(Object.keys(r.timings)).toEqual(expect.arrayContaining(['infer:add-one', 'total']));
      expect(r.timings['infer:add-one']).toBeGreaterThan(0);
      expect(r.timings['infer:add-one']).toBeLessThanOrEqual(r.timings.total);
    });
  });
});
