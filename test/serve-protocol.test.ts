/**
 * `xpkg serve` over real HTTP on loopback with the real fixture packages: every V2 endpoint in the
 * shapes of the Open Inference Protocol's published examples (JSON tensors, Triton's binary tensor
 * data extension), the raw-image route against `xpkg run --json`, and bad input → the right 4xx
 * with a code, the daemon healthy after.
 */
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeModel } from '../fixtures/onnx-tiny.js';
import { packFolder } from '../pack/pack.js';
import { PackageReader } from '../pack/reader.js';
import { outputsToJson } from '../runner/outputs-json.js';
import { Runner } from '../runner/runner.js';
import { sign } from '../signing/sign.js';
import {
  binaryRequest,
  http,
  parseBinaryReply,
  postJson,
  type TestServer,
  TRUST,
  testServer,
  versionedPackage,
} from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

const ADD = 'multi-variant-add-one';
let s: TestServer;
let addId: string;
let detectorId: string;
const png = () => readFile('fixtures/detector/eval/000.png');

beforeAll(async () => {
  const repo = tempDir('xpkg-serve-repo-');
  await copyFile('fixtures/dist/multi-variant.xpkg', join(repo, 'multi-variant.xpkg'));
  await copyFile('fixtures/dist/detector.xpkg', join(repo, 'detector.xpkg'));
  for (const [p, set] of [
    ['fixtures/dist/multi-variant.xpkg', (x: string) => (addId = x)],
    ['fixtures/dist/detector.xpkg', (x: string) => (detectorId = x)],
  ] as const) {
    const r = await PackageReader.open(p);
    set(r.id);
    await r.close();
  }
  s = await testServer({ repo, bodyLimit: 4 * 1024 * 1024, requestTimeoutMs: 1500, concurrency: 1, queue: 2 });
});
afterAll(async () => s?.close());

describe('health and metadata', () => {
  it('live, ready, server metadata and model metadata in the protocol shapes', async () => {
    expect((await http(`${s.url}/v2/health/live`)).body).toEqual({ live: true });
    const ready = await http(`${s.url}/v2/health/ready`);
    expect([ready.status, ready.body]).toEqual([200, { ready: true }]);
    const meta = await http(`${s.url}/v2`);
    expect(meta.body).toMatchObject({ name: 'xpkg', extensions: ['binary_tensor_data', 'classification'] });
    expect(typeof meta.body.version).toBe('string');
    const m = await http(`${s.url}/v2/models/${ADD}`);
    expect(m.body).toMatchObject({
      name: ADD,
      versions: [addId],
      platform: 'xpkg',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1] }],
      parameters: { version: addId, sequence: 1 },
    });
    const d = await http(`${s.url}/v2/models/detector/versions/${detectorId}`);
    expect(d.body.inputs).toEqual([
      { name: 'image', datatype: 'UINT8', shape: [-1, -1, -1], parameters: { xpkg_type: 'image' } },
    ]);
    expect(d.body.outputs[0]).toMatchObject({ name: 'boxes', datatype: 'BYTES', shape: [1] });
    expect((await http(`${s.url}/v2/models/${ADD}/ready`)).body).toEqual({ name: ADD, ready: true });
    expect((await http(`${s.url}/v2/models/${ADD}/versions/${addId.slice(0, 12)}/ready`)).status).toBe(200);
  });

  it('unknown model, version and route are 404s with their codes', async () => {
    const cases: [string, string][] = [
      ['/v2/models/nope', 'E_SERVE_MODEL_UNKNOWN'],
      ['/v2/models/nope/ready', 'E_SERVE_MODEL_UNKNOWN'],
      [`/v2/models/${ADD}/versions/0123456789abcdef`, 'E_SERVE_VERSION_UNKNOWN'],
      ['/v2/nothing/here', 'E_SERVE_NOT_FOUND'],
      // longer than any name can be: the router's own refusal, through the same error handler
      [`/v2/models/${'a'.repeat(300)}`, 'E_SERVE_NOT_FOUND'],
    ];
    for (const [path, code] of cases) {
      const r = await http(`${s.url}${path}`);
      expect([path, r.status, r.body.code, typeof r.body.error]).toEqual([path, 404, code, 'string']);
    }
    const badUrl = await http(`${s.url}/v2/models/%zz`);
    expect([badUrl.status, badUrl.body.code, typeof badUrl.body.error]).toEqual([400, 'E_SERVE_REQUEST', 'string']);
  });

  it('a model named with the longest name a manifest allows (128), or a scoped one (@scope/name), is served', async () => {
    const long = `long-${'n'.repeat(123)}`;
    const scoped = '@acme/add-one';
    const repo = tempDir('xpkg-serve-repo-');
    await copyFile(await versionedPackage({ sequence: 1, k: 1, name: long }), join(repo, 'long.xpkg'));
    await copyFile(await versionedPackage({ sequence: 1, k: 1, name: scoped }), join(repo, 'scoped.xpkg'));
    const t = await testServer({ repo });
    try {
      for (const name of [long, scoped]) {
        const base = `${t.url}/v2/models/${encodeURIComponent(name)}`;
        const meta = await http(base);
        expect([meta.status, meta.body.name]).toEqual([200, name]);
        expect((await http(`${base}/ready`)).status).toBe(200);
        const r = await postJson(`${base}/infer`, {
          inputs: [{ name: 'x', shape: [2], datatype: 'FP32', data: [1, 2] }],
        });
        expect([r.status, r.body.model_name, r.body.outputs[0].data]).toEqual([200, name, [2, 3]]);
      }
    } finally {
      await t.close();
    }
  });
});

describe('infer', () => {
  it('JSON tensors as in the published example: id echoed, model and version named, outputs typed', async () => {
    const r = await postJson(`${s.url}/v2/models/${ADD}/infer`, {
      id: '42',
      inputs: [{ name: 'x', shape: [4], datatype: 'FP32', data: [1, 2, 3, 4] }],
      outputs: [{ name: 'y' }],
    });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      model_name: ADD,
      model_version: addId,
      id: '42',
      outputs: [{ name: 'y', shape: [4], datatype: 'FP32', data: [2, 3, 4, 5] }],
    });
    expect(r.headers.get('xpkg-model-version')).toBe(addId);
    // nested data is row-major too; a pinned version (by prefix) answers with its full id
    const nested = await postJson(`${s.url}/v2/models/${ADD}/versions/${addId.slice(0, 16)}/infer`, {
      inputs: [
        {
          name: 'x',
          shape: [4],
          datatype: 'FP32',
          data: [
            [1, 2],
            [3, 4],
          ],
        },
      ],
    });
    expect([nested.body.model_version, nested.body.outputs[0].data, 'id' in nested.body]).toEqual([
      addId,
      [2, 3, 4, 5],
      false,
    ]);
  });

  it('binary tensor data: request as in the extension example, outputs back as binary when asked', async () => {
    // the int8 variant this host may pick is exact on a 1/16 grid in [-8, 7.9375]
    const x = new Float32Array([0.5, -1, 6.5, 2.25, 3]);
    const { body, headers } = binaryRequest(
      {
        inputs: [{ name: 'x', shape: [5], datatype: 'FP32', parameters: { binary_data_size: 20 } }],
        outputs: [{ name: 'y', parameters: { binary_data: true } }],
      },
      [new Uint8Array(x.buffer)],
    );
    const r = await http(`${s.url}/v2/models/${ADD}/infer`, { method: 'POST', headers, body });
    expect([r.status, r.headers.get('content-type')]).toEqual([200, 'application/octet-stream']);
    const { header, outputs } = parseBinaryReply(r);
    expect(header.outputs).toEqual([{ name: 'y', shape: [5], datatype: 'FP32', parameters: { binary_data_size: 20 } }]);
    const y = new Float32Array(new Uint8Array(outputs.y).buffer);
    expect(Array.from(y)).toEqual(Array.from(x, (v) => v + 1));
    // binary in, JSON out (no output asked as binary) is a plain JSON response
    const j = await http(`${s.url}/v2/models/${ADD}/infer`, {
      method: 'POST',
      ...binaryRequest(
        { inputs: [{ name: 'x', shape: [5], datatype: 'FP32', parameters: { binary_data_size: 20 } }] },
        [new Uint8Array(x.buffer)],
      ),
    });
    expect(j.body.outputs[0].data).toEqual(Array.from(x, (v) => v + 1));
  });

  it('INT64 beyond 2^53 is exact in JSON outputs and inputs (as in binary), not rounded to a double', async () => {
    const src = tempDir('xpkg-serve-src-');
    await mkdir(join(src, 'models'));
    const model = encodeModel({
      name: 'id64',
      nodes: [{ op: 'Identity', inputs: ['X'], outputs: ['Y'] }],
      inputs: [{ name: 'X', type: 'int64', shape: ['N'] }],
      outputs: [{ name: 'Y', type: 'int64', shape: ['N'] }],
      initializers: [],
    });
    await writeFile(join(src, 'models', 'id.onnx'), model);
    const io = (name: string) => [{ name, type: 'tensor', dtype: 'int64', shape: ['N'] }];
    const manifest = {
      format: 'xpkg/1',
      name: 'id-int64',
      version: '1.0.0',
      sequence: 1,
      license: 'Apache-2.0',
      task: 'tensor',
      inputs: io('x'),
      outputs: io('y'),
      models: [
        { id: 'id', variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['models/id.onnx'] }] },
      ],
      pipeline: { steps: [{ op: 'infer', model: 'id', params: { inputs: 'x', outputs: 'y' } }] },
    };
    await writeFile(join(src, 'xpkg.json'), JSON.stringify(manifest));
    const repo = tempDir('xpkg-serve-repo-');
    const pkg = join(repo, 'id-int64.xpkg');
    await packFolder(src, pkg, { sourceDateEpoch: '' });
    await sign(pkg, { key: 'fixtures/keys/test.key', out: pkg, passphrase: '', force: true });
    const t = await testServer({ repo });
    try {
      const x = new BigInt64Array([1n, -(2n ** 62n), 2n ** 62n + 1n]);
      const url = `${t.url}/v2/models/id-int64/infer`;
      const header = { inputs: [{ name: 'x', shape: [3], datatype: 'INT64', parameters: { binary_data_size: 24 } }] };
      const r = await http(url, { method: 'POST', ...binaryRequest(header, [new Uint8Array(x.buffer)]) });
      expect(r.status).toBe(200);
      // the digits as written, before any JSON parser of JavaScript's rounds them
      expect(r.raw.toString('utf8')).toContain('"data":[1,-4611686018427387904,4611686018427387905]');
      const bin = await http(url, {
        method: 'POST',
        ...binaryRequest({ ...header, outputs: [{ name: 'y', parameters: { binary_data: true } }] }, [
          new Uint8Array(x.buffer),
        ]),
      });
      const { header: h, outputs } = parseBinaryReply(bin);
      expect(h.outputs[0].shape).toEqual([3]);
      expect(Array.from(new BigInt64Array(new Uint8Array(outputs.y).buffer))).toEqual(Array.from(x));
      // safe values stay plain numbers
      const small = await postJson(url, { inputs: [{ name: 'x', shape: [2], datatype: 'INT64', data: [5, -6] }] });
      expect(small.body.outputs[0].data).toEqual([5, -6]);
      // JSON input data beyond 2^53 is read exactly too (a double would round it; it was a 400)
      const text = (data: string) => ({
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: `{"id":"a\\"12345678901234567890","inputs":[{"name":"x","shape":[3],"datatype":"INT64","data":${data}}]}`,
      });
      const exact = await http(url, text('[[1],[-4611686018427387904],[4611686018427387905]]'));
      expect(exact.status).toBe(200);
      expect(exact.raw.toString('utf8')).toContain('"data":[1,-4611686018427387904,4611686018427387905]');
      expect(exact.body.id).toBe('a"12345678901234567890'); // digits in a string stay a string
      const over = await http(url, text('[1,2,9223372036854775808]'));
      expect([over.status, over.body.code, over.body.detail?.reason]).toEqual([400, 'E_SERVE_INPUT', 'dtype']);
    } finally {
      await t.close();
    }
  });

  it("requests without a content type (Triton's and KServe's Python clients), JSON as octet-stream without the header length", async () => {
    const url = `${s.url}/v2/models/${ADD}/infer`;
    const json = { id: 'plain', inputs: [{ name: 'x', shape: [4], datatype: 'FP32', data: [1, 2, 3, 4] }] };
    // a Uint8Array body: fetch sends no content-type for it
    const bare = await http(url, { method: 'POST', body: new Uint8Array(Buffer.from(JSON.stringify(json))) });
    expect([bare.status, bare.body.id, bare.body.outputs[0].data]).toEqual([200, 'plain', [2, 3, 4, 5]]);
    const octet = await http(url, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: JSON.stringify(json),
    });
    expect([octet.status, octet.body.outputs[0].data]).toEqual([200, [2, 3, 4, 5]]);
    const x = new Float32Array([1, 2, 3, 4]);
    const bin = binaryRequest(
      {
        inputs: [{ name: 'x', shape: [4], datatype: 'FP32', parameters: { binary_data_size: 16 } }],
        outputs: [{ name: 'y', parameters: { binary_data: true } }],
      },
      [new Uint8Array(x.buffer)],
    );
    delete bin.headers['content-type'];
    const b = await http(url, { method: 'POST', ...bin });
    expect(b.status).toBe(200);
    expect(Array.from(new Float32Array(new Uint8Array(parseBinaryReply(b).outputs.y).buffer))).toEqual([2, 3, 4, 5]);
  });

  it('an image as raw UINT8 pixels (binary) and as an encoded image (BYTES, base64 in JSON) gives the package result', async () => {
    const bytes = await png();
    const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const { body, headers } = binaryRequest(
      {
        inputs: [
          {
            name: 'image',
            shape: [info.height, info.width, 3],
            datatype: 'UINT8',
            parameters: { binary_data_size: data.length },
          },
        ],
        parameters: { binary_data_output: true },
      },
      [data],
    );
    const raw = await http(`${s.url}/v2/models/detector/infer`, { method: 'POST', headers, body });
    expect(raw.status).toBe(200);
    const { header, outputs } = parseBinaryReply(raw);
    expect(header.outputs[0]).toMatchObject({
      name: 'boxes',
      datatype: 'BYTES',
      shape: [1],
      parameters: { content_type: 'application/json' },
    });
    const boxesRaw = JSON.parse(outputs.boxes.subarray(4).toString('utf8'));
    const enc = await postJson(`${s.url}/v2/models/detector/infer`, {
      inputs: [{ name: 'image', shape: [1], datatype: 'BYTES', data: [bytes.toString('base64')] }],
    });
    expect(enc.status).toBe(200);
    const boxesEnc = JSON.parse(enc.body.outputs[0].data[0]);
    await using runner = await Runner.open('fixtures/dist/detector.xpkg', { trust: TRUST, stateDir: tempDir() });
    const direct = outputsToJson((await runner.run({ image: bytes })).outputs).boxes;
    expect(boxesEnc).toEqual(direct);
    expect(boxesRaw.map((b: { label: string }) => b.label)).toEqual(
      (direct as { label: string }[]).map((b) => b.label),
    );
  });

  it("the raw-image route answers with `xpkg run --json`'s result and names the version", async () => {
    const bytes = await png();
    const r = await http(`${s.url}/xpkg/models/detector/run`, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: bytes,
    });
    expect(r.status).toBe(200);
    await using runner = await Runner.open('fixtures/dist/detector.xpkg', { trust: TRUST, stateDir: tempDir() });
    const direct = await runner.run({ image: bytes });
    expect(r.body.result.outputs).toEqual(outputsToJson(direct.outputs));
    expect(r.body.result).toMatchObject({
      variant: direct.variant,
      actualProvider: direct.actualProvider,
      model: { name: 'detector', version: detectorId, sequence: 1 },
    });
    expect(Object.keys(r.body.result.timings)).toEqual(
      expect.arrayContaining(['decode', 'pre', 'infer:detector', 'post', 'total']),
    );
  });
});

describe('bad input: the right 4xx with a code, and the daemon stays healthy', () => {
  const url = () => `${s.url}/v2/models/${ADD}/infer`;
  it('malformed JSON, schema violations, wrong dtype, shape and size, unknown input and output', async () => {
    const cases: [string, RequestInit | unknown, number, string, string?][] = [
      [
        'malformed JSON',
        { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"inputs": [' },
        400,
        'E_SERVE_REQUEST',
      ],
      ['no inputs', {}, 400, 'E_SERVE_REQUEST'],
      [
        'unknown datatype',
        { inputs: [{ name: 'x', shape: [1], datatype: 'FP128', data: [1] }] },
        400,
        'E_SERVE_REQUEST',
      ],
      ['negative dim', { inputs: [{ name: 'x', shape: [-1], datatype: 'FP32', data: [1] }] }, 400, 'E_SERVE_REQUEST'],
      [
        'wrong dtype',
        { inputs: [{ name: 'x', shape: [2], datatype: 'INT32', data: [1, 2] }] },
        400,
        'E_SERVE_INPUT',
        'dtype',
      ],
      [
        'published example dtype (UINT32)',
        { inputs: [{ name: 'x', shape: [2, 2], datatype: 'UINT32', data: [1, 2, 3, 4] }] },
        400,
        'E_SERVE_INPUT',
        'dtype',
      ],
      [
        'wrong rank',
        { inputs: [{ name: 'x', shape: [2, 2], datatype: 'FP32', data: [1, 2, 3, 4] }] },
        400,
        'E_SERVE_INPUT',
        'shape',
      ],
      [
        'too few values',
        { inputs: [{ name: 'x', shape: [3], datatype: 'FP32', data: [1, 2] }] },
        400,
        'E_SERVE_INPUT',
        'size',
      ],
      [
        'string in FP32',
        { inputs: [{ name: 'x', shape: [2], datatype: 'FP32', data: [1, 'a'] }] },
        400,
        'E_SERVE_INPUT',
        'dtype',
      ],
      [
        'unknown input',
        { inputs: [{ name: 'z', shape: [1], datatype: 'FP32', data: [1] }] },
        400,
        'E_SERVE_INPUT',
        'name',
      ],
      ['no data', { inputs: [{ name: 'x', shape: [1], datatype: 'FP32' }] }, 400, 'E_SERVE_REQUEST'],
      [
        'unknown output',
        { inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [1] }], outputs: [{ name: 'q' }] },
        400,
        'E_SERVE_REQUEST',
      ],
      [
        'text body',
        { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' },
        415,
        'E_SERVE_MEDIA_TYPE',
      ],
    ];
    for (const [what, req, status, code, reason] of cases) {
      const r = (req as RequestInit).method ? await http(url(), req as RequestInit) : await postJson(url(), req);
      expect([what, r.status, r.body.code, reason && r.body.detail?.reason]).toEqual([what, status, code, reason]);
    }
  });

  it("curl -d's form type carries a JSON body, as Triton's server (and its docs' curl lines) read it", async () => {
    const body = JSON.stringify({ inputs: [{ name: 'x', shape: [2], datatype: 'FP32', data: [1, 2] }] });
    const r = await http(url(), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
    expect([r.status, r.body.outputs?.[0]?.data]).toEqual([200, [2, 3]]);
  });

  it('data nested deeper than any shape is a 400, not a stack overflow (500)', async () => {
    const deep = (inner: string, n: number) => `${'['.repeat(n)}${inner}${']'.repeat(n)}`;
    const deepObject = (n: number) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
    const cases: [string, string, string][] = [
      [url(), `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":${deep('1', 20_000)}}]}`, 'shape'],
      [url(), `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[${deepObject(20_000)}]}]}`, 'dtype'],
      [
        `${s.url}/v2/models/detector/infer`,
        `{"inputs":[{"name":"image","shape":[1],"datatype":"BYTES","data":${deep('"aa"', 20_000)}}]}`,
        'shape',
      ],
    ];
    for (const [u, body, reason] of cases) {
      const r = await http(u, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      expect([r.status, r.body.code, r.body.detail?.reason]).toEqual([400, 'E_SERVE_INPUT', reason]);
    }
    // as deep as the largest rank is still data
    const eight = await http(url(), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":${deep('1', 8)}}]}`,
    });
    expect([eight.status, eight.body.outputs?.[0].data]).toEqual([200, [2]]);
    expect((await http(`${s.url}/v2/health/ready`)).status).toBe(200);
  });

  it('binary framing errors, a huge body, a non-image body, an empty body', async () => {
    const f = new Uint8Array(new Float32Array([1, 2]).buffer);
    const hdr = { inputs: [{ name: 'x', shape: [2], datatype: 'FP32', parameters: { binary_data_size: 8 } }] };
    const short = binaryRequest(hdr, [f.subarray(0, 4)]);
    expect((await http(url(), { method: 'POST', ...short })).body.code).toBe('E_SERVE_REQUEST');
    const extra = binaryRequest(hdr, [f, f]);
    expect((await http(url(), { method: 'POST', ...extra })).body.code).toBe('E_SERVE_REQUEST');
    const noHeader = binaryRequest(hdr, [f]);
    delete noHeader.headers['inference-header-content-length'];
    expect((await http(url(), { method: 'POST', ...noHeader })).body.code).toBe('E_SERVE_REQUEST');
    // the header's length in decimal digits only: Number() reads hex, exponents and spaces too
    const length = binaryRequest(hdr, [f]).headers['inference-header-content-length'];
    for (const spelt of [`0x${Number(length).toString(16)}`, `${Number(length) / 10}e1`, `+${length}`]) {
      const odd = binaryRequest(hdr, [f]);
      odd.headers['inference-header-content-length'] = spelt;
      const r = await http(url(), { method: 'POST', ...odd });
      expect([spelt, r.status, r.body.code]).toEqual([spelt, 400, 'E_SERVE_REQUEST']);
    }
    const wrongSize = binaryRequest(
      { inputs: [{ name: 'x', shape: [3], datatype: 'FP32', parameters: { binary_data_size: 8 } }] },
      [f],
    );
    expect((await http(url(), { method: 'POST', ...wrongSize })).body.detail?.reason).toBe('size');
    const huge = await http(url(), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: Buffer.alloc(5 * 1024 * 1024, 32),
    });
    expect([huge.status, huge.body.code]).toEqual([413, 'E_SERVE_BODY_TOO_LARGE']);
    const run = `${s.url}/xpkg/models/detector/run`;
    const notImage = await http(run, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: 'not an image at all',
    });
    // as `xpkg run` says of the same bytes
    expect([notImage.status, notImage.body.error.code]).toEqual([400, 'E_RUN_INPUT_FORMAT']);
    const empty = await http(run, { method: 'POST', headers: { 'content-type': 'image/png' }, body: '' });
    expect([empty.status, empty.body.error.code]).toEqual([400, 'E_SERVE_INPUT']);
    const tensorModel = await http(`${s.url}/xpkg/models/${ADD}/run`, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: await png(),
    });
    expect([tensorModel.status, tensorModel.body.error.code]).toEqual([400, 'E_SERVE_INPUT']);
  });

  it('a slow client is cut off (408) within the request timeout; a normal request right after succeeds', async () => {
    const t0 = performance.now();
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = connect(Number(new URL(s.url).port), '127.0.0.1');
      let got = '';
      sock.on('data', (d) => (got += d.toString()));
      sock.on('close', () => resolve(got));
      sock.on('error', reject);
      sock.write(
        `POST /v2/models/${ADD}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"inputs":`,
      );
      const drip = setInterval(() => sock.write(' '), 200); // a byte now and then: never the whole body
      sock.on('close', () => clearInterval(drip));
    });
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    expect(performance.now() - t0).toBeLessThan(5000);
    const ok = await postJson(`${s.url}/v2/models/${ADD}/infer`, {
      inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [3] }],
    });
    expect(ok.body.outputs[0].data).toEqual([4]);
    expect((await http(`${s.url}/v2/health/ready`)).status).toBe(200);
  });

  it('a full queue answers 429 at once with Retry-After; the others are served', async () => {
    const bytes = await png();
    const replies = await Promise.all(
      Array.from({ length: 8 }, () =>
        http(`${s.url}/xpkg/models/detector/run`, {
          method: 'POST',
          headers: { 'content-type': 'image/png' },
          body: bytes,
        }),
      ),
    );
    const codes = replies.map((r) => r.status).sort();
    expect(codes.filter((c) => c === 200).length).toBeGreaterThanOrEqual(3); // 1 running + 2 queued
    const full = replies.filter((r) => r.status === 429);
    expect(full.length).toBeGreaterThan(0);
    for (const r of full) {
      expect(r.body.error.code).toBe('E_SERVE_QUEUE_FULL');
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }
    expect(codes.every((c) => c === 200 || c === 429)).toBe(true);
  });
});

describe('observability', () => {
  it('/metrics counts requests by code and times stages; logs are JSON lines with the request id', async () => {
    const r = await postJson(
      `${s.url}/v2/models/${ADD}/infer`,
      { inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [1] }] },
      { 'x-request-id': 'trace-abc.1' },
    );
    expect(r.headers.get('x-request-id')).toBe('trace-abc.1');
    const line = s.lines.find((l) => l.reqId === 'trace-abc.1');
    expect(line).toMatchObject({
      msg: 'request',
      status: 200,
      model: ADD,
      version: addId,
      url: `/v2/models/${ADD}/infer`,
    });
    // how long the body took to arrive, beside the whole request's time
    expect(line!.receiveMs).toBeGreaterThanOrEqual(0);
    expect(line!.receiveMs).toBeLessThanOrEqual(line!.ms as number);
    // a name from the client's URL never becomes a label, the body's receive time included
    const unknown = await postJson(`${s.url}/v2/models/no-such-model-7f3/infer`, {
      inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [1] }],
    });
    expect(unknown.status).toBe(404);
    const m = (await http(`${s.url}/metrics`)).raw.toString();
    expect(m).not.toContain('no-such-model-7f3');
    expect(m).toMatch(
      /xpkg_serve_requests_total\{route="\/v2\/models\/:name\/infer",status="400",code="E_SERVE_INPUT",model=""\} [1-9]/,
    );
    expect(m).toMatch(
      /xpkg_serve_requests_total\{route="\/xpkg\/models\/:name\/run",status="429",code="E_SERVE_QUEUE_FULL"/,
    );
    for (const stage of ['receive', 'queue', 'worker', 'infer:detector', 'decode'])
      expect(m).toContain(`xpkg_serve_stage_duration_seconds_count{model="detector",stage="${stage}"}`);
    expect(m).toMatch(/xpkg_serve_loaded_versions\{model="detector"\} 1/);
    expect(m).toMatch(/xpkg_serve_swap_events_total\{model="detector",event="loaded"\} 1/);
    expect(m).toMatch(/xpkg_serve_queue_depth\{model="detector"\} 0/);
  });
});

describe('threads and dynamic batching', () => {
  it('a thread-isolated server joins concurrent requests of a batchable model and gives each its own rows', async () => {
    const repo = tempDir('xpkg-serve-repo-');
    await copyFile('fixtures/dist/multi-variant.xpkg', join(repo, 'multi-variant.xpkg'));
    const t = await testServer({ repo, isolation: 'thread', concurrency: 1, batch: { max: 8, delayMs: 20 } });
    try {
      const replies = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          postJson(`${t.url}/v2/models/${ADD}/infer`, {
            inputs: [
              {
                name: 'x',
                shape: [(i % 3) + 1],
                datatype: 'FP32',
                data: Array.from({ length: (i % 3) + 1 }, () => i * 0.5),
              },
            ],
          }),
        ),
      );
      replies.forEach((r, i) =>
        expect(r.body.outputs[0].data).toEqual(Array.from({ length: (i % 3) + 1 }, () => i * 0.5 + 1)),
      );
      expect(Math.max(...replies.map((r) => r.body.parameters.batched))).toBeGreaterThan(1);
    } finally {
      await t.close();
    }
  });
});
