/**
 * `xpkg serve` against the Open Inference Protocol's texts where clients meet its corners: every
 * datatype a manifest declares (JSON and binary, mixed in one body), empty tensors, NaN and ±Infinity
 * in float data (as Triton's server and Python's json write and read them), an empty `outputs` list,
 * values out of a datatype's range. Real HTTP on loopback, a real daemon, real packages: the fixture
 * multi-variant package and "dtypes", built here, one identity per datatype (input `<dtype>` →
 * output `<dtype>_out`). Expectations are statuses, codes and values, never messages.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeModel } from '../fixtures/onnx-tiny.js';
import { packFolder } from '../pack/pack.js';
import { sign } from '../signing/sign.js';
import { binaryRequest, http, parseBinaryReply, postJson, type TestServer, testServer } from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

const ADD = 'multi-variant-add-one';
const TYPES = ['float32', 'float16', 'int32', 'uint8', 'bool', 'int64'] as const;
type Dtype = (typeof TYPES)[number];
const V2: Record<Dtype, string> = {
  float32: 'FP32',
  float16: 'FP16',
  int32: 'INT32',
  uint8: 'UINT8',
  bool: 'BOOL',
  int64: 'INT64',
};
let s: TestServer;
/** A response tensor as the tests read it. */
type Out = {
  name: string;
  datatype: string;
  shape: number[];
  data?: unknown[];
  parameters?: { binary_data_size?: number };
};

/** A signed package of one ONNX model with an Identity per datatype. */
async function dtypesPackage(repo: string): Promise<void> {
  const src = tempDir('xpkg-conf-src-');
  await mkdir(join(src, 'models'));
  const model = encodeModel({
    name: 'ids',
    nodes: TYPES.map((t) => ({ op: 'Identity', inputs: [`X_${t}`], outputs: [`Y_${t}`] })),
    inputs: TYPES.map((t) => ({ name: `X_${t}`, type: t, shape: ['N'] })),
    outputs: TYPES.map((t) => ({ name: `Y_${t}`, type: t, shape: ['N'] })),
  });
  await writeFile(join(src, 'models', 'ids.onnx'), model);
  const manifest = {
    format: 'xpkg/1',
    name: 'dtypes',
    version: '1.0.0',
    sequence: 1,
    license: 'Apache-2.0',
    task: 'tensor',
    inputs: TYPES.map((t) => ({ name: t, type: 'tensor', dtype: t, shape: ['N'] })),
    outputs: TYPES.map((t) => ({ name: `${t}_out`, type: 'tensor', dtype: t, shape: ['N'] })),
    models: [
      { id: 'ids', variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['models/ids.onnx'] }] },
    ],
    pipeline: {
      steps: [
        {
          op: 'infer',
          model: 'ids',
          params: {
            inputs: Object.fromEntries(TYPES.map((t) => [`X_${t}`, t])),
            outputs: Object.fromEntries(TYPES.map((t) => [`Y_${t}`, `${t}_out`])),
          },
        },
      ],
    },
  };
  await writeFile(join(src, 'xpkg.json'), JSON.stringify(manifest));
  const pkg = join(repo, 'dtypes.xpkg');
  await packFolder(src, pkg, { sourceDateEpoch: '' });
  await sign(pkg, { key: 'fixtures/keys/test.key', out: pkg, passphrase: '', force: true });
}

beforeAll(async () => {
  const repo = tempDir('xpkg-serve-conf-');
  await copyFile('fixtures/dist/multi-variant.xpkg', join(repo, 'multi-variant.xpkg'));
  await dtypesPackage(repo);
  s = await testServer({ repo });
});
afterAll(async () => s?.close());

const infer = () => `${s.url}/v2/models/dtypes/infer`;
/** Every input of "dtypes" as JSON, `n` elements each (zeros, false), with some replaced. */
function inputs(n: number, over: Partial<Record<Dtype, unknown>> = {}): Record<string, unknown>[] {
  return TYPES.map(
    (t) =>
      (over[t] as Record<string, unknown>) ?? {
        name: t,
        shape: [n],
        datatype: V2[t],
        data: Array.from({ length: n }, () => (t === 'bool' ? false : 0)),
      },
  );
}
const E = (r: { status: number; body: { code?: string; detail?: { reason?: string } } }) => [
  r.status,
  r.body?.code,
  r.body?.detail?.reason,
];

describe('empty tensors', () => {
  it('an output of no elements keeps its declared datatype, in JSON and as binary data', async () => {
    const json = await postJson(infer(), { inputs: inputs(0) });
    expect(json.status).toBe(200);
    expect(json.body.outputs.map((o: Out) => [o.name, o.datatype, o.shape, o.data])).toEqual(
      TYPES.map((t) => [`${t}_out`, V2[t], [0], []]),
    );
    const bin = await postJson(infer(), { inputs: inputs(0), parameters: { binary_data_output: true } });
    expect(bin.headers.get('content-type')).toBe('application/octet-stream');
    const { header, outputs } = parseBinaryReply(bin);
    expect(header.outputs.map((o: Out) => [o.datatype, o.parameters?.binary_data_size])).toEqual(
      TYPES.map((t) => [V2[t], 0]),
    );
    // the body is the JSON header and nothing more: every binary output is 0 bytes
    expect(bin.raw.length).toBe(Number(bin.headers.get('inference-header-content-length')));
    expect(Object.values(outputs).every((b) => b.length === 0)).toBe(true);
  });
});

describe('NaN and ±Infinity in float data', () => {
  const body = (data: string) =>
    JSON.stringify({ inputs: inputs(5) }).replace(
      /\{"name":"(float32|float16)","shape":\[5\],"datatype":"(FP32|FP16)","data":\[0,0,0,0,0\]\}/g,
      `{"name":"$1","shape":[5],"datatype":"$2","data":${data}}`,
    );
  /** A JSON request as text (the spellings are no JSON to JSON.stringify); the answer parsed when it is JSON. */
  const raw = async (text: string) => {
    const r = await fetch(infer(), { method: 'POST', headers: { 'content-type': 'application/json' }, body: text });
    const body = await r.text();
    let parsed: { id?: string; code?: string; detail?: { reason?: string } } = {};
    try {
      parsed = JSON.parse(body);
    } catch {}
    return { status: r.status, text: body, body: parsed };
  };

  it("are read in a JSON request as Triton's server and Python's json spell them, and written back as null", async () => {
    const r = await raw(body('[NaN, Infinity, -Infinity, Inf, -Inf]'));
    expect(r.status).toBe(200);
    // the response stays JSON every parser reads (JSON.parse here): the words become null, as
    // JSON.stringify and orjson (KServe's server) write them; binary data carries them exactly
    const out = (r.body as unknown as { outputs: { name: string; datatype: string; data: unknown[] }[] }).outputs;
    expect(out.find((o) => o.name === 'float32_out')).toMatchObject({
      datatype: 'FP32',
      data: [null, null, null, null, null],
    });
    expect(out.find((o) => o.name === 'float16_out')).toMatchObject({
      datatype: 'FP16',
      data: [null, null, null, null, null],
    });
    // nested data too, and finite values in the same tensor stay numbers
    const nested = await raw(body('[[NaN, 1.5], [-Infinity, 2], [0]]'));
    expect(nested.status).toBe(200);
    expect(nested.text).toContain('"datatype":"FP32","data":[null,1.5,null,2,0]');
  });

  it('come back exactly as binary data; a tensor of finite values is still plain JSON', async () => {
    const x = new Float32Array([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1, 2]);
    const header = {
      inputs: inputs(5, {
        float32: { name: 'float32', shape: [5], datatype: 'FP32', parameters: { binary_data_size: 20 } },
      }),
      outputs: [{ name: 'float32_out', parameters: { binary_data: true } }, { name: 'int32_out' }],
    };
    const r = await http(infer(), { method: 'POST', ...binaryRequest(header, [new Uint8Array(x.buffer)]) });
    const { header: h, outputs } = parseBinaryReply(r);
    expect(Array.from(new Float32Array(new Uint8Array(outputs.float32_out).buffer))).toEqual(Array.from(x));
    expect(h.outputs[1]).toEqual({ name: 'int32_out', shape: [5], datatype: 'INT32', data: [0, 0, 0, 0, 0] });
    const plain = await postJson(infer(), { inputs: inputs(2) });
    expect(plain.body.outputs[0].data).toEqual([0, 0]);
  });

  it('are refused where they are no value: integer and boolean data, parameters, other spellings', async () => {
    const cases: [string, string, string, string?][] = [
      [
        'NaN in INT32',
        JSON.stringify({ inputs: inputs(1) }).replace('"INT32","data":[0]', '"INT32","data":[NaN]'),
        'E_SERVE_INPUT',
        'dtype',
      ],
      [
        'Infinity in INT64',
        JSON.stringify({ inputs: inputs(1) }).replace('"INT64","data":[0]', '"INT64","data":[Infinity]'),
        'E_SERVE_INPUT',
        'dtype',
      ],
      [
        'NaN in BOOL',
        JSON.stringify({ inputs: inputs(1) }).replace('"BOOL","data":[false]', '"BOOL","data":[NaN]'),
        'E_SERVE_INPUT',
        'dtype',
      ],
      [
        'NaN as a parameter',
        `{"parameters":{"p":NaN},${JSON.stringify({ inputs: inputs(1) }).slice(1)}`,
        'E_SERVE_REQUEST',
      ],
      ['-NaN', body('[-NaN, 0, 0, 0, 0]'), 'E_SERVE_REQUEST'],
      ['nan in lower case', body('[nan, 0, 0, 0, 0]'), 'E_SERVE_REQUEST'],
    ];
    for (const [what, text, code, reason] of cases)
      expect([what, ...E(await raw(text))]).toEqual([what, 400, code, reason]);
    // the spellings inside a string are only text
    const id = await raw(`{"id":"[NaN, Infinity]",${body('[1, 2, 3, 4, 5]').slice(1)}`);
    expect([id.status, id.body.id]).toEqual([200, '[NaN, Infinity]']);
  });

  it("an independent client (Python's json) sends and reads them back", async () => {
    const got = await new Promise<{ ok: boolean; got: unknown }>((resolve, reject) =>
      execFile(
        'python3',
        ['test/helpers/v2_client.py', s.url, 'non_finite'],
        { timeout: 20_000, env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } },
        (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout))),
      ),
    );
    expect(got.ok).toBe(true);
    expect(got.got).toEqual({
      status: 200,
      data: [
        ['null', 'null', 'null', '1.5'],
        ['null', 'null', 'null', '1.5'],
      ],
      nan_in_int32: [400, 'E_SERVE_INPUT', true],
      nan_in_parameters: [400, 'E_SERVE_REQUEST', true],
    });
  });
});

describe('FP16 data as JSON numbers', () => {
  it('are rounded once to the nearest half, as an independent client (Python struct) rounds them', async () => {
    const got = await new Promise<{ ok: boolean; got: unknown }>((resolve, reject) =>
      execFile(
        'python3',
        ['test/helpers/v2_client.py', s.url, 'fp16_rounding'],
        { timeout: 20_000, env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } },
        (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout))),
      ),
    );
    expect(got.ok, String(got.got)).toBe(true);
    // the values whose half differs from the nearest one: none, in binary and in JSON
    expect(got.got).toEqual({ binary: [200, []], json: [200, []] });
  });
});

describe('requested outputs', () => {
  it('an empty outputs list is every output, as when none is named', async () => {
    const r = await postJson(`${s.url}/v2/models/${ADD}/infer`, {
      inputs: [{ name: 'x', shape: [2], datatype: 'FP32', data: [1, 2] }],
      outputs: [],
    });
    expect([r.status, r.body.outputs.map((o: Out) => o.name)]).toEqual([200, ['y']]);
    const all = await postJson(infer(), { inputs: inputs(1), outputs: [], parameters: { binary_data_output: true } });
    expect(parseBinaryReply(all).header.outputs.map((o: Out) => o.name)).toEqual(TYPES.map((t) => `${t}_out`));
  });

  it("an output named twice alike is answered once (Triton's server merges them); with other parameters, 400", async () => {
    const twice = await postJson(infer(), {
      inputs: inputs(1),
      outputs: [
        { name: 'int32_out', parameters: { binary_data: false } },
        { name: 'bool_out' },
        { name: 'int32_out', parameters: { binary_data: false } },
      ],
    });
    expect([twice.status, twice.body.outputs.map((o: Out) => o.name)]).toEqual([200, ['int32_out', 'bool_out']]);
    // JSON and binary of one output, or the tensor and its classification: one answer cannot be both
    for (const other of [{ binary_data: true }, { classification: 1 }]) {
      const r = await postJson(infer(), {
        inputs: inputs(1),
        outputs: [{ name: 'int32_out' }, { name: 'int32_out', parameters: other }],
      });
      expect(E(r)).toEqual([400, 'E_SERVE_REQUEST', 'duplicate']);
    }
    expect((await postJson(infer(), { inputs: inputs(1) })).status).toBe(200);
  });
});

describe('every datatype, JSON and binary mixed in one body', () => {
  it('binary FP16, INT32, BOOL inputs beside JSON ones; binary and JSON outputs as each asks', async () => {
    const f16 = new Uint16Array([0x3c00, 0xc000, 0x7bff]); // 1, -2, 65504
    const i32 = new Int32Array([-(2 ** 31), 0, 2 ** 31 - 1]);
    const b = new Uint8Array([1, 0, 1]);
    const bin = (t: Dtype, bytes: number) => ({
      name: t,
      shape: [3],
      datatype: V2[t],
      parameters: { binary_data_size: bytes },
    });
    const header = {
      id: 'mixed',
      inputs: inputs(3, {
        float16: bin('float16', 6),
        int32: bin('int32', 12),
        bool: bin('bool', 3),
        uint8: { name: 'uint8', shape: [3], datatype: 'UINT8', data: [[0], [128], [255]] },
      }),
      parameters: { binary_data_output: true },
      outputs: [
        { name: 'float16_out' },
        { name: 'bool_out', parameters: { binary_data: false } },
        { name: 'int32_out' },
        { name: 'uint8_out', parameters: { binary_data: false } },
      ],
    };
    const parts = [f16, i32, b].map((a) => new Uint8Array(a.buffer));
    const r = await http(infer(), { method: 'POST', ...binaryRequest(header, parts) });
    expect(r.status).toBe(200);
    const { header: h, outputs } = parseBinaryReply(r);
    expect(h.id).toBe('mixed');
    expect(h.outputs.map((o: Out) => [o.name, o.datatype, o.parameters?.binary_data_size ?? o.data])).toEqual([
      ['float16_out', 'FP16', 6],
      ['bool_out', 'BOOL', [true, false, true]],
      ['int32_out', 'INT32', 12],
      ['uint8_out', 'UINT8', [0, 128, 255]],
    ]);
    expect(Array.from(new Uint16Array(new Uint8Array(outputs.float16_out).buffer))).toEqual(Array.from(f16));
    expect(Array.from(new Int32Array(new Uint8Array(outputs.int32_out).buffer))).toEqual(Array.from(i32));
  });

  it('JSON values outside their datatype, or not of it, are 400 E_SERVE_INPUT with the reason', async () => {
    const one = (t: Dtype, data: unknown[], shape = [data.length]) => ({
      inputs: inputs(shape[0], { [t]: { name: t, shape, datatype: V2[t], data } }),
    });
    const cases: [string, unknown, string][] = [
      ['UINT8 300', one('uint8', [300]), 'dtype'],
      ['UINT8 -1', one('uint8', [-1]), 'dtype'],
      ['INT32 1.5', one('int32', [1.5]), 'dtype'],
      ['INT32 2^31', one('int32', [2 ** 31]), 'dtype'],
      ['BOOL 1', one('bool', [1]), 'dtype'],
      ['FP32 string', one('float32', ['1']), 'dtype'],
      ['FP32 too few', one('float32', [1], [2]), 'size'],
      ['duplicate input', { inputs: [...inputs(1), inputs(1)[0]] }, 'name'],
      ['missing input', { inputs: inputs(1).slice(1) }, 'missing'],
    ];
    for (const [what, body, reason] of cases) {
      const r = await postJson(infer(), body);
      expect([what, ...E(r)]).toEqual([what, 400, 'E_SERVE_INPUT', reason]);
    }
    expect((await postJson(infer(), { inputs: inputs(1) })).status).toBe(200);
  });
});

describe('optional outputs', () => {
  it('an optional output the run did not produce is left out of the response, asked for or not, JSON or binary; an input named constructor is taken', async () => {
    const repo = tempDir('xpkg-serve-optional-');
    const src = tempDir('xpkg-conf-src-');
    await mkdir(join(src, 'models'));
    const model = encodeModel({
      name: 'id',
      nodes: [{ op: 'Identity', inputs: ['X'], outputs: ['Y'] }],
      inputs: [{ name: 'X', type: 'float32', shape: ['N'] }],
      outputs: [{ name: 'Y', type: 'float32', shape: ['N'] }],
    });
    await writeFile(join(src, 'models', 'id.onnx'), model);
    // `constructor`, `toString`: names every plain object inherits, neither given nor produced by that
    const spare = (name: string) => ({ name, type: 'tensor', dtype: 'float32', shape: ['N'], optional: true });
    const manifest = {
      format: 'xpkg/1',
      name: 'optional-out',
      version: '1.0.0',
      sequence: 1,
      license: 'Apache-2.0',
      task: 'tensor',
      inputs: [{ name: 'constructor', type: 'tensor', dtype: 'float32', shape: ['N'] }],
      outputs: [{ name: 'y', type: 'tensor', dtype: 'float32', shape: ['N'] }, spare('spare'), spare('toString')],
      models: [
        { id: 'id', variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['models/id.onnx'] }] },
      ],
      pipeline: {
        steps: [{ op: 'infer', model: 'id', params: { inputs: { X: 'constructor' }, outputs: { Y: 'y' } } }],
      },
    };
    await writeFile(join(src, 'xpkg.json'), JSON.stringify(manifest));
    const pkg = join(repo, 'optional-out.xpkg');
    await packFolder(src, pkg, { sourceDateEpoch: '' });
    await sign(pkg, { key: 'fixtures/keys/test.key', out: pkg, passphrase: '', force: true });
    const t = await testServer({ repo });
    try {
      const url = `${t.url}/v2/models/optional-out/infer`;
      const x = { name: 'constructor', shape: [2], datatype: 'FP32', data: [1, 2] };
      const all = await postJson(url, { inputs: [x] });
      expect([all.status, all.body.outputs.map((o: Out) => o.name)]).toEqual([200, ['y']]);
      const asked = await postJson(url, {
        inputs: [x],
        outputs: [{ name: 'y' }, { name: 'spare' }, { name: 'toString' }],
      });
      expect([asked.status, asked.body.outputs.map((o: Out) => o.name)]).toEqual([200, ['y']]);
      const header = { inputs: [x], outputs: [{ name: 'spare' }, { name: 'toString' }, { name: 'y' }] };
      const bin = await http(url, {
        method: 'POST',
        ...binaryRequest({ ...header, parameters: { binary_data_output: true } }, []),
      });
      expect(bin.status).toBe(200);
      const { header: h, outputs } = parseBinaryReply(bin);
      expect(h.outputs.map((o: Out) => o.name)).toEqual(['y']);
      expect(Array.from(new Float32Array(new Uint8Array(outputs.y).buffer))).toEqual([1, 2]);
    } finally {
      await t.close();
    }
  });
});
