/**
 * Layouts and indexes written by other tools than xpkg, against real components on loopback:
 * skopeo writing and reading OCI layouts and publishing indexes to docker-registry, and indexes
 * written from the image spec (an index of indexes, one package listed per platform, a sha512
 * descriptor beside the package). What xpkg should take it takes; what it cannot is an E_OCI_* code,
 * never a crash. Errors are asserted by code.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Cache } from '../oci/cache.js';
import { exportLayout, importLayout } from '../oci/layout.js';
import { pull } from '../oci/pull.js';
import { codeOf } from './helpers/errors.js';
import { containerImage, type Desc, imageIndex, tagged } from './helpers/oci-layout.js';
import { registryAvailable, startRegistry, type TestRegistry, toolAvailable } from './helpers/registry.js';
import { tempDir } from './helpers/source.js';

vi.setConfig({ testTimeout: 60_000 });

const MULTI = 'fixtures/dist/multi-variant.xpkg';
const DETECTOR = 'fixtures/dist/detector.xpkg';
const REF = 'org.opencontainers.image.ref.name';
const INDEX = 'application/vnd.oci.image.index.v1+json';
const available = registryAvailable();
const skopeo = toolAvailable('skopeo');
if ((!available || !skopeo) && process.env.CI)
  throw new Error('docker-registry or skopeo is missing (.ci/run installs them)');
const run = promisify(execFile);

const cache = async () => Cache.open(tempDir('xpkg-cache-'));
const idOf = async (p: Promise<{ packageId: string }>) => (await p).packageId;
const indexOf = (dir: string) => JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));

let layout: string;
let pkg: Desc;
let multiId: string;

beforeAll(async () => {
  // One layout: the package as xpkg exports it, a container image, and indexes of them.
  layout = join(tempDir(), 'layout');
  await exportLayout(MULTI, layout, 'pkg');
  multiId = await idOf(importLayout(await cache(), layout, 'pkg'));
  pkg = tagged(layout, 'pkg');
  const img = containerImage(layout, 'img');
  const inner = imageIndex(layout, [img, pkg], 'inner');
  imageIndex(layout, [inner], 'nested');
  // one platform-independent package listed once per platform, without artifactType (skopeo 1.9)
  const perPlatform = (architecture: string) => ({ ...pkg, platform: { architecture, os: 'linux' } });
  imageIndex(layout, [perPlatform('amd64'), perPlatform('arm64')], 'per-platform');
  // a signature of another digest algorithm listed beside the package
  const sha512 = { mediaType: pkg.mediaType, digest: `sha512:${'ab'.repeat(64)}`, size: 400 };
  imageIndex(layout, [{ ...pkg, artifactType: 'application/vnd.xpkg.package.v1' }, sha512], 'sha512');
});

describe('OCI layouts', () => {
  it('an index of indexes, one package per platform, a sha512 sibling: each resolves to the package', async () => {
    const c = await cache();
    for (const tag of ['nested', 'per-platform', 'sha512'])
      expect(await idOf(importLayout(c, layout, tag)), tag).toBe(multiId);
    // an index of images only still names no package
    imageIndex(layout, [tagged(layout, 'img')], 'images');
    expect(await codeOf(importLayout(c, layout, 'images'))).toBe('E_OCI_NOT_PACKAGE');
  });

  it('export into a layout skopeo wrote keeps its images and earlier tags; each imports, skopeo reads them', async () => {
    if (!skopeo) return;
    const dir = join(tempDir(), 'shared');
    await run('skopeo', ['copy', '--quiet', `oci:${layout}:img`, `oci:${dir}:base`]);
    await exportLayout(MULTI, dir, 'v1');
    await exportLayout(DETECTOR, dir, 'v2');
    await exportLayout(DETECTOR, dir, 'v2'); // again: its entry replaced, not doubled
    expect(indexOf(dir).manifests.map((m: Desc) => m.annotations?.[REF])).toEqual(['base', 'v1', 'v2']);
    const c = await cache();
    const [v1, v2] = [await importLayout(c, dir, 'v1'), await importLayout(c, dir, 'v2')];
    expect([v1.name, v2.name]).toEqual(['multi-variant-add-one', 'detector']);
    for (const tag of ['base', 'v1', 'v2']) await run('skopeo', ['inspect', '--raw', `oci:${dir}:${tag}`]);
  });

  it('an index.json that is not an index is E_OCI_LAYOUT for import and for an export into it, never a crash', async () => {
    const c = await cache();
    const bodies = [
      'null',
      '[]',
      '{"manifests": {}}',
      '{"manifests": "x"}',
      '{"manifests": [null]}',
      '{"manifests": []}',
      `{"manifests": [{"digest": "sha512:${'ab'.repeat(64)}", "size": 3, "annotations": {"${REF}": "t"}}]}`,
      '{"manifests": [{"digest": 5, "size": 3}]}',
    ];
    for (const body of bodies) {
      const dir = join(tempDir(), 'bad');
      cpSync(layout, dir, { recursive: true });
      writeFileSync(join(dir, 'index.json'), body);
      expect(await codeOf(importLayout(c, dir, body.includes('"t"') ? 't' : undefined)), body).toBe('E_OCI_LAYOUT');
      if (!body.includes('[{'))
        expect(await codeOf(exportLayout(MULTI, dir, 'x')), body).toBe(
          body === '{"manifests": []}' ? 'OK' : 'E_OCI_LAYOUT',
        );
    }
  });
});

describe.skipIf(!available || !skopeo)('indexes served by docker-registry', () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startRegistry();
  });
  afterAll(async () => reg?.stop());

  it('a tag naming one package listed once per platform pulls it', async () => {
    await run('skopeo', [
      'copy',
      '--all',
      '--dest-tls-verify=false',
      `oci:${layout}:per-platform`,
      `docker://${reg.host}/pp/p:1`,
    ]);
    const r = await pull(`${reg.host}/pp/p:1`, { cache: await cache() });
    expect(r.packageId).toBe(multiId);
  });

  it('a tag naming an index of indexes (skopeo cannot publish one: PUT from the spec) pulls the package', async () => {
    // the inner index and what it lists, published by skopeo; the outer index put by hand
    await run('skopeo', [
      'copy',
      '--all',
      '--dest-tls-verify=false',
      `oci:${layout}:inner`,
      `docker://${reg.host}/nest/p:inner`,
    ]);
    // the index as the registry holds it (skopeo may write it anew): its digest and size
    const raw = Buffer.from(
      (await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/nest/p:inner`])).stdout,
    );
    const inner = {
      mediaType: INDEX,
      digest: `sha256:${createHash('sha256').update(raw).digest('hex')}`,
      size: raw.length,
    };
    const outer = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: INDEX, manifests: [inner] }));
    const put = await fetch(`http://${reg.host}/v2/nest/p/manifests/outer`, {
      method: 'PUT',
      headers: { 'content-type': INDEX },
      body: outer,
    });
    expect(put.status, await put.clone().text()).toBe(201);
    const r = await pull(`${reg.host}/nest/p:outer`, { cache: await cache() });
    expect(r.packageId).toBe(multiId);
  });
});
