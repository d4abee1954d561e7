/**
 * Registry auth and interoperability, against real components on loopback: docker-registry behind
 * htpasswd Basic auth and behind token auth (a real token server in test/helpers/registry.ts), with
 * credentials from a Docker config folder and a Podman auth file; and Debian's skopeo copying a
 * pushed package between registries and into an OCI layout, which xpkg reads back byte-identical.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { EXIT } from '../spec/errors.js';
import { xpkgAsync as xpkg } from './helpers/cli.js';
import {
  registryAvailable,
  startRegistry,
  type TestRegistry,
  toolAvailable,
  writeAuthFile,
} from './helpers/registry.js';
import { tempDir } from './helpers/source.js';

vi.setConfig({ testTimeout: 120_000 });

const MULTI = 'fixtures/dist/multi-variant.xpkg';
const available = registryAvailable();
const skopeo = toolAvailable('skopeo');
if ((!available || !skopeo || !toolAvailable('openssl', ['version'])) && process.env.CI)
  throw new Error('docker-registry, skopeo or openssl is missing (.ci/run installs them)');
const run = promisify(execFile);

/** An environment with no auth file of the user's, a fresh cache and these extra variables. */
function env(extra: Record<string, string> = {}): Record<string, string> {
  const home = tempDir('xpkg-home-');
  return {
    HOME: home,
    XDG_RUNTIME_DIR: home,
    DOCKER_CONFIG: join(home, 'docker'),
    XPKG_CACHE: tempDir('xpkg-cache-'),
    ...extra,
  };
}

describe.skipIf(!available)('registry auth', () => {
  let basic: TestRegistry;
  let token: Awaited<ReturnType<typeof startRegistry>>;
  beforeAll(async () => {
    [basic, token] = await Promise.all([startRegistry('basic'), startRegistry('token')]);
  });
  afterAll(async () => {
    await basic?.stop();
    await token?.stop();
  });

  it('Basic auth: refused without credentials (E_OCI_AUTH), works with a Docker config.json', async () => {
    const none = await xpkg(['push', MULTI, `${basic.host}/auth/p:1`, '--json'], env());
    expect(none.json!.error!.code).toBe('E_OCI_AUTH');
    expect(none.status).toBe(EXIT.oci);
    const e = env();
    mkdirSync(e.DOCKER_CONFIG);
    writeAuthFile(join(e.DOCKER_CONFIG, 'config.json'), basic.host);
    expect((await xpkg(['push', MULTI, `${basic.host}/auth/p:1`], e)).status).toBe(0);
    const out = join(tempDir(), 'p.xpkg');
    const pull = await xpkg(['pull', `${basic.host}/auth/p:1`, '-o', out], { ...e, XPKG_CACHE: tempDir() });
    expect(pull.status, pull.stderr).toBe(0);
    expect(readFileSync(out).equals(readFileSync(MULTI))).toBe(true);
  });

  it('token auth: a token from the realm with Podman auth.json credentials; wrong ones are E_OCI_AUTH', async () => {
    const e = env();
    const authFile = join(tempDir(), 'auth.json');
    writeAuthFile(authFile, token.host);
    const before = token.tokens!.issued;
    const push = await xpkg(['push', MULTI, `${token.host}/tok/p:1`], { ...e, REGISTRY_AUTH_FILE: authFile });
    expect(push.status, push.stderr).toBe(0);
    expect(token.tokens!.issued).toBeGreaterThan(before);
    const out = join(tempDir(), 'p.xpkg');
    const pull = await xpkg(['pull', `${token.host}/tok/p:1`, '-o', out], { ...env(), REGISTRY_AUTH_FILE: authFile });
    expect(pull.status, pull.stderr).toBe(0);
    expect(readFileSync(out).equals(readFileSync(MULTI))).toBe(true);
    const wrong = join(tempDir(), 'wrong.json');
    writeFileSync(
      wrong,
      JSON.stringify({ auths: { [token.host]: { auth: Buffer.from('xpkg-test:nope').toString('base64') } } }),
    );
    const refused = await xpkg(['pull', `${token.host}/tok/p:1`, '--json'], { ...env(), REGISTRY_AUTH_FILE: wrong });
    expect(refused.json!.error!.code).toBe('E_OCI_AUTH');
    expect(refused.status).toBe(EXIT.oci);
  });
});

describe.skipIf(!available || !skopeo)('interoperability with skopeo', () => {
  let a: TestRegistry;
  let b: TestRegistry;
  beforeAll(async () => {
    [a, b] = await Promise.all([startRegistry(), startRegistry()]);
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  it('skopeo copies a pushed package to another registry and to an OCI layout; xpkg reads both back byte-identical', async () => {
    expect((await xpkg(['push', MULTI, `${a.host}/models/multi:1`], env())).status).toBe(0);
    const plain = ['--src-tls-verify=false', '--dest-tls-verify=false'];
    await run('skopeo', ['copy', ...plain, `docker://${a.host}/models/multi:1`, `docker://${b.host}/mirror/multi:1`]);
    const layout = join(tempDir(), 'layout');
    await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${b.host}/mirror/multi:1`, `oci:${layout}:v1`]);
    const fromB = join(tempDir(), 'b.xpkg');
    const pulled = await xpkg(['pull', `${b.host}/mirror/multi:1`, '-o', fromB], env());
    expect(pulled.status, pulled.stderr).toBe(0);
    expect(readFileSync(fromB).equals(readFileSync(MULTI))).toBe(true);
    const fromLayout = join(tempDir(), 'l.xpkg');
    const imported = await xpkg(['import', layout, '--tag', 'v1', '-o', fromLayout], env());
    expect(imported.status, imported.stderr).toBe(0);
    expect(readFileSync(fromLayout).equals(readFileSync(MULTI))).toBe(true);
  });

  it('xpkg export writes a layout (folder and tar) that skopeo publishes and xpkg pulls back byte-identical', async () => {
    const dir = join(tempDir(), 'exported');
    const tar = join(tempDir(), 'exported.tar');
    expect((await xpkg(['export', MULTI, '--oci-layout', dir, '--tag', 'v2'], env())).status).toBe(0);
    expect((await xpkg(['export', MULTI, '--oci-layout', tar, '--tag', 'v2'], env())).status).toBe(0);
    await run('skopeo', ['copy', '--dest-tls-verify=false', `oci:${dir}:v2`, `docker://${a.host}/from-layout/multi:2`]);
    const out = join(tempDir(), 'x.xpkg');
    expect((await xpkg(['pull', `${a.host}/from-layout/multi:2`, '-o', out], env())).status).toBe(0);
    expect(readFileSync(out).equals(readFileSync(MULTI))).toBe(true);
    const fromTar = join(tempDir(), 't.xpkg');
    const imported = await xpkg(['import', tar, '-o', fromTar], env());
    expect(imported.status, imported.stderr).toBe(0);
    expect(readFileSync(fromTar).equals(readFileSync(MULTI))).toBe(true);
  });
});
