/**
 * `xpkg serve` against an independent Open Inference Protocol client: test/helpers/v2_client.py,
 * written from the published texts (KServe's required_api.md, Triton's binary tensor data,
 * classification and model repository extensions) with Python's standard library over raw sockets,
 * sharing no code with the daemon. Each check prints what it observed; the expectations here are the
 * protocol's (statuses, error codes, shapes), never messages.
 */
import { execFile } from 'node:child_process';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestServer, testServer } from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

let s: TestServer;

beforeAll(async () => {
  const repo = tempDir('xpkg-serve-v2-');
  await copyFile('fixtures/dist/multi-variant.xpkg', join(repo, 'multi-variant.xpkg'));
  await copyFile('fixtures/dist/detector.xpkg', join(repo, 'detector.xpkg'));
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
