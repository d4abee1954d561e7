/**
 * Compressed request bodies (`Content-Encoding: gzip | deflate`, as Triton's clients send with
 * request compression): JSON, the binary extension (its header length counts decompressed bytes)
 * and the raw-image route read them like plain bodies; a corrupt or cut stream is a 400, an encoding
 * not taken a 415, and a small body that decompresses past the body limit a 413. Real HTTP on
 * loopback against the real fixture packages; the daemon answers the next request after each.
 */
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { binaryRequest, http, parseBinaryReply, type TestServer, testServer } from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

const ADD = 'multi-variant-add-one';
let s: TestServer;
const infer = () => `${s.url}/v2/models/${ADD}/infer`;
const body = (b: Buffer) => new Uint8Array(b.buffer as ArrayBuffer, b.byteOffset, b.length);
const addRequest = (xs: number[]) =>
  Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [xs.length], datatype: 'FP32', data: xs }] }));

beforeAll(async () => {
  const repo = tempDir('xpkg-serve-enc-');
  await copyFile('fixtures/dist/multi-variant.xpkg', join(repo, 'multi-variant.xpkg'));
  await copyFile('fixtures/dist/detector.xpkg', join(repo, 'detector.xpkg'));
  s = await testServer({ repo, bodyLimit: 1024 * 1024 });
});
afterAll(async () => s?.close());

/** The daemon still answers a plain request. */
async function healthy() {
  const r = await http(infer(), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: body(addRequest([5])),
  });
  expect([r.status, r.body.outputs[0].data]).toEqual([200, [6]]);
}

describe('compressed request bodies', () => {
  it('JSON gzip (with a content type) and deflate (without one, as Python clients send) answer like plain JSON', async () => {
    const plain = addRequest([1, 2, 3]);
    const gz = await http(infer(), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: body(gzipSync(plain)),
    });
    expect([gz.status, gz.body.outputs[0].data]).toEqual([200, [2, 3, 4]]);
    const df = await http(infer(), {
      method: 'POST',
      headers: { 'content-encoding': 'Deflate' },
      body: body(deflateSync(plain)),
    });
    expect([df.status, df.body.outputs[0].data]).toEqual([200, [2, 3, 4]]);
  });

  it('the binary extension gzipped: the header length counts the decompressed JSON, tensors come back binary', async () => {
    // values the package's int8 variant holds exactly (multiples of 1/16 in [-2, 2)), chosen on VNNI hosts
    const xs = new Float32Array(10_000).map((_, i) => ((i % 64) - 32) / 16);
    const req = binaryRequest(
      {
        inputs: [{ name: 'x', shape: [xs.length], datatype: 'FP32', parameters: { binary_data_size: xs.byteLength } }],
        outputs: [{ name: 'y', parameters: { binary_data: true } }],
      },
      [new Uint8Array(xs.buffer)],
    );
    const r = await http(infer(), {
      method: 'POST',
      headers: { ...req.headers, 'content-encoding': 'gzip' },
      body: body(gzipSync(Buffer.from(req.body))),
    });
    expect(r.status).toBe(200);
    const y = parseBinaryReply(r).outputs.y;
    const got = new Float32Array(y.buffer.slice(y.byteOffset, y.byteOffset + y.length));
    expect(Array.from(got)).toEqual(Array.from(xs, (v) => v + 1));
  });

  it('the raw-image route takes a gzipped image and answers as for the plain one', async () => {
    const png = await readFile('fixtures/detector/eval/000.png');
    const run = (b: Buffer, headers: Record<string, string>) =>
      http(`${s.url}/xpkg/models/detector/run`, {
        method: 'POST',
        headers: { 'content-type': 'image/png', ...headers },
        body: body(b),
      });
    const plain = await run(png, {});
    const gz = await run(gzipSync(png), { 'content-encoding': 'gzip' });
    expect(plain.status).toBe(200);
    expect([gz.status, gz.body.outputs]).toEqual([200, plain.body.outputs]);
  });

  it('corrupt or cut streams are 400 E_SERVE_REQUEST; an encoding not taken is 415; the daemon goes on', async () => {
    const gz = gzipSync(addRequest([1, 2]));
    const bad = Buffer.from(gz);
    bad[gz.length >> 1] ^= 0xff;
    const cases: [string, Buffer, string, number, string][] = [
      ['corrupt gzip', bad, 'gzip', 400, 'E_SERVE_REQUEST'],
      ['cut gzip', gz.subarray(0, gz.length - 6), 'gzip', 400, 'E_SERVE_REQUEST'],
      ['not deflate at all', addRequest([1]), 'deflate', 400, 'E_SERVE_REQUEST'],
      ['brotli', gz, 'br', 415, 'E_SERVE_MEDIA_TYPE'],
      ['two encodings', gz, 'gzip, gzip', 415, 'E_SERVE_MEDIA_TYPE'],
    ];
    for (const [what, b, enc, status, code] of cases) {
      for (const type of ['application/json', 'application/octet-stream']) {
        const r = await http(infer(), {
          method: 'POST',
          headers: { 'content-type': type, 'content-encoding': enc },
          body: body(b),
        });
        expect([what, type, r.status, r.body.code]).toEqual([what, type, status, code]);
      }
      await healthy();
    }
  });

  it('a small body that decompresses past the body limit is 413, as a plain one that large', async () => {
    // 8 MiB of JSON whitespace in ~8 KiB of gzip: the limit (1 MiB) holds for what it decompresses to
    const bomb = gzipSync(Buffer.concat([Buffer.from('{"inputs":'), Buffer.alloc(8 << 20, 0x20), Buffer.from('[]}')]));
    expect(bomb.length).toBeLessThan(64 * 1024);
    for (const type of ['application/json', 'application/octet-stream']) {
      const r = await http(infer(), {
        method: 'POST',
        headers: { 'content-type': type, 'content-encoding': 'gzip' },
        body: body(bomb),
      });
      expect([type, r.status, r.body.code]).toEqual([type, 413, 'E_SERVE_BODY_TOO_LARGE']);
      await healthy();
    }
  });
});
