/**
 * The daemon's observability against inputs nobody shows us: `/metrics` stays valid exposition text
 * (a strict parser, test/helpers/prom-text.ts) and does not grow with what clients send (URLs,
 * request ids, unknown names and versions are never label values); every request, those the router
 * or Node's HTTP parser refuse included, gets one JSON log line with a request id of bounded form;
 * no token is logged; a bug every request hits logs its stack once; text logs escape what came from
 * outside; readiness and the swap metrics follow what happened.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, rename, unlink, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OWN, type RawServer, rawRequest, rawServer, sample, scrape } from './helpers/observe.js';
import { labelValues, seriesKeys } from './helpers/prom-text.js';
import { dropIn, http, postJson, until, versionedPackage } from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

/** Every character the manifest schema allows in a name, at the longest it allows (spec/manifest.schema.json). */
const SCOPE = `0${'.9_a-z'.repeat(11)}`.slice(0, 64);
const NAME = `@${SCOPE}/${`a.b_c-z09${'x'.repeat(128)}`.slice(0, 128)}`;
const ENC = encodeURIComponent(NAME);
const REPO_TOKEN = `repo-${randomBytes(8).toString('hex')}`;
const FABRIC_TOKEN = `fab-${randomBytes(16).toString('hex')}`;
/** Marks every client-chosen string: none may show up as a label value. */
const MARK = 'q7x';
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const infer = { inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [1] }] };
const tok = () => `${MARK}${randomBytes(5).toString('hex')}`;

let s: RawServer;
beforeAll(async () => {
  const repo = tempDir('xpkg-obs-repo-');
  await copyFile(await versionedPackage({ sequence: 1, k: 1, name: NAME }), join(repo, 'scoped.xpkg'));
  s = await rawServer({
    repo,
    isolation: 'thread',
    repositoryApi: true,
    repositoryToken: REPO_TOKEN,
    fabricToken: FABRIC_TOKEN,
  });
  await s.ready;
});
afterAll(() => s?.close());

/** One of each request a client may send wrongly, each with fresh client-chosen strings. */
function hostile(i: number): () => Promise<unknown> {
  const t = tok();
  const kinds: (() => Promise<unknown>)[] = [
    () => postJson(`${s.url}/v2/models/${t}/infer`, infer),
    () => postJson(`${s.url}/v2/models/${encodeURIComponent(`@${t}/"\\\n${t}`)}/infer`, infer),
    () => postJson(`${s.url}/v2/models/${ENC}/versions/${t}/infer`, infer),
    () => http(`${s.url}/v2/models/${t}/versions/1/ready`),
    () => http(`${s.url}/${t}/${t}?${t}=1`),
    () => http(`${s.url}/v2/health/ready?${t}`, { method: 'DELETE' }),
    () => http(`${s.url}/v2/models/%ZZ${t}/infer`, { method: 'POST' }),
    () => http(`${s.url}/v2/models/${t.repeat(30)}/infer`, { method: 'POST' }),
    () => http(`${s.url}/v2/health/ready`, { headers: { 'x-request-id': `"${t}\\"}` } }),
    () => http(`${s.url}/v2/health/ready`, { headers: { 'x-request-id': t.repeat(20) } }),
    () => http(`${s.url}/v2/repository/index`, { method: 'POST', headers: { authorization: `Bearer ${t}` } }),
    () => postJson(`${s.url}/v2/models/${ENC}/infer`, { inputs: [{ name: t, shape: [1], datatype: 'FP32' }] }),
  ];
  return kinds[i % kinds.length];
}

/** What fetch cannot send: bytes that are not HTTP, a header Node refuses, headers over the limit. */
const malformed = () => [
  `GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nx-request-id: "${tok()}\nforged\r\n\r\n`,
  `GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nx-request-id: ${tok().repeat(3000)}\r\n\r\n`,
  `\x16\x03\x01${tok()}\r\n\r\n`,
];

async function flood(n: number, concurrency = 4): Promise<void> {
  for (let i = 0; i < n; i += concurrency)
    await Promise.all(Array.from({ length: Math.min(concurrency, n - i) }, (_, j) => hostile(i + j)()));
}

describe('metrics and logs under hostile requests', () => {
  it('/metrics stays valid and does not grow with unknown names, versions, URLs or request ids', async () => {
    expect((await postJson(`${s.url}/v2/models/${ENC}/infer`, infer)).status).toBe(200);
    expect((await postJson(`${s.url}/v2/models/${NAME}/infer`, infer)).status).toBe(200);
    await flood(24);
    for (const b of malformed()) expect(await rawRequest(s.url, b)).toMatch(/^HTTP\/1\.1 4\d\d /);
    await scrape(s.url); // its own request's series first
    const before = await scrape(s.url);
    const own = (f: typeof before) => new Map([...f].filter(([k]) => OWN.includes(k)));
    const unknown = { route: '/v2/models/:name/infer', status: '404', code: 'E_SERVE_MODEL_UNKNOWN', model: '' };
    const n0 = sample(before, 'xpkg_serve_requests_total', unknown) ?? 0;

    await flood(1200);
    for (let i = 0; i < 6; i++) for (const b of malformed()) await rawRequest(s.url, b);
    const after = await scrape(s.url);
    expect([...seriesKeys(own(after))]).toEqual([...seriesKeys(own(before))]);
    // the 404s were counted, under the route's pattern and no model
    expect(sample(after, 'xpkg_serve_requests_total', unknown)).toBe(n0 + 200);
    const values = labelValues(own(after));
    expect(values.filter((v) => v.includes(MARK))).toEqual([]);
    expect(values).toContain(NAME);
    const routes = new Set(after.get('xpkg_serve_requests_total')!.samples.map((x) => x.labels.route));
    for (const r of routes) expect(r === 'none' || r.startsWith('/')).toBe(true);
    // refused before routing (a URL the router cannot decode, Node's parser) still counted, with a code
    for (const [status, code] of [
      ['400', 'E_SERVE_REQUEST'],
      ['431', 'E_SERVE_HEADERS_TOO_LARGE'],
      ['404', 'E_SERVE_NOT_FOUND'],
      ['405', 'E_SERVE_METHOD'],
    ])
      expect(sample(after, 'xpkg_serve_requests_total', { route: 'none', status, code })).toBeGreaterThan(0);
  });

  it('every request has one JSON log line with a request id of bounded form; no token, no stack', async () => {
    const mark = s.lines().length;
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const r = (await hostile(i)()) as { headers: Headers };
      ids.push(r.headers.get('x-request-id')!);
    }
    for (const b of malformed()) ids.push(/\r\nX-Request-Id: ([^\r]*)\r\n/i.exec(await rawRequest(s.url, b))![1]);
    const kept = 'trace:abc-1.2_3'.padEnd(128, 'z');
    const r = await postJson(`${s.url}/v2/models/${ENC}/infer`, infer, { 'x-request-id': kept });
    expect(r.headers.get('x-request-id')).toBe(kept);
    ids.push(kept);
    await http(`${s.url}/v2/repository/index`, { method: 'POST', headers: { authorization: `Bearer ${REPO_TOKEN}` } });
    await http(`${s.url}/fabric/v1/split`, { method: 'POST', headers: { authorization: `Bearer ${FABRIC_TOKEN}` } });

    // a line per request, those answered from the router's or the socket's error path included
    await until(() => s.lines().length >= mark + ids.length + 2, 10_000, 'the request lines');
    const lines = s.lines().slice(mark);
    const requests = lines.filter((l) => /^request/.test(String(l.msg)));
    expect(requests).toHaveLength(ids.length + 2);
    for (const id of ids) {
      expect(id).toMatch(REQUEST_ID);
      expect(requests.filter((l) => l.reqId === id)).toHaveLength(1);
    }
    for (const l of requests) expect(String(l.reqId)).toMatch(REQUEST_ID);
    const text = s.text();
    for (const secret of [REPO_TOKEN, FABRIC_TOKEN, 'forged']) expect(text).not.toContain(secret);
    expect(lines.filter((l) => 'err' in l || 'stack' in l)).toEqual([]);
  });

  it('a bug every request hits logs its stack once, and one line per request', async () => {
    const pick = s.repository.pick;
    s.repository.pick = () => {
      throw new TypeError(`a bug met by ${tok()}`);
    };
    const mark = s.lines().length;
    try {
      for (let i = 0; i < 20; i++) expect((await http(`${s.url}/v2/models/${ENC}`)).status).toBe(500);
    } finally {
      s.repository.pick = pick;
    }
    const lines = s.lines().slice(mark);
    expect(lines.filter((l) => (l.err as { stack?: string } | undefined)?.stack)).toHaveLength(1);
    const failed = lines.filter((l) => l.status === 500);
    expect(failed).toHaveLength(20);
    for (const l of failed) expect(l).toMatchObject({ code: 'E_INTERNAL', error: expect.stringContaining('a bug') });
  });
});

describe('text logs', () => {
  it('escape what came from outside: one line per entry, no control or format characters', async () => {
    const repo = tempDir('xpkg-obs-text-');
    // a file name is not a client's, but it is text from outside the daemon, as a URL is
    const evil = `x\n2099-01-01T00:00:00.000Z ERROR forged \x1b[31m\u009b2J\u202e\u2028 a=b.xpkg`;
    await writeFile(join(repo, evil), 'not a package');
    const t = await rawServer({ repo, isolation: 'thread' }, 'text');
    try {
      await t.ready;
      await http(`${t.url}/v2/models/%ZZ%0A/infer`, { method: 'POST' });
      await http(`${t.url}/v2/models/${encodeURIComponent('"\n\u202e')}/ready`);
    } finally {
      await t.close();
    }
    const lines = t.text().split('\n');
    expect(lines.pop()).toBe('');
    for (const l of lines) {
      expect(l).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z (INFO|WARN|ERROR) /);
      expect(l).not.toMatch(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u);
    }
    expect(lines.some((l) => l.startsWith('2099'))).toBe(false);
    const refused = lines.find((l) => / WARN package refused/.test(l))!;
    // the file name quoted as one value: key=value pairs still read unambiguously
    expect(refused).toContain(
      'file="x\\n2099-01-01T00:00:00.000Z ERROR forged \\u001b[31m\\u009b2J\\u202e\\u2028 a=b.xpkg"',
    );
  });
});

describe('readiness and the swap metrics', () => {
  it('ready only after warm-up; during a stop the request in flight finishes, later ones are 503 E_SERVE_UNAVAILABLE', async () => {
    const repo = tempDir('xpkg-obs-ready-');
    await copyFile(await versionedPackage({ sequence: 1, k: 1, name: 'ready-m' }), join(repo, 'm.xpkg'));
    const t = await rawServer({ repo, isolation: 'thread' });
    let settled = false;
    void t.ready.then(() => (settled = true));
    const early = settled ? undefined : await http(`${t.url}/v2/health/ready`);
    if (early && !t.repository.ready) expect(early).toMatchObject({ status: 400, body: { ready: false } });
    await t.ready;
    expect((await http(`${t.url}/v2/health/ready`)).status).toBe(200);

    // a request in flight: its headers and half its body sent
    const body = JSON.stringify(infer);
    const port = Number(new URL(t.url).port);
    const received = new Promise((r) => t.app.server.once('request', r));
    const sock = connect(port, '127.0.0.1');
    let answer = '';
    sock.on('data', (d) => (answer += d));
    const closed = new Promise((r) => sock.on('close', r));
    sock.write(
      `POST /v2/models/ready-m/infer HTTP/1.1\r\nHost: x\r\nx-request-id: in-flight\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`,
    );
    await received;
    const stopping = t.close();
    const probe = await http(`${t.url}/v2/health/ready`).catch(() => undefined);
    if (probe) expect([probe.status, probe.body.code]).toEqual([503, 'E_SERVE_UNAVAILABLE']);
    // the rest of the body, and a request pipelined after it: it arrives during the stop
    sock.write(
      `${body.slice(10)}POST /v2/models/ready-m/infer HTTP/1.1\r\nHost: x\r\nx-request-id: late\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    await closed; // the late answer closes the connection
    await stopping;
    const [first, late] = answer.split(/(?=HTTP\/1\.1 )/);
    expect(first).toMatch(/^HTTP\/1\.1 200 /);
    expect(t.lines().find((l) => l.reqId === 'in-flight')).toMatchObject({ status: 200, model: 'ready-m' });
    // the daemon's 503 with its code, Retry-After and request id, not fastify's own body
    expect(late).toMatch(/^HTTP\/1\.1 503 /);
    expect(late).toMatch(/\r\nretry-after: 1\r\n/i);
    expect(late).toMatch(/\r\nx-request-id: late\r\n/i);
    expect(late).toMatch(/\r\nconnection: close\r\n/i);
    expect(JSON.parse(late.slice(late.indexOf('\r\n\r\n') + 4)).code).toBe('E_SERVE_UNAVAILABLE');
    expect(t.lines().find((l) => l.reqId === 'late')).toMatchObject({ status: 503, code: 'E_SERVE_UNAVAILABLE' });
    expect(t.lines().at(-1)?.msg).toBe('stopped');
  });

  it('swap events, loaded versions and memory per version follow a swap, a refusal and an unload', async () => {
    const repo = tempDir('xpkg-obs-swap-');
    const [v1, v2] = await Promise.all([1, 2].map((q) => versionedPackage({ sequence: q, k: q, name: 'swap-m' })));
    await copyFile(v1, join(repo, 'm.xpkg'));
    const t = await rawServer({ repo, isolation: 'thread', drainMs: 2000 });
    try {
      await t.ready;
      const model = { model: 'swap-m' };
      const events = async () =>
        Object.fromEntries(
          (await scrape(t.url))
            .get('xpkg_serve_swap_events_total')!
            .samples.filter((x) => x.labels.model === 'swap-m')
            .map((x) => [x.labels.event, x.value]),
        );
      const versionsOf = async () =>
        ((await scrape(t.url)).get('xpkg_serve_memory_bytes')?.samples ?? [])
          .filter((x) => x.labels.model === 'swap-m')
          .map((x) => x.labels.version);
      const loaded = async () => sample(await scrape(t.url), 'xpkg_serve_loaded_versions', model);
      const id1 = t.repository.pick('swap-m').id;
      expect(await events()).toEqual({ loaded: 1 });
      expect(await versionsOf()).toEqual([id1]);

      const swapped = new Promise((r) => t.repository.once('swapped', r));
      await dropIn(v2, repo, 'm.xpkg');
      await swapped;
      const id2 = t.repository.pick('swap-m').id;
      expect(await events()).toEqual({ loaded: 1, swapped: 1 });
      await until(async () => (await loaded()) === 1, 20_000, 'the old version drained');
      expect(await versionsOf()).toEqual([id2]);

      const refused = new Promise((r) => t.repository.once('refused', r));
      await dropIn(v1, repo, 'old.xpkg');
      await refused;
      expect(await events()).toEqual({ loaded: 1, swapped: 1, refused: 1 });
      await unlink(join(repo, 'old.xpkg'));
      await rename(join(repo, 'm.xpkg'), join(repo, '.gone'));
      await until(async () => (await loaded()) === 0, 20_000, 'the unload');
      expect(await events()).toEqual({ loaded: 1, swapped: 1, refused: 1, unloaded: 1 });
      expect(await versionsOf()).toEqual([]);
    } finally {
      await t.close();
    }
  });
});
