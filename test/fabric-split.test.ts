/**
 * Split points: `xpkg split` cuts the real detector at inner tensors into two valid models whose
 * composition equals the whole (checked with onnxruntime, and here again on a real image); bad cuts
 * fail with E_FABRIC_SPLIT. The parsers split inference adds refuse malformed input with a code:
 * the manifest's split declaration and the V2 binary tensor body.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeV2, encodeV2 } from '../fabric/v2-binary.js';
import { EXIT } from '../spec/errors.js';
import { validateManifestSource } from '../spec/manifest.js';
import { xpkgAsync } from './helpers/cli.js';
import { tempDir } from './helpers/source.js';

const MODEL = 'fixtures/detector/model.onnx';

/** The letterboxed eval image as the detector's input [1, 3, 320, 320]. */
async function image(): Promise<ort.Tensor> {
  const { data } = await sharp('fixtures/detector/eval/000.png')
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const x = new Float32Array(3 * 320 * 320);
  for (let i = 0; i < 320 * 320; i++) for (let c = 0; c < 3; c++) x[c * 320 * 320 + i] = data[i * 3 + c] / 255;
  return new ort.Tensor('float32', x, [1, 3, 320, 320]);
}

describe('xpkg split on the detector', () => {
  it.each([
    ['after the stride-8 stage', ['/s3/s3.2/Add_output_0'], 409_600],
    [
      'at the three neck outputs',
      ['/td3/td3.2/Mul_output_0', '/bu4/bu4.2/Mul_output_0', '/bu5/bu5.2/Mul_output_0'],
      614_400,
    ],
  ])('cuts %s: two valid models, head∘tail equals the whole', async (_what, at, cutBytes) => {
    const dir = tempDir('xpkg-split-');
    const [head, tail] = [join(dir, 'head.onnx'), join(dir, 'tail.onnx')];
    const r = await xpkgAsync([
      'split',
      MODEL,
      ...at.flatMap((a) => ['--at', a]),
      '--head',
      head,
      '--tail',
      tail,
      '--check',
      '2',
      '--json',
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json!.result.check).toMatchObject({ samples: 2, cutBytes });
    expect(r.json!.result.check.maxAbsDiff).toBeLessThanOrEqual(1e-4);
    expect(r.json!.result.nodes.head + r.json!.result.nodes.tail).toBe(207);
    // and on a real image, here with onnxruntime directly
    const [w, h, t] = await Promise.all([MODEL, head, tail].map((f) => ort.InferenceSession.create(f)));
    expect(h.outputNames).toEqual(at);
    expect([...t.inputNames].sort()).toEqual([...at].sort());
    const x = await image();
    const whole = (await w.run({ images: x })).output.data as Float32Array;
    const split = (await t.run(await h.run({ images: x }))).output.data as Float32Array;
    expect(split.length).toBe(2100 * 8);
    let diff = 0;
    for (let i = 0; i < whole.length; i++) diff = Math.max(diff, Math.abs(whole[i] - split[i]));
    expect(diff).toBeLessThanOrEqual(1e-4);
    await Promise.all([w, h, t].map((s) => s.release()));
  });

  it.each([
    ['an unknown tensor', ['nope']],
    ['the model input', ['images']],
    ['a weight', ['onnx::Conv_491']],
    ['the model output', ['output']],
    // one branch of the box head only: the tail still reads the image through the rest
    ['a cut that does not separate the graph', ['/heads.0/box/box.0/box.0.0/Conv_output_0']],
    // stride-8 stage plus one of its consumers: the tail does not need both
    ['a cut tensor the tail does not need', ['/s3/s3.2/Add_output_0', '/s3/s3.1/Add_output_0']],
  ])('refuses %s with E_FABRIC_SPLIT', async (_what, at) => {
    const dir = tempDir('xpkg-split-');
    const r = await xpkgAsync([
      'split',
      MODEL,
      ...at.flatMap((a) => ['--at', a]),
      '--head',
      join(dir, 'h.onnx'),
      '--tail',
      join(dir, 't.onnx'),
      '--json',
    ]);
    expect(r.json!.error!.code).toBe('E_FABRIC_SPLIT');
    expect(r.status).toBe(EXIT.fabric);
  });
});

describe('malformed split declarations', () => {
  const manifest = (split: unknown, extra: Record<string, unknown>[] = []) => {
    const m = JSON.parse(readFileSync('fixtures/detector/xpkg.json', 'utf8'));
    m.models[0].split = split;
    m.models.push(...extra);
    return m;
  };
  const tail = (id: string, more: Record<string, unknown> = {}) => ({
    id,
    variants: [{ id: `${id}-cpu`, runtime: 'onnxruntime', precision: 'fp32', files: ['model.onnx'] }],
    ...more,
  });
  it.each([
    ['no cut tensors', { tail: 't', at: [] }, 'E_MANIFEST_SCHEMA'],
    ['a cut named twice', { tail: 't', at: ['a', 'a'] }, 'E_MANIFEST_SCHEMA'],
    ['an unknown field', { tail: 't', at: ['a'], cut: 1 }, 'E_MANIFEST_SCHEMA'],
    ['no tail', { at: ['a'] }, 'E_MANIFEST_SCHEMA'],
    ['a tail that is not a model', { tail: 'missing', at: ['a'] }, 'E_MANIFEST_REFERENCE'],
    ['itself as the tail', { tail: 'detector', at: ['a'] }, 'E_MANIFEST_REFERENCE'],
  ])('%s → %s', (_what, split, code) => {
    expect(() => validateManifestSource(manifest(split, [tail('t')]))).toThrow(expect.objectContaining({ code }));
  });
  it('a tail that is itself split, or the tail of two splits → E_MANIFEST_REFERENCE', () => {
    const chained = manifest({ tail: 't', at: ['a'] }, [tail('t', { split: { tail: 'u', at: ['b'] } }), tail('u')]);
    expect(() => validateManifestSource(chained)).toThrow(expect.objectContaining({ code: 'E_MANIFEST_REFERENCE' }));
    const shared = manifest({ tail: 't', at: ['a'] }, [tail('t'), tail('h2', { split: { tail: 't', at: ['b'] } })]);
    expect(() => validateManifestSource(shared)).toThrow(expect.objectContaining({ code: 'E_MANIFEST_REFERENCE' }));
  });
});

describe('V2 binary tensor bodies', () => {
  const good = encodeV2({ id: 'x' }, 'inputs', {
    a: { type: 'float32', dims: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
    b: { type: 'int64', dims: [1], data: BigInt64Array.from([7n]) },
  });
  it('round-trips tensors, header fields and types', () => {
    const m = decodeV2(good.body, String(good.headerLength), 'inputs');
    expect(m.header).toEqual({ id: 'x' });
    expect([...(m.tensors.a.data as Float32Array)]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(m.tensors.a.dims).toEqual([2, 3]);
    expect(m.tensors.b).toMatchObject({ type: 'int64', dims: [1] });
    expect((m.tensors.b.data as BigInt64Array)[0]).toBe(7n);
  });
  const header = (h: unknown, tail: Uint8Array = new Uint8Array(0)) => {
    const j = Buffer.from(typeof h === 'string' ? h : JSON.stringify(h));
    return [Buffer.concat([j, tail]), String(j.length)] as const;
  };
  const t = (o: Record<string, unknown> = {}) => ({
    name: 'a',
    shape: [2],
    datatype: 'FP32',
    parameters: { binary_data_size: 8 },
    ...o,
  });
  const cases: [string, Uint8Array, unknown][] = [
    ['no header length', good.body, undefined],
    ['a header length past the body', good.body, String(good.body.length + 1)],
    ['a header length that is not a number', good.body, '12abc'],
    ['a negative header length', good.body, '-5'],
    ['a header that is not JSON', ...header('{"inputs": [')],
    ['a header that is an array', ...header([1])],
    ['no tensor list', ...header({ outputs: [] })],
    ['a tensor without a name', ...header({ inputs: [t({ name: '' })] }, new Uint8Array(8))],
    ['a name with a space', ...header({ inputs: [t({ name: 'a b' })] }, new Uint8Array(8))],
    ['a name given twice', ...header({ inputs: [t(), t()] }, new Uint8Array(16))],
    ['an unknown datatype', ...header({ inputs: [t({ datatype: 'FP64' })] }, new Uint8Array(8))],
    ['a shape of 9 dims', ...header({ inputs: [t({ shape: [1, 1, 1, 1, 1, 1, 1, 1, 2] })] }, new Uint8Array(8))],
    ['a negative dim', ...header({ inputs: [t({ shape: [-2] })] }, new Uint8Array(8))],
    ['a fractional dim', ...header({ inputs: [t({ shape: [1.5] })] }, new Uint8Array(8))],
    [
      "a size that is not the shape's",
      ...header({ inputs: [t({ parameters: { binary_data_size: 4 } })] }, new Uint8Array(4)),
    ],
    ['no size', ...header({ inputs: [t({ parameters: {} })] }, new Uint8Array(8))],
    ['bytes missing', ...header({ inputs: [t()] }, new Uint8Array(7))],
    ['bytes left over', ...header({ inputs: [t()] }, new Uint8Array(9))],
    ['a huge shape', ...header({ inputs: [t({ shape: [2 ** 40, 2 ** 40] })] }, new Uint8Array(8))],
  ];
  it.each(cases)('%s → E_FABRIC_MESSAGE', (_what, body, length) => {
    expect(() => decodeV2(body, length, 'inputs')).toThrow(expect.objectContaining({ code: 'E_FABRIC_MESSAGE' }));
  });
});
