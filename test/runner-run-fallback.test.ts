/**
 * A model whose session fails *while running* (it loaded fine) falls back to the next candidate,
 * records why, and later runs stay on the fallback; feeds that fail everywhere switch nothing. The
 * failure is onnxruntime's own: a model that loads and then cannot reshape its input at run time.
 * Also the bytes the runner counts crossing to and from models on an accelerator.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeModel } from '../fixtures/onnx-tiny.js';
import { packFolder } from '../pack/pack.js';
import { Runner } from '../runner/runner.js';
import { codeOf } from './helpers/errors.js';
import { tempDir } from './helpers/source.js';
import { SpyBackend } from './helpers/spy-backend.js';

const state = () => tempDir('xpkg-state-');

/** Y = X + 1 over float32 [N]. */
const addOne = () =>
  encodeModel({
    name: 'add-one',
    nodes: [{ op: 'Add', inputs: ['X', 'one'], outputs: ['Y'] }],
    inputs: [{ name: 'X', type: 'float32', shape: ['N'] }],
    outputs: [{ name: 'Y', type: 'float32', shape: ['N'] }],
    initializers: [{ name: 'one', type: 'float32', dims: [1], raw: new Uint8Array(new Float32Array([1]).buffer) }],
  });

/**
 * Loads, then fails on every run: X ([N]) reshaped to [N, 2], which holds twice its elements. The
 * computed shape is also an output: without it onnxruntime's graph optimisation rewrote the chain.
 */
const failsAtRun = () =>
  encodeModel({
    name: 'fails-at-run',
    nodes: [
      { op: 'Shape', inputs: ['X'], outputs: ['s'] },
      { op: 'Concat', inputs: ['s', 'two'], outputs: ['shape'], intAttrs: { axis: 0 } },
      { op: 'Reshape', inputs: ['X', 'shape'], outputs: ['Y'] },
    ],
    inputs: [{ name: 'X', type: 'float32', shape: ['N'] }],
    outputs: [
      { name: 'Y', type: 'float32', shape: ['A', 'B'] },
      { name: 'shape', type: 'int64', shape: [2] },
    ],
    initializers: [{ name: 'two', type: 'int64', dims: [1], raw: new Uint8Array(new BigInt64Array([2n]).buffer) }],
  });

/** One model with the given variants (id → model bytes), tried in declared order; a tensor in, a tensor out. */
async function variantsPackage(
  variants: Record<string, Buffer>,
  maxBatch?: number,
  steps: Record<string, Record<string, unknown>> = {},
): Promise<string> {
  const src = tempDir('xpkg-runfail-src-');
  mkdirSync(join(src, 'models'));
  for (const [id, bytes] of Object.entries(variants)) writeFileSync(join(src, 'models', `${id}.onnx`), bytes);
  writeFileSync(
    join(src, 'xpkg.json'),
    JSON.stringify({
      name: 'runfail',
      version: '1.0.0',
      sequence: 1,
      license: 'MIT',
      task: 'tensor',
      inputs: [{ name: 'x', type: 'tensor', dtype: 'float32', shape: ['N'] }],
      outputs: [{ name: 'y', type: 'tensor' }],
      models: [
        {
          id: 'm',
          variants: Object.keys(variants).map((id) => ({
            id,
            runtime: 'onnxruntime',
            precision: 'fp32',
            files: [`models/${id}.onnx`],
            requires: { executionProviders: ['cpu'] },
            ...(steps[id] ? { steps: steps[id] } : {}),
          })),
        },
      ],
      pipeline: {
        steps: [
          {
            op: 'infer',
            id: 'inf',
            model: 'm',
            params: { inputs: 'x', outputs: 'y', ...(maxBatch ? { maxBatch } : {}) },
          },
        ],
      },
    }),
  );
  const pkg = join(tempDir(), 'runfail.xpkg');
  await packFolder(src, pkg);
  return pkg;
}

const x = (...v: number[]) => ({ x: { type: 'float32' as const, dims: [v.length], data: Float32Array.from(v) } });
const values = (r: { outputs: Record<string, unknown> }) => [...(r.outputs.y as { data: Float32Array }).data];

describe('a session that fails while running', () => {
  it('falls back to the next variant for this run and every later one, with the reason recorded', async () => {
    const pkg = await variantsPackage({ broken: failsAtRun(), good: addOne() });
    const spy = new SpyBackend();
    await using runner = await Runner.open(pkg, { allowUnsigned: true, stateDir: state(), registry: spy.registry() });
    const first = await runner.run(x(1, 2, 3));
    expect(values(first)).toEqual([2, 3, 4]);
    expect(first.variant).toEqual({ m: 'good' });
    expect(first.actualProvider).toEqual({ m: 'cpu' });
    expect(first.fallbacks.m).toHaveLength(1);
    expect(first.fallbacks.m[0]).toMatchObject({
      variant: 'broken',
      provider: 'cpu',
      code: 'E_RUN_BACKEND',
      at: 'run',
    });
    // onnxruntime's own words about the reshape
    expect(first.fallbacks.m[0].reason).toMatch(/reshape/i);
    const broken = runner.selection.models[0].variants.find((v) => v.variant.id === 'broken')!;
    expect(broken.status).toBe('rejected');
    expect(broken.reasons.map((r) => r.code)).toEqual(['run-failed']);
    expect(runner.selection.models[0].chosen?.variant.id).toBe('good');

    const second = await runner.run(x(5));
    expect(values(second)).toEqual([6]);
    expect(second.fallbacks).toEqual(first.fallbacks);
    // the broken session ran once; later runs go straight to the fallback
    expect(spy.runs()).toEqual(['broken 3', 'good 3', 'good 1']);
    expect(spy.events.filter((e) => e.kind === 'load').map((e) => e.variant)).toEqual(['broken', 'good']);
  });

  it('a fallback to a variant with other step patches runs the whole pipeline again, with its own steps', async () => {
    // `broken` splits the batch (its patch); `good` runs the declared step: the feeds differ
    const pkg = await variantsPackage({ broken: failsAtRun(), good: addOne() }, undefined, {
      broken: { inf: { params: { maxBatch: 1 } } },
    });
    const spy = new SpyBackend();
    await using runner = await Runner.open(pkg, { allowUnsigned: true, stateDir: state(), registry: spy.registry() });
    const r = await runner.run(x(1, 2, 3));
    expect(values(r)).toEqual([2, 3, 4]);
    expect(r.variant).toEqual({ m: 'good' });
    expect(r.fallbacks.m[0]).toMatchObject({ variant: 'broken', at: 'run' });
    // not retried in place with the patched feeds (that would be 'good 1' three times)
    expect(spy.runs()).toEqual(['broken 1', 'good 3']);
  });

  it('overlapping runs that fail together switch once', async () => {
    const pkg = await variantsPackage({ broken: failsAtRun(), good: addOne() });
    const spy = new SpyBackend();
    await using runner = await Runner.open(pkg, { allowUnsigned: true, stateDir: state(), registry: spy.registry() });
    const rs = await Promise.all([runner.run(x(1)), runner.run(x(2, 2)), runner.run(x(3, 3, 3))]);
    expect(rs.map(values)).toEqual([[2], [3, 3], [4, 4, 4]]);
    expect(spy.events.filter((e) => e.kind === 'load').map((e) => e.variant)).toEqual(['broken', 'good']);
    expect(rs[2].fallbacks.m).toHaveLength(1);
  });

  it('feeds that fail on every candidate switch nothing: the error is thrown and the variant stays', async () => {
    const pkg = await variantsPackage({ first: failsAtRun(), second: failsAtRun() });
    const spy = new SpyBackend();
    await using runner = await Runner.open(pkg, { allowUnsigned: true, stateDir: state(), registry: spy.registry() });
    expect(await codeOf(runner.run(x(1, 2)))).toBe('E_RUN_PIPELINE');
    expect(runner.selection.models[0].chosen?.variant.id).toBe('first');
    expect(spy.runs()).toEqual(['first 2', 'second 2']);
    // the next run starts from the same variant again
    expect(await codeOf(runner.run(x(1)))).toBe('E_RUN_PIPELINE');
    expect(spy.runs().slice(2)).toEqual(['first 1', 'second 1']);
  });

  it('with --variant forcing the failing variant there is nothing to fall back to', async () => {
    const pkg = await variantsPackage({ broken: failsAtRun(), good: addOne() });
    await using runner = await Runner.open(pkg, { allowUnsigned: true, stateDir: state(), variant: 'broken' });
    expect(await codeOf(runner.run(x(1)))).toBe('E_RUN_PIPELINE');
  });
});

describe('bytes crossing to an accelerator', () => {
  it('are the input and output tensors of models on an accelerator, summed over batch chunks; none on the CPU', async () => {
    const pkg = await variantsPackage({ good: addOne() }, 2);
    const accel = new SpyBackend('accel');
    await using runner = await Runner.open(pkg, {
      allowUnsigned: true,
      stateDir: state(),
      registry: accel.registry(),
      prewarm: 'off',
    });
    const r = await runner.run(x(1, 2, 3, 4, 5));
    expect(values(r)).toEqual([2, 3, 4, 5, 6]);
    // three calls of at most 2 items: 5 floats in, 5 floats out
    expect(accel.runs()).toEqual(['good 2', 'good 2', 'good 1']);
    expect(r.copies).toEqual({
      hostToDevice: 20,
      deviceToHost: 20,
      models: { m: { hostToDevice: 20, deviceToHost: 20 } },
    });
    // per run, not accumulated
    expect((await runner.run(x(1))).copies.deviceToHost).toBe(4);

    await using cpu = await Runner.open(pkg, { allowUnsigned: true, stateDir: state() });
    expect((await cpu.run(x(1, 2, 3))).copies).toEqual({ hostToDevice: 0, deviceToHost: 0, models: {} });
  });
});
