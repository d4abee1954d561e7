/**
 * `xpkg serve --ref name=oci://…`: a reference is pulled from a real registry on loopback, copied
 * into the repository and served; a newer signed version pushed to the same tag swaps in; with the
 * registry gone the version in the folder keeps serving.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Cache } from '../oci/cache.js';
import { push } from '../oci/push.js';
import { parseReference } from '../serve/references.js';
import { codeOf } from './helpers/errors.js';
import { registryAvailable, startRegistry, type TestRegistry } from './helpers/registry.js';
import { idOf, postJson, type TestServer, testServer, until, versionedPackage } from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

vi.setConfig({ testTimeout: 120_000 });

const available = registryAvailable();
if (!available && process.env.CI) throw new Error('docker-registry is missing (.ci/run installs it)');

const NAME = 'multi-variant-add-one';

it('a reference names its model file: name=… or the repository’s last segment', async () => {
  expect(parseReference('oci://127.0.0.1:5000/models/ocr:4')).toEqual({
    name: 'ocr',
    reference: 'oci://127.0.0.1:5000/models/ocr:4',
  });
  expect(parseReference('det=oci://h.example/x/y@sha256:' + 'a'.repeat(64)).name).toBe('det');
  expect(parseReference('localhost:5000/models/adder').name).toBe('adder');
  expect(await codeOf(Promise.resolve().then(() => parseReference('Bad Name=oci://h/r:1')))).toBe('E_SERVE_CONFIG');
  // a reference that cannot parse (no registry host, none by default) is refused at start
  expect(await codeOf(Promise.resolve().then(() => parseReference('bad')))).toBe('E_SERVE_CONFIG');
});

describe.skipIf(!available)('serve with registry references', () => {
  let reg: TestRegistry;
  let s: TestServer;
  let v1: string;
  let v2: string;
  const add = async (x: number) =>
    postJson(`${s.url}/v2/models/${NAME}/infer`, { inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [x] }] });

  beforeAll(async () => {
    reg = await startRegistry();
    v1 = await versionedPackage({ sequence: 1, k: 1 });
    v2 = await versionedPackage({ sequence: 2, k: 2 });
    await push(v1, `${reg.host}/models/adder:stable`, { cache: await Cache.open(tempDir('xpkg-push-cache-')) });
    s = await testServer({
      repo: tempDir('xpkg-serve-repo-'),
      references: [parseReference(`oci://${reg.host}/models/adder:stable`)],
      refPollMs: 300,
    });
  });

  afterAll(async () => {
    await s?.close();
    await reg?.stop();
  });

  it('pulls, verifies and serves the tagged version, then swaps in a newer one pushed to the tag', async () => {
    const r = await add(5);
    expect([r.status, r.body.model_version, r.body.outputs[0].data]).toEqual([200, await idOf(v1), [6]]);
    await push(v2, `${reg.host}/models/adder:stable`, { cache: await Cache.open(tempDir('xpkg-push-cache-')) });
    await until(async () => (await add(5)).body.outputs?.[0]?.data?.[0] === 7, 30_000, 'v2 served');
    expect((await add(1)).body.model_version).toBe(await idOf(v2));
  });

  it('with the registry gone, the version in the repository keeps serving', async () => {
    await reg.stop();
    // several re-resolutions (300 ms apart) against a registry that is gone
    await new Promise((r) => setTimeout(r, 1500));
    const r = await add(2);
    expect([r.status, r.body.model_version, r.body.outputs[0].data]).toEqual([200, await idOf(v2), [4]]);
  });
});
