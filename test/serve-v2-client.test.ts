/**
 * `xpkg serve` against an independent Open Inference Protocol client: test/helpers/v2_client.py,
 * written from the published texts (KServe's required_api.md, Triton's binary tensor data,
 * classification and model repository extensions) with Python's standard library over raw sockets,
 * sharing no code with the daemon. Each check prints what it observed; the expectations here are the
 * protocol's (statuses, error codes, shapes), never messages.
 */
import { execFile } from 'node:child_process';
import { copyFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestServer, testServer, versionedPackage } from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

const ADD = 'multi-variant-add-one';
let s: TestServer;

beforeAll(async () => {
  const repo = tempDir('xpkg-serve-v2-');
  await copyFile('fixtures/dist/multi-variant.xpkg', join(repo, 'multi-variant.xpkg'));
  await copyFile('fixtures/dist/detector.xpkg', join(repo, 'detector.xpkg'));
  // a file that is no package: refused, listed in the repository index with its reason
  await writeFile(join(repo, 'broken.xpkg'), 'not a package');
  await copyFile(await versionedPackage({ sequence: 1, k: 1, name: '@acme/add-one' }), join(repo, 'scoped.xpkg'));
  s = await testServer({ repo, repositoryApi: true, requestTimeoutMs: 1500 });
});
afterAll(async () => s?.close());

/** Runs one check of the client against the server and returns what it observed. */
function check(name: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    execFile(
      'python3',
      ['test/helpers/v2_client.py', s.url, name],
      { timeout: 20_000, env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`${name}: ${err.message}\n${stderr}`));
        const line = JSON.parse(stdout.trim().split('\n').pop()!);
        if (!line.ok) return reject(new Error(`${name}: the client failed: ${line.got}`));
        resolve(line.got);
      },
    );
  });
}

const E = (status: number, code: string) => [status, code, true];

describe('the V2 protocol as an independent client speaks it', () => {
  it('health, server and model metadata in the published shapes', async () => {
    const got = await check('endpoints');
    expect(got).toMatchObject({
      live: [200, { live: true }],
      ready: [200, { ready: true }],
      server: ['extensions', 'name', 'version'],
      metadata: {
        name: ADD,
        platform: 'xpkg',
        inputs: [{ name: 'x', datatype: 'FP32', shape: [-1] }],
        outputs: [{ name: 'y', datatype: 'FP32', shape: [-1] }],
      },
      version_metadata: ADD,
      model_ready: { name: ADD, ready: true },
      version_ready: 200,
    });
  });

  it('JSON tensors: id echoed, flat and nested data alike, an output subset', async () => {
    expect(await check('infer_json')).toEqual({
      status: [200, 200, 200],
      content_type: 'application/json',
      id: '42',
      model_name: ADD,
      outputs: [{ name: 'y', shape: [4], datatype: 'FP32', data: [2, 3, 4, 5] }],
      nested_same: true,
      subset: ['y'],
    });
  });

  it('binary tensors in and out, whatever the content type the header length comes with', async () => {
    expect(await check('infer_binary')).toEqual({
      'in:application/octet-stream': [200, [2, 3, 4]],
      // the extension is signalled by Inference-Header-Content-Length, not by the content type
      'in:application/json': [200, [2, 3, 4]],
      'in:None': [200, [2, 3, 4]],
      out: [200, 'application/octet-stream', 'FP32', [3], [2, 3, 4]],
      json_in_binary_out: [2],
      override: [null, [2]],
    });
  });

  it('BYTES tensors: 4-byte little-endian lengths in binary, base64 in JSON', async () => {
    expect(await check('bytes_tensors')).toEqual({
      binary: [200, 'BYTES', [1], 1, true],
      json: [200, 'BYTES', true],
      two_elements: E(400, 'E_SERVE_INPUT'),
    });
  });

  it('every bad request is a 4xx with the error object and a code; the server stays healthy', async () => {
    expect(await check('errors')).toEqual({
      wrong_datatype: E(400, 'E_SERVE_INPUT'),
      wrong_shape: E(400, 'E_SERVE_INPUT'),
      wrong_count: E(400, 'E_SERVE_INPUT'),
      missing_input: E(400, 'E_SERVE_REQUEST'),
      unknown_input: E(400, 'E_SERVE_INPUT'),
      unknown_output: E(400, 'E_SERVE_REQUEST'),
      unknown_model: E(404, 'E_SERVE_MODEL_UNKNOWN'),
      // a name or version of any form that the server does not hold is unknown, not malformed
      unknown_model_odd_name: E(404, 'E_SERVE_MODEL_UNKNOWN'),
      unknown_version: E(404, 'E_SERVE_VERSION_UNKNOWN'),
      unknown_version_1: E(404, 'E_SERVE_VERSION_UNKNOWN'),
      metadata_version_1: E(404, 'E_SERVE_VERSION_UNKNOWN'),
      bad_json: E(400, 'E_SERVE_REQUEST'),
      empty_body: E(400, 'E_SERVE_REQUEST'),
      header_length_too_long: E(400, 'E_SERVE_REQUEST'),
      header_length_not_a_number: E(400, 'E_SERVE_REQUEST'),
      truncated_binary: E(400, 'E_SERVE_REQUEST'),
      extra_bytes: E(400, 'E_SERVE_REQUEST'),
      data_and_binary_size: E(400, 'E_SERVE_REQUEST'),
      parameter_not_scalar: E(400, 'E_SERVE_REQUEST'),
      input_parameter_not_scalar: E(400, 'E_SERVE_REQUEST'),
      proto_key: E(400, 'E_SERVE_REQUEST'),
      binary_data_output_not_bool: E(400, 'E_SERVE_REQUEST'),
      // an extension the server does not implement is refused, not ignored
      shared_memory_output: E(400, 'E_SERVE_REQUEST'),
      gzip_corrupt: E(400, 'E_SERVE_REQUEST'),
      encoding_unknown: E(415, 'E_SERVE_MEDIA_TYPE'),
      healthy_after: 200,
    });
  });
});

describe('paths as clients write them', () => {
  it('a scoped model: the slash as it is, @ as it is or %40, or the whole name encoded', async () => {
    const served = (name: string) => [200, name, 200, name, 200];
    expect(await check('scoped')).toEqual({
      raw: served('@acme/add-one'),
      at_encoded: served('@acme/add-one'),
      all_encoded: served('@acme/add-one'),
      unknown: E(404, 'E_SERVE_MODEL_UNKNOWN'),
    });
  });
});

describe('HTTP as the client uses it', () => {
  it('keep-alive: a malformed body does not end the connection of the requests after it', async () => {
    expect(await check('keepalive')).toEqual({ count: 60, statuses: ['200', '400'] });
  });

  it('pipelined requests with refused ones among them: every one answered, in order', async () => {
    const status: Record<number, number> = { 4: 400, 6: 415, 8: 400 };
    expect(await check('pipelined')).toEqual(Array.from({ length: 10 }, (_, i) => [`p${i}`, status[i] ?? 200]));
  });

  it('100-continue, chunked and compressed bodies, HEAD, OPTIONS, a wrong method', async () => {
    expect(await check('transport')).toEqual({
      continue: [100, 200],
      continue_too_large: E(413, 'E_SERVE_BODY_TOO_LARGE'),
      continue_unknown_model: E(404, 'E_SERVE_MODEL_UNKNOWN'),
      chunked_json: 200,
      chunked_binary: 200,
      gzip: [200, [2, 3]],
      deflate: [200, [2, 3]],
      head_ready: [200, 0],
      options_infer: [204, true],
      get_infer: [...E(405, 'E_SERVE_METHOD'), true],
      post_live: E(405, 'E_SERVE_METHOD'),
      no_route: E(404, 'E_SERVE_NOT_FOUND'),
    });
  });

  it('bytes that are not HTTP, a body cut short, huge headers: the error object with a code', async () => {
    expect(await check('client_errors')).toEqual({
      not_http: [...E(400, 'E_SERVE_REQUEST'), 'application/json'],
      cut_short: [...E(400, 'E_SERVE_REQUEST'), 'application/json'],
      huge_headers: [...E(431, 'E_SERVE_HEADERS_TOO_LARGE'), 'application/json'],
      healthy_after: 200,
    });
  });

  it('a slow client: 408 with the error object, then the next request is served', async () => {
    expect(await check('slow_client')).toEqual({ answer: E(408, 'E_SERVE_SLOW_CLIENT'), healthy_after: 200 });
  });

  it('concurrent requests each get their own answer', async () => {
    expect(await check('concurrent')).toEqual(Array(16).fill(true));
  });
});

describe('extensions', () => {
  it('classification: the top classes as "value:index" BYTES, in JSON and binary', async () => {
    expect(await check('classification')).toEqual({
      extensions: ['binary_tensor_data', 'classification', 'model_repository'],
      json: [200, 'BYTES', [2], ['1', '2'], [6, 4]],
      binary: [[2], true],
      zero: E(400, 'E_SERVE_REQUEST'),
      not_a_tensor: E(400, 'E_SERVE_REQUEST'),
    });
  });

  it("model repository: Triton's clients' bodies, string fields in the index", async () => {
    expect(await check('repository')).toEqual({
      index_types: ['name,reason,state', 'name,state,version'],
      refused: ['broken', 'UNAVAILABLE'],
      index_strings: true,
      ready_only: true,
      unload: [200, 400],
      load: [200, 200, 200],
      load_config: E(400, 'E_SERVE_REQUEST'),
    });
  });

  it('model repository: an empty body is no options, whatever its content type; a body that is not JSON is 400', async () => {
    expect(await check('repository_bodies')).toEqual({
      // Go's and generic clients post an empty body as application/json, `curl -d ''` as a form
      index_empty_json: true,
      index_empty_form: true,
      index_text: true,
      unload_load: [200, 400, 200, 200],
      not_json: E(400, 'E_SERVE_REQUEST'),
      proto_key: E(400, 'E_SERVE_REQUEST'),
    });
  });
});
