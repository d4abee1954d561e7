/**
 * Registries and tags that are not what xpkg pushed, against real components on loopback:
 * docker-registry, skopeo publishing hand-built OCI layouts (a container image, image indexes),
 * and an HTTP proxy in front of the registry answering chosen requests itself (a failed chunk, a
 * broken token server). Errors are asserted by code.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { EXIT } from '../spec/errors.js';
import { xpkgAsync as xpkg } from './helpers/cli.js';
import { forward, startFaultProxy } from './helpers/fault-proxy.js';
import { containerImage, imageIndex, tagged, wholeFileArtifact } from './helpers/oci-layout.js';
import {
  registryAvailable,
  startCuttingProxy,
  startRegistry,
  type TestRegistry,
  toolAvailable,
  writeAuthFile,
} from './helpers/registry.js';
import { baseManifest, tempDir, writeSource } from './helpers/source.js';

vi.setConfig({ testTimeout: 60_000 });

const MULTI = 'fixtures/dist/multi-variant.xpkg';
const ARTIFACT = 'application/vnd.xpkg.package.v1';
const available = registryAvailable();
const skopeo = toolAvailable('skopeo');
if ((!available || !skopeo) && process.env.CI)
  throw new Error('docker-registry or skopeo is missing (.ci/run installs them)');
const run = promisify(execFile);

const cacheEnv = () => ({ XPKG_CACHE: tempDir('xpkg-cache-'), XPKG_STATE_DIR: tempDir('xpkg-state-') });

/** skopeo publishing a tag of a local OCI layout (`--all`: an index with every manifest it lists). */
const publish = (dir: string, tag: string, to: string, extra: string[] = []) =>
  run('skopeo', ['copy', '--dest-tls-verify=false', ...extra, `oci:${dir}:${tag}`, `docker://${to}`]);

describe.skipIf(!available || !skopeo)('tags that name something else', () => {
  let reg: TestRegistry;
  let layout: string;
  beforeAll(async () => {
    reg = await startRegistry();
    // One layout: the package as xpkg exports it, a plain container image, and indexes of them.
    layout = join(tempDir(), 'layout');
    const e = await xpkg(['export', MULTI, '--oci-layout', layout, '--tag', 'pkg']);
    if (e.status !== 0) throw new Error(e.stderr);
    const pkg = tagged(layout, 'pkg');
    const img = containerImage(layout, 'img');
    imageIndex(layout, [img, { ...pkg, artifactType: ARTIFACT }], 'multi');
    imageIndex(layout, [img], 'images');
  });
  afterAll(async () => reg?.stop());

  it('a container image at the tag (OCI or Docker schema 2) is E_OCI_NOT_PACKAGE', async () => {
    await publish(layout, 'img', `${reg.host}/plain/img:oci`);
    await publish(layout, 'img', `${reg.host}/plain/img:docker`, ['--format', 'v2s2']);
    for (const tag of ['oci', 'docker']) {
      const r = await xpkg(['pull', `${reg.host}/plain/img:${tag}`, '--json'], cacheEnv());
      expect(r.json!.error!.code, tag).toBe('E_OCI_NOT_PACKAGE');
      expect(r.status).toBe(EXIT.oci);
    }
  });

  it('a package file published whole as one layer (ORAS style) is E_OCI_NOT_PACKAGE', async () => {
    wholeFileArtifact(layout, readFileSync(MULTI), 'whole');
    await publish(layout, 'whole', `${reg.host}/whole/p:1`);
    const r = await xpkg(['pull', `${reg.host}/whole/p:1`, '--json'], cacheEnv());
    expect(r.json!.error!.code).toBe('E_OCI_NOT_PACKAGE');
    expect(r.status).toBe(EXIT.oci);
  });

  it('a layout whose index.json descriptor lacks its size is E_OCI_LAYOUT (not a digest mismatch)', async () => {
    const dir = join(tempDir(), 'nosize');
    expect((await xpkg(['export', MULTI, '--oci-layout', dir, '--tag', 'v1'])).status).toBe(0);
    const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
    delete index.manifests[0].size;
    writeFileSync(join(dir, 'index.json'), JSON.stringify(index));
    const r = await xpkg(['import', dir, '--json'], cacheEnv());
    expect(r.json!.error!.code).toBe('E_OCI_LAYOUT');
  });

  it('an image index at the tag resolves to the package it lists, also when skopeo dropped its artifactType', async () => {
    await publish(layout, 'multi', `${reg.host}/mixed/p:multi`, ['--all']);
    const out = join(tempDir(), 'p.xpkg');
    const r = await xpkg(['pull', `${reg.host}/mixed/p:multi`, '-o', out, '--json'], cacheEnv());
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(out).equals(readFileSync(MULTI))).toBe(true);
    // The same layout imported directly (its tag names the index, artifactType intact).
    const imported = await xpkg(['import', layout, '--tag', 'multi', '--json'], cacheEnv());
    expect(imported.status, imported.stderr).toBe(0);
    expect(imported.json!.result.packageId).toBe(r.json!.result.packageId);
    // An index of images only names no package.
    await publish(layout, 'images', `${reg.host}/mixed/p:images`, ['--all']);
    const none = await xpkg(['pull', `${reg.host}/mixed/p:images`, '--json'], cacheEnv());
    expect(none.json!.error!.code).toBe('E_OCI_NOT_PACKAGE');
  });

  it('a tag moved to a container image leaves the resolution an offline run falls back on', async () => {
    expect((await xpkg(['push', MULTI, `${reg.host}/moved/p:1`], cacheEnv())).status).toBe(0);
    const proxy = await startCuttingProxy(reg.port, Number.POSITIVE_INFINITY);
    const env = cacheEnv();
    const ref = `${proxy.host}/moved/p:1`;
    try {
      expect((await xpkg(['pull', ref], env)).status).toBe(0);
      await publish(layout, 'img', `${reg.host}/moved/p:1`);
      expect((await xpkg(['pull', ref, '--json'], env)).json!.error!.code).toBe('E_OCI_NOT_PACKAGE');
    } finally {
      await proxy.close();
    }
    const offline = await xpkg(['pull', ref, '--json'], { ...env, XPKG_OCI_RETRIES: '0' });
    expect(offline.status, offline.stderr).toBe(0);
    expect(offline.json!.result.offline).toBe(true);
  });
});

describe.skipIf(!available)('a registry misbehaving', () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startRegistry();
  });
  afterAll(async () => reg?.stop());

  it('a package with an empty file pushes and pulls back byte-identical', async () => {
    const src = writeSource({ 'assets/labels.txt': '' }, baseManifest({ name: 'empty-file' }));
    const pkg = join(tempDir(), 'empty.xpkg');
    expect((await xpkg(['pack', src, '-o', pkg])).status).toBe(0);
    const push = await xpkg(['push', pkg, `${reg.host}/empty/p:1`, '--json'], cacheEnv());
    expect(push.status, push.stderr).toBe(0);
    const out = join(tempDir(), 'back.xpkg');
    expect((await xpkg(['pull', `${reg.host}/empty/p:1`, '-o', out], cacheEnv())).status).toBe(0);
    expect(readFileSync(out).equals(readFileSync(pkg))).toBe(true);
  });

  it('a chunked push whose first chunk fails starts the upload again instead of skipping a byte', async () => {
    const model = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < model.length; i++) model[i] = (i * 2654435761) >>> 24;
    const src = writeSource({ 'models/net.onnx': model }, baseManifest({ name: 'chunked' }));
    const pkg = join(tempDir(), 'chunked.xpkg');
    expect((await xpkg(['pack', src, '-o', pkg])).status).toBe(0);
    let patches = 0;
    const proxy = await startFaultProxy(reg.port, (req, res) => {
      if (req.method !== 'PATCH' || patches++ > 0) return false;
      req.resume();
      req.on('end', () => res.writeHead(503).end());
      return true;
    });
    try {
      const env = { ...cacheEnv(), XPKG_OCI_CHUNK_BYTES: String(1 << 20) };
      const push = await xpkg(['push', pkg, `${proxy.host}/chunk/p:1`, '--json'], env);
      expect(push.status, push.stderr).toBe(0);
      expect(patches).toBeGreaterThan(3);
    } finally {
      await proxy.close();
    }
    const out = join(tempDir(), 'back.xpkg');
    expect((await xpkg(['pull', `${reg.host}/chunk/p:1`, '-o', out], cacheEnv())).status).toBe(0);
    expect(readFileSync(out).equals(readFileSync(pkg))).toBe(true);
  });

  it('blob requests redirected to storage on another origin (HEAD too) are followed without credentials', async () => {
    // The proxy asks for Basic credentials like a registry would, and redirects blob HEAD and GET
    // to a "storage" origin that serves them from the registry, recording what it was sent.
    const storageSaw: (string | undefined)[] = [];
    const storage = http.createServer((req, res) => {
      storageSaw.push(req.headers.authorization);
      forward(reg.port, req, res);
    });
    await new Promise<void>((r) => storage.listen(0, '127.0.0.1', r));
    const to = `127.0.0.1:${(storage.address() as AddressInfo).port}`;
    const proxy = await startFaultProxy(reg.port, (req, res) => {
      if (!req.headers.authorization) {
        req.resume();
        res.writeHead(401, { 'www-authenticate': 'Basic realm="test"' }).end();
        return true;
      }
      delete req.headers.authorization;
      if ((req.method === 'GET' || req.method === 'HEAD') && /\/blobs\/sha256:/.test(req.url ?? '')) {
        req.resume();
        res.writeHead(307, { location: `http://${to}${req.url}` }).end();
        return true;
      }
      return false;
    });
    const authFile = join(tempDir(), 'auth.json');
    writeAuthFile(authFile, proxy.host);
    try {
      const env = { ...cacheEnv(), REGISTRY_AUTH_FILE: authFile };
      const ref = `${proxy.host}/redirect/p:1`;
      expect((await xpkg(['push', MULTI, ref], env)).status).toBe(0);
      const again = await xpkg(['push', MULTI, ref, '--json'], env); // every blob found (HEAD redirected)
      expect(again.status, again.stderr).toBe(0);
      expect(again.json!.result.blobs.every((b: { outcome: string }) => b.outcome === 'exists')).toBe(true);
      const out = join(tempDir(), 'p.xpkg');
      const pull = await xpkg(['pull', ref, '-o', out], { ...env, XPKG_CACHE: tempDir() });
      expect(pull.status, pull.stderr).toBe(0);
      expect(readFileSync(out).equals(readFileSync(MULTI))).toBe(true);
      expect(storageSaw.length).toBeGreaterThan(0);
      expect(storageSaw.filter(Boolean)).toEqual([]);
    } finally {
      await proxy.close();
      await new Promise((r) => storage.close(r));
    }
  });

  it('a rate-limited registry (429 with Retry-After) is waited for as long as it asks', async () => {
    expect((await xpkg(['push', MULTI, `${reg.host}/limited/p:1`], cacheEnv())).status).toBe(0);
    const until = Date.now() + 1500;
    const proxy = await startFaultProxy(reg.port, (req, res) => {
      if (Date.now() >= until) return false;
      req.resume();
      res.writeHead(429, { 'retry-after': '1' }).end('{"errors":[{"code":"TOOMANYREQUESTS"}]}');
      return true;
    });
    try {
      // Two retries: 0.45 s of exponential backoff alone would give up while the limit lasts.
      const r = await xpkg(['pull', `${proxy.host}/limited/p:1`, '--json'], { ...cacheEnv(), XPKG_OCI_RETRIES: '2' });
      expect(r.status, r.stderr).toBe(0);
    } finally {
      await proxy.close();
    }
  });

  it('a manifest over the 4 MiB limit is E_OCI_MANIFEST, as from a layout', async () => {
    const proxy = await startFaultProxy(reg.port, (req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
      res.end(Buffer.alloc(5 * 1024 * 1024, 0x20));
      return true;
    });
    try {
      const r = await xpkg(['pull', `${proxy.host}/big/p:1`, '--json'], cacheEnv());
      expect(r.json!.error!.code).toBe('E_OCI_MANIFEST');
    } finally {
      await proxy.close();
    }
  });

  it('a token server that answers with a page instead of JSON is E_OCI_AUTH', async () => {
    const proxy = await startFaultProxy(reg.port, (req, res) => {
      req.resume();
      if (req.url?.startsWith('/token'))
        res.writeHead(200, { 'content-type': 'text/html' }).end('<html>sign in</html>');
      else res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${proxy.host}/token",service="x"` }).end();
      return true;
    });
    try {
      const r = await xpkg(['pull', `${proxy.host}/tok/p:1`, '--json'], cacheEnv());
      expect(r.json!.error!.code).toBe('E_OCI_AUTH');
      expect(r.status).toBe(EXIT.oci);
    } finally {
      await proxy.close();
    }
  });

  it('a damaged reference record in the cache is as good as none, and gc removes it', async () => {
    expect((await xpkg(['push', MULTI, `${reg.host}/refs/p:1`], cacheEnv())).status).toBe(0);
    const env = cacheEnv();
    expect((await xpkg(['pull', `${reg.host}/refs/p:1`], env)).status).toBe(0);
    const refs = join(env.XPKG_CACHE, 'refs');
    for (const f of readdirSync(refs)) writeFileSync(join(refs, f), '{"reference":');
    const again = await xpkg(['pull', `${reg.host}/refs/p:1`, '--json'], env);
    expect(again.status, again.stderr).toBe(0);
    writeFileSync(join(refs, 'junk.json'), 'null');
    expect((await xpkg(['cache', 'ls', '--json'], env)).status).toBe(0);
    expect((await xpkg(['cache', 'gc', '--json'], env)).status).toBe(0);
    expect(readdirSync(refs)).not.toContain('junk.json');
  });
});
