/**
 * Artifacts other tools write, against real components on loopback: layouts as skopeo and umoci
 * leave them (one manifest under several tags, ref.name in full reference form, `"manifests": null`),
 * an `oci-layout` of another version, a truncated blob, a Docker manifest list of Docker schema 2
 * manifests (what a registry that converts OCI to Docker serves) in docker-registry, and a registry
 * whose blob is shorter than its descriptor. Errors are asserted by code.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Cache } from '../oci/cache.js';
import { exportLayout, importLayout } from '../oci/layout.js';
import { pull } from '../oci/pull.js';
import { push } from '../oci/push.js';
import { codeOf } from './helpers/errors.js';
import { startFaultProxy } from './helpers/fault-proxy.js';
import { type Desc, putBlob, tagged, tagIn } from './helpers/oci-layout.js';
import { registryAvailable, startRegistry, type TestRegistry, toolAvailable } from './helpers/registry.js';
import { tempDir } from './helpers/source.js';

vi.setConfig({ testTimeout: 60_000 });

const MULTI = 'fixtures/dist/multi-variant.xpkg';
const DETECTOR = 'fixtures/dist/detector.xpkg';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const available = registryAvailable();
const skopeo = toolAvailable('skopeo');
if ((!available || !skopeo) && process.env.CI)
  throw new Error('docker-registry or skopeo is missing (.ci/run installs them)');
const run = promisify(execFile);

const cache = async () => Cache.open(tempDir('xpkg-cache-'));
const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const packagesIn = (c: Cache) => readdirSync(join(c.root, 'packages'));

let layout: string;
let pkg: Desc;
let multiId: string;

beforeAll(async () => {
  layout = join(tempDir(), 'layout');
  await exportLayout(MULTI, layout, 'pkg');
  pkg = tagged(layout, 'pkg');
  multiId = (await importLayout(await cache(), layout, 'pkg')).packageId;
});

describe('layouts other tools wrote', () => {
  it('one manifest under several tags (umoci tag, on umoci init’s "manifests": null) imports without --tag', async () => {
    const dir = join(tempDir(), 'umoci');
    mkdirSync(dir);
    writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    writeFileSync(join(dir, 'index.json'), '{"schemaVersion":2,"manifests":null}');
    await exportLayout(MULTI, dir, 'pkg');
    for (const tag of ['v1', 'v2']) tagIn(dir, pkg, tag);
    const c = await cache();
    expect((await importLayout(c, dir, undefined)).packageId).toBe(multiId);
    expect((await importLayout(c, dir, 'v2')).packageId).toBe(multiId);
    // two different manifests still need a tag
    const other = join(tempDir(), 'other');
    await exportLayout(DETECTOR, other, 'd');
    cpSync(join(other, 'blobs'), join(dir, 'blobs'), { recursive: true });
    tagIn(dir, tagged(other, 'd'), 'd');
    expect(await codeOf(importLayout(c, dir, undefined))).toBe('E_OCI_LAYOUT');
  });

  it('a ref.name in full reference form (skopeo oci:dir:host/repo:tag) is found by its tag too', async () => {
    const dir = join(tempDir(), 'full');
    if (skopeo) await run('skopeo', ['copy', '--quiet', `oci:${layout}:pkg`, `oci:${dir}:localhost:5000/models/ocr:4`]);
    else {
      cpSync(layout, dir, { recursive: true });
      writeFileSync(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [] }));
      tagIn(dir, pkg, 'localhost:5000/models/ocr:4');
    }
    const c = await cache();
    for (const tag of ['localhost:5000/models/ocr:4', '4'])
      expect((await importLayout(c, dir, tag)).packageId, tag).toBe(multiId);
    // a short ref.name equal to the tag wins over full forms; another tag is not found
    const other = join(tempDir(), 'other');
    await exportLayout(DETECTOR, other, 'd');
    cpSync(join(other, 'blobs'), join(dir, 'blobs'), { recursive: true });
    tagIn(dir, tagged(other, 'd'), '4');
    expect((await importLayout(c, dir, '4')).name).toBe('detector');
    expect(await codeOf(importLayout(c, dir, '5'))).toBe('E_OCI_LAYOUT');
    expect(await codeOf(importLayout(c, dir, 'models/ocr:4'))).toBe('E_OCI_LAYOUT');
  });

  it('an oci-layout of another major version is E_OCI_LAYOUT for import, and an export leaves it as it was', async () => {
    const c = await cache();
    for (const [marker, code] of [
      ['{"imageLayoutVersion":"2.0.0"}', 'E_OCI_LAYOUT'],
      ['{"imageLayoutVersion":1}', 'E_OCI_LAYOUT'],
      ['not json', 'E_OCI_LAYOUT'],
      ['{"imageLayoutVersion": "1.1.0"}', 'OK'],
    ]) {
      const dir = join(tempDir(), 'versioned');
      cpSync(layout, dir, { recursive: true });
      writeFileSync(join(dir, 'oci-layout'), marker);
      const before = readFileSync(join(dir, 'index.json'));
      expect(await codeOf(importLayout(c, dir, 'pkg')), marker).toBe(code);
      expect(await codeOf(exportLayout(DETECTOR, dir, 'd')), marker).toBe(code);
      expect(readFileSync(join(dir, 'oci-layout'), 'utf8')).toBe(marker);
      if (code !== 'OK') expect(readFileSync(join(dir, 'index.json')).equals(before)).toBe(true);
    }
  });

  it('a container image naming sha512 blobs, an ORAS artifact of a whole file without a .xpkg title: E_OCI_NOT_PACKAGE', async () => {
    const dir = join(tempDir(), 'others');
    cpSync(layout, dir, { recursive: true });
    const sha512 = (b: Buffer) => `sha512:${createHash('sha512').update(b).digest('hex')}`;
    const tar = Buffer.alloc(1024);
    const image = putBlob(
      dir,
      OCI_MANIFEST,
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha512(Buffer.from('{}')), size: 2 },
          layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha512(tar), size: tar.length }],
        }),
      ),
    );
    tagIn(dir, image, 'sha512-image');
    // `oras push --artifact-type application/vnd.xpkg.package.v1 host/repo:t model:application/octet-stream`
    const layer = {
      ...putBlob(dir, 'application/octet-stream', readFileSync(DETECTOR)),
      annotations: { 'org.opencontainers.image.title': 'model' },
    };
    const empty = { ...putBlob(dir, 'application/vnd.oci.empty.v1+json', Buffer.from('{}')), data: 'e30=' };
    const oras = putBlob(
      dir,
      OCI_MANIFEST,
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          artifactType: 'application/vnd.xpkg.package.v1',
          config: empty,
          layers: [layer],
        }),
      ),
    );
    tagIn(dir, oras, 'oras');
    const c = await cache();
    for (const tag of ['sha512-image', 'oras'])
      expect(await codeOf(importLayout(c, dir, tag)), tag).toBe('E_OCI_NOT_PACKAGE');
  });

  it('a truncated payload blob is E_OCI_DIGEST (not a network failure), and nothing lands under packages/', async () => {
    const dir = join(tempDir(), 'truncated');
    cpSync(layout, dir, { recursive: true });
    const manifest = JSON.parse(readFileSync(join(dir, 'blobs/sha256', pkg.digest.slice(7)), 'utf8'));
    const layer = manifest.layers.find((l: Desc) => l.mediaType === 'application/vnd.xpkg.file.v1');
    truncateSync(join(dir, 'blobs/sha256', layer.digest.slice(7)), layer.size - 10);
    const c = await cache();
    expect(await codeOf(importLayout(c, dir, 'pkg'))).toBe('E_OCI_DIGEST');
    expect(packagesIn(c)).toEqual([]);
  });
});

describe.skipIf(!available)('registries that are not xpkg push', () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startRegistry();
  });
  afterAll(async () => reg?.stop());

  const putManifest = async (repo: string, tag: string, mediaType: string, body: object) => {
    const bytes = Buffer.from(JSON.stringify(body));
    const res = await fetch(`http://${reg.host}/v2/${repo}/manifests/${tag}`, {
      method: 'PUT',
      headers: { 'content-type': mediaType },
      body: bytes,
    });
    expect(res.status, await res.text()).toBe(201);
    return { mediaType, digest: sha256(bytes), size: bytes.length };
  };

  it('a Docker manifest list of a Docker schema 2 package manifest (arm64/v8, an unknown OS) pulls the package', async () => {
    await push(MULTI, `${reg.host}/conv/p:1`, { cache: await cache() });
    const oci = JSON.parse(readFileSync(join(layout, 'blobs/sha256', pkg.digest.slice(7)), 'utf8'));
    const { artifactType: _, ...rest } = oci;
    const docker = await putManifest('conv/p', 'docker', DOCKER_MANIFEST, { ...rest, mediaType: DOCKER_MANIFEST });
    await putManifest('conv/p', 'list', DOCKER_LIST, {
      schemaVersion: 2,
      mediaType: DOCKER_LIST,
      manifests: [
        { ...docker, platform: { architecture: 'arm64', os: 'linux', variant: 'v8' } },
        { ...docker, platform: { architecture: 'riscv64', os: 'plan9' } },
      ],
    });
    const c = await cache();
    const r = await pull(`${reg.host}/conv/p:list`, { cache: c });
    expect(r.packageId).toBe(multiId);
    expect(r.digest).toBe(docker.digest);
    expect(readFileSync(r.path).equals(readFileSync(MULTI))).toBe(true);
    // an OCI index with a subject (as a referrer carries) listing it
    const index = await putManifest('conv/p', 'subject', 'application/vnd.oci.image.index.v1+json', {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      subject: { ...pkg, mediaType: OCI_MANIFEST },
      manifests: [docker],
    });
    expect(index.size).toBeGreaterThan(0);
    expect((await pull(`${reg.host}/conv/p:subject`, { cache: c })).packageId).toBe(multiId);
  });

  it('a blob shorter than its descriptor (an honest Content-Length) is E_OCI_DIGEST at once, not retried', async () => {
    await push(MULTI, `${reg.host}/short/p:1`, { cache: await cache() });
    const manifest = JSON.parse(readFileSync(join(layout, 'blobs/sha256', pkg.digest.slice(7)), 'utf8'));
    const layer = manifest.layers.find((l: Desc) => l.mediaType === 'application/vnd.xpkg.file.v1');
    const body = readFileSync(join(layout, 'blobs/sha256', layer.digest.slice(7))).subarray(0, layer.size - 10);
    let served = 0;
    const proxy = await startFaultProxy(reg.port, (req, res) => {
      if (req.method !== 'GET' || !req.url?.endsWith(`/blobs/${layer.digest}`)) return false;
      served++;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body);
      return true;
    });
    const c = await cache();
    try {
      expect(await codeOf(pull(`${proxy.host}/short/p:1`, { cache: c }))).toBe('E_OCI_DIGEST');
    } finally {
      await proxy.close();
    }
    expect(served).toBe(1);
    expect(packagesIn(c)).toEqual([]);
    expect(existsSync(join(c.root, 'packages'))).toBe(true);
  });
});
