/**
 * The source folder of a package whose pipeline adds one to a tensor `x` (an ONNX model) and then
 * hands the result `y` to a package script's `post` hook, whose `z` is the output: what the tests of
 * script limits and hostile scripts run through the runner and the daemon.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { addOneModel } from '../../fixtures/onnx-tiny.js';
import { tempDir } from './source.js';

export interface ScriptPackageOptions {
  name: string;
  /** scripts/post.js: exports `post(input)`, input.y a handle; returns `{ z }`. */
  post: string;
  /** The script's policy (memoryMiB, timeMs, stackKiB). */
  policy: Record<string, number>;
  /** The input's declaration beyond its name and type (dtype, shape). */
  input?: Record<string, unknown>;
}

/** Writes the folder; pack it with packFolder. */
export function scriptPackageSource(o: ScriptPackageOptions): string {
  const src = tempDir('xpkg-script-src-');
  mkdirSync(join(src, 'models'));
  mkdirSync(join(src, 'scripts'));
  writeFileSync(join(src, 'models', 'add.onnx'), addOneModel());
  writeFileSync(join(src, 'scripts', 'post.js'), o.post);
  writeFileSync(
    join(src, 'xpkg.json'),
    JSON.stringify({
      name: o.name,
      version: '1.0.0',
      sequence: 1,
      license: 'MIT',
      task: 'test',
      inputs: [{ name: 'x', type: 'tensor', ...o.input }],
      outputs: [{ name: 'z', type: 'tensor' }],
      models: [
        { id: 'add', variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['models/add.onnx'] }] },
      ],
      pipeline: {
        scripts: [{ path: 'scripts/post.js', hooks: ['post'], policy: o.policy }],
        steps: [
          { op: 'infer', model: 'add', params: { inputs: 'x', outputs: 'y' } },
          {
            op: 'script',
            script: 'scripts/post.js',
            hook: 'post',
            params: { inputs: { y: 'y' }, outputs: { z: 'z' }, as: { z: 'tensor' } },
          },
        ],
      },
    }),
  );
  return src;
}
