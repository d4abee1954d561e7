/**
 * `xpkg serve` at the HTTP transport level, from raw sockets on loopback: pipelined requests ahead of
 * bytes that are not HTTP, a request that asked to close, CONNECT, absolute-form targets, OPTIONS *,
 * a request without Host, `Expect: 100-continue` refused before the upload, request smuggling shapes
 * and clients that reset. Each case: the status, the daemon's error JSON and code, and a normal
 * request served right after.
 */
import { copyFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codes, exchange } from './helpers/raw-http.js';
import { postJson, type TestServer, testServer } from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

const M = 'multi-variant-add-one';
const BODY = JSON.stringify({ inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [2] }] });
const LIVE = 'GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n';
const LIVE_CLOSE = 'GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
/** One JSON infer (x = 2), with `more` header lines. */
const infer = (more = '', target = `/v2/models/${M}/infer`) =>
  `POST ${target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${more}Content-Length: ${BODY.length}\r\n\r\n${BODY}`;
/** A request that waits for `Expect: 100-continue` before sending its body (the body is never sent). */
const expecting = (method: string, target: string, type = 'application/json') =>
  `${method} ${target} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Type: ${type}\r\nContent-Length: ${BODY.length}\r\n\r\n`;

let s: TestServer;

beforeAll(async () => {
  const repo = tempDir('xpkg-serve-transport-');
  await copyFile('fixtures/dist/multi-variant.xpkg', join(repo, 'adder.xpkg'));
  // short timeouts: a case that would wait for a body or a close fails within the test's time
  s = await testServer({ repo, requestTimeoutMs: 3000, headersTimeoutMs: 2000, keepAliveTimeoutMs: 2000 });
});
afterAll(async () => s?.close());

/** A normal request right after a case: served. */
async function served(): Promise<void> {
  const r = await postJson(`${s.url}/v2/models/${M}/infer`, JSON.parse(BODY));
  expect([r.status, r.body.outputs[0].data]).toEqual([200, [3]]);
}

describe('pipelined requests and what follows them', () => {
  it('requests read before bytes that are not HTTP are answered first, in order, then 400 and the close', async () => {
    const x = await exchange(s.url, [`${infer()}${infer()}GARBAGE\r\n\r\n`]);
    expect(codes(x)).toEqual([
      [200, null],
      [200, null],
      [400, 'E_SERVE_REQUEST'],
    ]);
    expect(x.answers[1].json.outputs[0].data).toEqual([3]);
    expect(x.closed).toBe(true);
    // a body one byte longer than its Content-Length: the byte is the next request, not HTTP
    const longer = await exchange(s.url, [`${infer()}}\r\n\r\n`]);
    expect(codes(longer)).toEqual([
      [200, null],
      [400, 'E_SERVE_REQUEST'],
    ]);
    await served();
  });

  it('bytes after a request that asked to close are no request: its answer is the last, then the close', async () => {
    const x = await exchange(s.url, [LIVE_CLOSE + LIVE]);
    expect(codes(x)).toEqual([[200, null]]);
    expect([x.closed, x.rest.length]).toEqual([true, 0]);
    const y = await exchange(s.url, [infer('Connection: close\r\n') + infer()]);
    expect(codes(y)).toEqual([[200, null]]);
    expect(y.answers[0].json.outputs[0].data).toEqual([3]);
    await served();
  });
});

describe('methods and request targets', () => {
  it('CONNECT is 405 E_SERVE_METHOD with Allow and the error JSON, not a silent close', async () => {
    const proxy = await exchange(s.url, ['CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n']);
    expect(codes(proxy)).toEqual([[405, 'E_SERVE_METHOD']]);
    expect(proxy.answers[0].headers.allow).toBe('');
    const path = await exchange(s.url, ['CONNECT /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n']);
    expect(codes(path)).toEqual([[405, 'E_SERVE_METHOD']]);
    expect(path.answers[0].headers.allow).toBe('GET, HEAD, OPTIONS');
    expect(path.answers[0].headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    await served();
  });

  it('absolute-form targets are routed as the path they name: 405 and OPTIONS with Allow, scoped names, V2 errors', async () => {
    const x = await exchange(s.url, [
      'PUT http://x/v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n',
      'OPTIONS HTTP://x:80/v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET http://x/v2/models/@acme/nope/ready HTTP/1.1\r\nHost: x\r\n\r\n',
      infer('', `http://x/v2/models/${M}/infer`),
      `POST http://x/v2/models/${M}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
    ]);
    expect(codes(x)).toEqual([
      [405, 'E_SERVE_METHOD'],
      [204, null],
      [404, 'E_SERVE_MODEL_UNKNOWN'],
      [200, null],
      [400, 'E_SERVE_REQUEST'],
    ]);
    expect([x.answers[0].headers.allow, x.answers[1].headers.allow]).toEqual([
      'GET, HEAD, OPTIONS',
      'GET, HEAD, OPTIONS',
    ]);
    expect(x.answers[2].json.detail.model).toBe('@acme/nope');
    // the V2 shape: the summary as `error`, the code beside it
    expect(typeof x.answers[4].json.error).toBe('string');
    await served();
  });

  it('OPTIONS * is 204 with every method the server takes', async () => {
    const x = await exchange(s.url, [`OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n${LIVE_CLOSE}`]);
    expect(codes(x)).toEqual([
      [204, null],
      [200, null],
    ]);
    expect(x.answers[0].headers.allow).toBe('GET, HEAD, OPTIONS, POST');
  });

  it('an HTTP/1.1 request without Host is 400 with the error JSON; the connection goes on (HTTP/1.0 needs none)', async () => {
    const x = await exchange(s.url, [
      'GET /v2/health/live HTTP/1.1\r\n\r\n',
      infer().replace('Host: x\r\n', ''),
      LIVE_CLOSE,
    ]);
    expect(codes(x)).toEqual([
      [400, 'E_SERVE_REQUEST'],
      [400, 'E_SERVE_REQUEST'],
      [200, null],
    ]);
    const old = await exchange(s.url, ['GET /v2/health/live HTTP/1.0\r\n\r\n']);
    expect(codes(old)).toEqual([[200, null]]);
    await served();
  });
});

describe('Expect: 100-continue', () => {
  it('a request refused whatever its body gets its 4xx instead of a 100, and the close; a served one its 100', async () => {
    const cases: [string, string, string, number, string][] = [
      ['unknown version', 'POST', `/v2/models/${M}/versions/ffffffff/infer`, 404, 'E_SERVE_VERSION_UNKNOWN'],
      ["the run route's unknown model", 'POST', '/xpkg/models/nope/run', 404, 'E_SERVE_MODEL_UNKNOWN'],
      ['a scoped unknown model', 'POST', '/xpkg/models/@acme/nope/run', 404, 'E_SERVE_MODEL_UNKNOWN'],
      ['a wrong method', 'PUT', `/v2/models/${M}/infer`, 405, 'E_SERVE_METHOD'],
      ['no route', 'POST', '/v2/models', 404, 'E_SERVE_NOT_FOUND'],
    ];
    for (const [what, method, target, status, code] of cases) {
      const x = await exchange(s.url, [expecting(method, target)], { waitMs: 2500 });
      expect([what, codes(x), x.closed]).toEqual([what, [[status, code]], true]);
      if (status === 405) expect(x.answers[0].headers.allow).toBe('OPTIONS, POST');
    }
    const ok = await exchange(s.url, [expecting('POST', `/v2/models/${M}/infer`), BODY, LIVE_CLOSE], {
      delayMs: 200,
    });
    expect(codes(ok)).toEqual([
      [100, null],
      [200, null],
      [200, null],
    ]);
    await served();
  });
});

describe('smuggling shapes and resets', () => {
  it('ambiguous framing is 400 and the close; resets mid-body and mid-response leave nothing in flight', async () => {
    const post = `POST /v2/models/${M}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n`;
    for (const framing of [
      `Content-Length: ${BODY.length}\r\nContent-Length: 5\r\n\r\n${BODY}`,
      `Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      `Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n`,
      `Transfer-Encoding: chunked\r\n\r\n2\r\n${BODY}\r\n0\r\n\r\n`,
    ]) {
      const x = await exchange(s.url, [post + framing + LIVE]);
      expect([framing, codes(x), x.closed]).toEqual([framing, [[400, 'E_SERVE_REQUEST']], true]);
    }
    // a chunked body with a chunk extension and a trailer is served
    const chunked = `${post}Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\n${BODY.slice(0, 5)}\r\n${(BODY.length - 5).toString(16)}\r\n${BODY.slice(5)}\r\n0\r\nX-Trailer: 1\r\n\r\n`;
    expect(codes(await exchange(s.url, [chunked + LIVE_CLOSE]))).toEqual([
      [200, null],
      [200, null],
    ]);
    // 1 MiB binary bodies cut mid-body, and whole requests whose client resets as the answer starts
    const n = 1 << 18;
    const header = JSON.stringify({
      inputs: [{ name: 'x', shape: [n], datatype: 'FP32', parameters: { binary_data_size: n * 4 } }],
    });
    const head = `POST /v2/models/${M}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nInference-Header-Content-Length: ${header.length}\r\nContent-Length: ${header.length + n * 4}\r\n\r\n${header}`;
    const u = new URL(s.url);
    const reset = (bytes: number) =>
      new Promise<void>((done) => {
        const sock = connect(Number(u.port), u.hostname);
        sock.on('error', () => {});
        sock.write(head);
        sock.write(Buffer.alloc(bytes), () =>
          setTimeout(() => {
            sock.resetAndDestroy();
            done();
          }, 5),
        );
      });
    for (let i = 0; i < 8; i++) await Promise.all([reset(n * 2), reset(n * 4)]);
    await served();
    const m = s.metrics.registry;
    const gauge = async (name: string) =>
      (await m.getSingleMetric(name)!.get()).values.find((v) => v.labels.model === M)?.value;
    expect([await gauge('xpkg_serve_inflight'), await gauge('xpkg_serve_queue_depth')]).toEqual([0, 0]);
    // each request its client closed is counted (499, code aborted), with its model once known
    const counted = (await m.getSingleMetric('xpkg_serve_requests_total')!.get()).values
      .filter((v) => v.labels.status === 499 && v.labels.code === 'aborted')
      .reduce((a, v) => a + v.value, 0);
    expect(counted).toBeGreaterThanOrEqual(8);
  });
});
