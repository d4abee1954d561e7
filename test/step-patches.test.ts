/**
 * Variant step patches (FORMAT.md §4.1): the manifest rules that keep them composable, RFC 7396
 * merge semantics, and a real package whose two variants run two different pipelines through the
 * Runner (the patch of the variant actually chosen applies; a patch that breaks the pipeline is
 * refused when the package is opened).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeModel } from '../fixtures/onnx-tiny.js';
import { packFolder } from '../pack/pack.js';
import { mergePatch, patchSteps } from '../runner/pipeline/patch.js';
import { Runner } from '../runner/runner.js';
import { parseStrictJson } from '../spec/canonical.js';
import { validateManifestSource } from '../spec/manifest.js';
import type { Step } from '../spec/schema.js';
import { codeOf } from './helpers/errors.js';
import { tempDir, writeSource } from './helpers/source.js';

/** Y = X + 1 and Z = X + 2, float32 [N]. */
const twoOutputs = () =>
  encodeModel({
    name: 'plus',
    nodes: [
      { op: 'Add', inputs: ['X', 'one'], outputs: ['Y'] },
      { op: 'Add', inputs: ['Y', 'one'], outputs: ['Z'] },
    ],
    inputs: [{ name: 'X', type: 'float32', shape: ['N'] }],
    outputs: [
      { name: 'Y', type: 'float32', shape: ['N'] },
      { name: 'Z', type: 'float32', shape: ['N'] },
    ],
    initializers: [{ name: 'one', type: 'float32', dims: [], raw: new Uint8Array(Float32Array.of(1).buffer) }],
  });

function manifest(patch: Record<string, unknown>, steps?: Step[]): Record<string, unknown> {
  return {
    name: 'patched',
    version: '1.0.0',
    sequence: 1,
    license: 'MIT',
    task: 'tensor',
    inputs: [{ name: 'x', type: 'tensor' }],
    outputs: [{ name: 'y', type: 'tensor' }],
    models: [
      {
        id: 'plus',
        variants: [
          { id: 'plain', runtime: 'onnxruntime', precision: 'fp32', files: ['plus.onnx'] },
          { id: 'patched', runtime: 'onnxruntime', precision: 'fp32', files: ['plus.onnx'], steps: patch },
        ],
      },
    ],
    pipeline: { steps: steps ?? [{ op: 'infer', id: 'run', model: 'plus', params: { inputs: 'x', outputs: 'y' } }] },
  };
}

/** Each problem as its error code and JSON pointer (the messages are for people). */
const problems = (m: unknown) => {
  try {
    validateManifestSource(m);
    return [];
  } catch (e) {
    return (e as { code: string; detail: { problems: { path: string; message: string }[] } }).detail.problems.map(
      (p) => `${(e as { code: string }).code} ${p.path}`,
    );
  }
};

describe('manifest rules', () => {
  it('a patch names one step by a unique id', () => {
    expect(problems(manifest({ run: { params: { outputs: { Z: 'y' } } } }))).toEqual([]);
    expect(problems(manifest({ nope: { params: {} } }))).toEqual([
      'E_MANIFEST_REFERENCE /models/0/variants/1/steps/nope',
    ]);
    const twice: Step[] = [
      { op: 'infer', id: 'run', model: 'plus', params: { inputs: 'x', outputs: 'y' } },
      { op: 'softmax', id: 'run', params: { input: 'y', output: 'y' } },
    ];
    expect(problems(manifest({ run: { params: {} } }, twice))).toEqual([
      'E_MANIFEST_REFERENCE /models/0/variants/1/steps/run',
    ]);
  });

  it('variants of two models never patch the same step, and infer/script steps keep their op', () => {
    const m = manifest({ post: { params: { output: 'y' } } }, [
      { op: 'infer', id: 'run', model: 'plus', params: { inputs: 'x', outputs: 'y' } },
      { op: 'softmax', id: 'post', params: { input: 'y', output: 'y' } },
    ]) as { models: unknown[] };
    const other = {
      id: 'other',
      variants: [
        { id: 'o', runtime: 'onnxruntime', precision: 'fp32', files: ['plus.onnx'], steps: { post: { params: {} } } },
      ],
    };
    expect(problems({ ...m, models: [...m.models, other] })).toEqual([
      'E_MANIFEST_REFERENCE /models/1/variants/0/steps/post',
    ]);
    expect(problems(manifest({ run: { op: 'softmax', params: { input: 'x', output: 'y' } } }))).toEqual([
      'E_MANIFEST_REFERENCE /models/0/variants/1/steps/run/op',
    ]);
  });

  it('a patch is op and/or params, nothing else, never empty', () => {
    for (const bad of [{ run: {} }, { run: { model: 'other' } }, { run: { params: { '1x': 1 } } }])
      expect(problems(manifest(bad))[0]).toMatch(/^E_MANIFEST_SCHEMA/);
  });
});

describe('merging', () => {
  it('follows RFC 7396: objects merge, null removes, anything else replaces', () => {
    expect(mergePatch({ a: 'b', c: { d: 'e', f: 'g' } }, { a: 'z', c: { f: null } })).toEqual({
      a: 'z',
      c: { d: 'e' },
    });
    expect(mergePatch({ a: [1, 2] }, { a: [3] })).toEqual({ a: [3] });
    expect(mergePatch({ a: 'x' }, { a: { b: 1 } })).toEqual({ a: { b: 1 } });
    expect(mergePatch({ a: 1 }, { b: null })).toEqual({ a: 1 });
  });

  it("a __proto__ key in a signed patch stays a key: it does not become the merged object's prototype", () => {
    // parseStrictJson keeps "__proto__" as an own key, as the manifest reader does
    const patch = parseStrictJson('{"labels":{"__proto__":{"k":5},"a":1}}');
    const merged = mergePatch({ labels: { b: 2 } }, patch) as { labels: Record<string, unknown> };
    expect(Object.getPrototypeOf(merged.labels)).toBe(Object.prototype);
    expect(merged.labels.k).toBeUndefined();
    expect(Object.keys(merged.labels).sort()).toEqual(['__proto__', 'a', 'b']);
    expect(mergePatch({}, parseStrictJson('{"__proto__":null}'))).toEqual({});
  });

  it('changes only the patched steps; a new op takes the patch params alone', () => {
    const steps: Step[] = [
      { op: 'infer', id: 'run', model: 'plus', params: { inputs: 'x', outputs: 'y' } },
      { op: 'top-k', id: 'post', params: { input: 'y', output: 'c', k: 2 } },
      { op: 'softmax', params: { input: 'y', output: 'p' } },
    ];
    const v = (s: Record<string, unknown>) =>
      ({ id: 'v', runtime: 'onnxruntime', precision: 'fp32', files: ['m'], steps: s }) as never;
    const out = patchSteps(steps, [
      v({ run: { params: { outputs: { Z: 'y' } } } }),
      v({ post: { op: 'argmax', params: { input: 'y', output: 'c' } } }),
    ]);
    expect(out[0]).toEqual({ op: 'infer', id: 'run', model: 'plus', params: { inputs: 'x', outputs: { Z: 'y' } } });
    expect(out[1]).toEqual({ op: 'argmax', id: 'post', params: { input: 'y', output: 'c' } });
    expect(out[2]).toBe(steps[2]);
  });
});

describe('a package whose variants run different pipelines', () => {
  async function pack(patch: Record<string, unknown>): Promise<string> {
    const dir = writeSource({ 'plus.onnx': twoOutputs() }, manifest(patch));
    const out = join(tempDir(), 'patched.xpkg');
    await packFolder(dir, out);
    return out;
  }
  const open = (pkg: string, variant: string) =>
    Runner.open(pkg, { allowUnsigned: true, stateDir: tempDir('xpkg-state-'), variant, threads: 1 });
  const x = { type: 'float32' as const, dims: [2], data: Float32Array.of(1, 5) };

  it('runs the patch of the variant it loaded, and the plain pipeline for the other', async () => {
    const pkg = await pack({ run: { params: { outputs: { Z: 'y' } } } });
    await using plain = await open(pkg, 'plain');
    await using patched = await open(pkg, 'patched');
    expect([...((await plain.run({ x })).outputs.y as { data: Float32Array }).data]).toEqual([2, 6]);
    const r = await patched.run({ x });
    expect(r.variant).toEqual({ plus: 'patched' });
    expect([...(r.outputs.y as { data: Float32Array }).data]).toEqual([3, 7]);
  });

  it('refuses at open a variant whose patch breaks the pipeline, even where another variant is chosen', async () => {
    const pkg = await pack({ run: { params: { outputs: null } } });
    expect(await codeOf(open(pkg, 'plain'))).toBe('E_RUN_PIPELINE');
  });
});
