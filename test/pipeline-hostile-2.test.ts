/**
 * Hostile packages against the pipeline, continued (pipeline-hostile.test.ts): a model's variants
 * that disagree on what they take.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { codeOf } from './helpers/errors.js';
import { cleanup, manifest, oneOp, openTrusted, signedPackage } from './helpers/hostile-pkg.js';

afterAll(cleanup);

const identity = (type: 'float32' | 'int32') =>
  oneOp('Identity', { name: 'X', type, shape: ['N'] }, { name: 'Y', type, shape: ['N'] });
const variant = (id: string, file: string) => ({ id, runtime: 'onnxruntime', precision: 'fp32', files: [file] });

describe('infer: feeds the model does not take', () => {
  it('fail the step before the model runs: one bad request does not move the model to a variant that takes it', async () => {
    // variant a takes float32, b int32: an int32 request that failed on a fell back to b for good
    const m = manifest({
      inputs: [{ name: 'x', type: 'tensor' }],
      outputs: [{ name: 'y', type: 'tensor' }],
      steps: [{ op: 'infer', model: 'net', params: { inputs: 'x', outputs: 'y' } }],
      models: [{ id: 'net', variants: [variant('a', 'models/a.onnx'), variant('b', 'models/b.onnx')] }],
    });
    const files = { 'models/a.onnx': identity('float32'), 'models/b.onnx': identity('int32') };
    await using r = await openTrusted(await signedPackage(m, files));
    const good = { x: { type: 'float32', dims: [2], data: new Float32Array([1, 2]) } };
    expect(await codeOf(r.run(good))).toBe('OK');
    expect(await codeOf(r.run({ x: { type: 'int32', dims: [2], data: new Int32Array([1, 2]) } }))).toBe(
      'E_RUN_PIPELINE',
    );
    expect(await codeOf(r.run(good))).toBe('OK');
    expect(await codeOf(r.run({ x: { type: 'float32', dims: [1, 2], data: new Float32Array([1, 2]) } }))).toBe(
      'E_RUN_PIPELINE',
    );
    expect(await codeOf(r.run(good))).toBe('OK');
  });
});
