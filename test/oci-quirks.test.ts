/**
 * Push and pull against registries that behave like the ones users have (S3/GCS redirects, HEAD
 * unsupported, relative or foreign upload Locations, PATCH-only or PUT-only uploads, ignored mounts,
 * token quirks, rate limits, rewritten manifests): a quirk proxy in front of a real docker-registry.
 * Each case ends in a verified package or a clear E_OCI_* code, never a credential sent to another
 * host, and nothing left in the cache's tmp/.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { sha256 } from '../oci/artifact.js';
import { Cache } from '../oci/cache.js';
import { pull } from '../oci/pull.js';
import { push } from '../oci/push.js';
import { Registry } from '../oci/registry.js';
import { packFolder } from '../pack/pack.js';
import { XpkgError } from '../spec/errors.js';
import { type QuirkProxy, type Quirks, startQuirkProxy } from './helpers/quirk-proxy.js';
import {
  PASSWORD,
  registryAvailable,
  startRegistry,
  type TestRegistry,
  USER,
  writeAuthFile,
} from './helpers/registry.js';
import { baseManifest, tempDir, writeSource } from './helpers/source.js';

vi.setConfig({ testTimeout: 60_000 });

const MULTI = 'fixtures/dist/multi-variant.xpkg';
const available = registryAvailable();
if (!available && process.env.CI) throw new Error('docker-registry is missing (.ci/run installs them)');

const codeOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (e) {
    return e instanceof XpkgError ? e.code : String(e);
  }
  return 'no error';
};

describe.skipIf(!available)('registries with quirks', () => {
  let reg: TestRegistry;
  let big: string; // a package with a 3 MiB model: pushed in 1 MiB chunks
  let proxy: QuirkProxy | undefined;
  const caches: string[] = [];
  beforeAll(async () => {
    reg = await startRegistry();
    const model = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < model.length; i++) model[i] = (i * 2654435761) >>> 24;
    big = join(tempDir(), 'big.xpkg');
    await packFolder(writeSource({ 'models/net.onnx': model }, baseManifest({ name: 'quirky' })), big);
  });
  afterAll(async () => reg?.stop());
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
    // nothing half-written stays behind, whatever the outcome
    for (const c of caches.splice(0))
      expect(readdirSync(join(c, 'tmp')).filter((f) => !f.endsWith('.lock'))).toEqual([]);
  });

  const cache = async () => {
    const dir = tempDir('xpkg-cache-');
    caches.push(dir);
    return Cache.open(dir);
  };
  /** Auth files for the proxy's host only; HOME elsewhere so the user's own files are not read. */
  const envFor = (host: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => {
    const file = join(tempDir(), 'auth.json');
    writeAuthFile(file, host);
    return { HOME: tempDir(), REGISTRY_AUTH_FILE: file, ...extra };
  };
  const start = async (quirks: Quirks) => {
    proxy = await startQuirkProxy(reg.port, quirks);
    return proxy;
  };
  const basic = { scheme: 'basic' as const, user: USER, password: PASSWORD };
  /** Pushes through the proxy, pulls back (through it unless `direct`) and compares the bytes. */
  const roundTrip = async (p: QuirkProxy, pkg: string, repo: string, o: { chunk?: number; direct?: boolean } = {}) => {
    const env = envFor(p.host);
    const pushed = await push(pkg, `${p.host}/${repo}:1`, {
      env,
      cache: await cache(),
      retries: 1,
      ...(o.chunk ? { chunkBytes: o.chunk } : {}),
    });
    const from = o.direct ? reg.host : p.host;
    const got = await pull(`${from}/${repo}:1`, { env: envFor(from), cache: await cache(), retries: 1 });
    expect(readFileSync(got.path).equals(readFileSync(pkg))).toBe(true);
    return pushed;
  };

  it('blobs behind signed redirects to storage: followed without credentials, Range kept', async () => {
    const p = await start({ redirectBlobs: true, auth: basic });
    const pushed = await roundTrip(p, MULTI, 'redir/p');
    const layer = pushed.blobs.find((b) => b.size > 1000)!;
    const registry = new Registry(p.host, { env: envFor(p.host) });
    const { stream, offset } = await registry.getBlob('redir/p', layer.digest, 1000);
    const parts: Buffer[] = [];
    for await (const c of stream) parts.push(c as Buffer);
    expect(offset).toBe(1000);
    expect(Buffer.concat(parts).length).toBe(layer.size - 1000);
    expect(p.other.some((s) => s.range === 'bytes=1000-')).toBe(true);
    expect(p.other.length).toBeGreaterThan(0);
    expect(p.other.filter((s) => s.authorization)).toEqual([]);
  });

  it('HEAD on blobs answered 404 or 405 while GET works: the blobs are uploaded, the push works', async () => {
    for (const headBlob of [404, 405] as const) {
      const p = await start({ headBlob });
      const pushed = await roundTrip(p, MULTI, `head${headBlob}/p`);
      expect(pushed.blobs.every((b) => b.outcome === 'uploaded')).toBe(true);
      await p.close();
    }
  });

  it('no Docker-Content-Digest in any answer: push and pull still work, verified', async () => {
    await roundTrip(await start({ dropDigestHeader: true }), big, 'nodigest/p', { chunk: 1 << 20 });
  });

  it('upload Locations relative to the root, relative to the request, with a query: resolved per RFC 3986', async () => {
    for (const location of ['root-relative', 'relative'] as const) {
      const p = await start({ location });
      await roundTrip(p, big, `loc-${location}/p`, { chunk: 1 << 20, direct: true });
      await p.close();
    }
  });

  it('an upload Location on another host gets no credentials', async () => {
    const p = await start({ location: 'other-host', auth: basic });
    await roundTrip(p, big, 'elsewhere/p', { chunk: 1 << 20, direct: true });
    expect(p.other.length).toBeGreaterThan(0);
    expect(p.other.filter((s) => s.authorization)).toEqual([]);
  });

  it('another host asking for auth is not answered with the user’s credentials: E_OCI_AUTH', async () => {
    const p = await start({
      location: 'other-host',
      auth: basic,
      otherChallenge: 'Bearer realm="http://{other}/steal",service="x"',
    });
    const code = await codeOf(
      push(MULTI, `${p.host}/steal/p:1`, { env: envFor(p.host), cache: await cache(), retries: 0 }),
    );
    expect(code).toBe('E_OCI_AUTH');
    expect(p.other.filter((s) => s.authorization || s.url.startsWith('/steal'))).toEqual([]);
  });

  it('a registry that refuses PATCH (405) gets the large blob in one PUT', async () => {
    await roundTrip(await start({ refusePatch: true }), big, 'putonly/p', { chunk: 1 << 20 });
  });

  it('a registry that wants another Content-Range form (416 to the first chunk) gets one PUT', async () => {
    await roundTrip(await start({ contentRangeBytes: true }), big, 'rangeform/p', { chunk: 1 << 20 });
  });

  it('a registry that refuses a PUT carrying bytes gets PATCH then an empty PUT', async () => {
    await roundTrip(await start({ refuseMonolithic: true }), MULTI, 'patchonly/p');
  });

  it('a registry that ignores mount (202) gets the bytes uploaded', async () => {
    const p = await start({ ignoreMount: true });
    const env = envFor(p.host);
    await push(MULTI, `${p.host}/mount/a:1`, { env, cache: await cache() });
    const second = await push(MULTI, `${p.host}/mount/b:1`, { env, cache: await cache(), mountFrom: 'mount/a' });
    expect(second.blobs.every((b) => b.outcome === 'uploaded')).toBe(true);
    const got = await pull(`${p.host}/mount/b:1`, { env, cache: await cache() });
    expect(readFileSync(got.path).equals(readFileSync(MULTI))).toBe(true);
  });

  it('Bearer: odd casing, several challenges, access_token, tokens expiring mid-push, scopes of two repositories', async () => {
    const p = await start({
      auth: {
        ...basic,
        scheme: 'bearer',
        tokenField: 'access_token',
        tokenUses: 3,
        challenge: 'BEARER Realm="{realm}" , Service=quirk,scope="repository:x:pull", Basic realm="fallback"',
      },
    });
    const env = envFor(p.host);
    await push(big, `${p.host}/tok/a:1`, { env, cache: await cache(), chunkBytes: 1 << 20 });
    const second = await push(big, `${p.host}/tok/b:1`, {
      env,
      cache: await cache(),
      chunkBytes: 1 << 20,
      mountFrom: 'tok/a',
    });
    expect(second.blobs.every((b) => b.outcome !== 'uploaded')).toBe(true);
    expect(p.tokens.length).toBeGreaterThan(3); // refreshed as each one expired
    expect(
      p.tokens.some(
        (t) => t.scopes.includes('repository:tok/b:pull,push') && t.scopes.includes('repository:tok/a:pull'),
      ),
    ).toBe(true);
    const got = await pull(`${p.host}/tok/b:1`, { env, cache: await cache() });
    expect(readFileSync(got.path).equals(readFileSync(big))).toBe(true);
  });

  it('a Bearer challenge whose realm is not a URL is E_OCI_AUTH', async () => {
    const p = await start({ auth: { ...basic, scheme: 'bearer', challenge: 'Bearer realm="not a url",service=x' } });
    expect(await codeOf(pull(`${p.host}/bad/p:1`, { env: envFor(p.host), cache: await cache(), retries: 0 }))).toBe(
      'E_OCI_AUTH',
    );
  });

  it('manifest PUT answered 201 without a body works; with another Docker-Content-Digest it is E_OCI_DIGEST', async () => {
    const first = await push(MULTI, `${reg.host}/mdigest/p:1`, { env: envFor(reg.host), cache: await cache() });
    const ok = await start({ digestHeader: { on: 'manifest', value: first.digest } });
    await push(MULTI, `${ok.host}/mdigest/p:2`, { env: envFor(ok.host), cache: await cache() });
    await ok.close();
    const p = await start({ digestHeader: { on: 'manifest', value: `sha256:${'0'.repeat(64)}` } });
    const code = await codeOf(
      push(MULTI, `${p.host}/mdigest/p:3`, { env: envFor(p.host), cache: await cache(), retries: 0 }),
    );
    expect(code).toBe('E_OCI_DIGEST');
  });

  it('a blob upload answered with another Docker-Content-Digest is E_OCI_DIGEST, in one PUT or in chunks', async () => {
    const p = await start({ digestHeader: { on: 'blob', value: `sha256:${'1'.repeat(64)}` } });
    const env = envFor(p.host);
    const code = await codeOf(push(MULTI, `${p.host}/bdigest/p:1`, { env, cache: await cache(), retries: 0 }));
    expect(code).toBe('E_OCI_DIGEST');
    const bytes = Buffer.alloc(2 * 1024 * 1024 + 5, 7);
    const registry = new Registry(p.host, { env, retries: 0, chunkBytes: 1 << 20 });
    const read = (a: number, b: number) => Readable.from([bytes.subarray(a, b)]);
    const chunked = registry.upload('bdigest/q', { digest: sha256(bytes), size: bytes.length }, read);
    expect(await codeOf(chunked)).toBe('E_OCI_DIGEST');
    expect(p.seen.some((s) => s.method === 'PATCH')).toBe(true);
  });

  it('429 with Retry-After as an HTTP date is waited for', async () => {
    await push(MULTI, `${reg.host}/limit/p:1`, { env: envFor(reg.host), cache: await cache() });
    const p = await start({ rateLimitUntil: Date.now() + 1200 });
    const got = await pull(`${p.host}/limit/p:1`, { env: envFor(p.host), cache: await cache(), retries: 1 });
    expect(readFileSync(got.path).equals(readFileSync(MULTI))).toBe(true);
  });

  it('a manifest rewritten to Docker schema 2 on GET: by tag still a verified package; by digest E_OCI_DIGEST', async () => {
    const pushed = await push(MULTI, `${reg.host}/rewrite/p:1`, { env: envFor(reg.host), cache: await cache() });
    const p = await start({ rewriteManifest: true });
    const env = envFor(p.host);
    const got = await pull(`${p.host}/rewrite/p:1`, { env, cache: await cache() });
    expect(readFileSync(got.path).equals(readFileSync(MULTI))).toBe(true);
    expect(got.digest).not.toBe(pushed.digest);
    const code = await codeOf(pull(`${p.host}/rewrite/p@${pushed.digest}`, { env, cache: await cache(), retries: 0 }));
    expect(code).toBe('E_OCI_DIGEST');
  });
});
