/**
 * `xpkg gpu install`: refusals before any download, digest checks on the tarball and on each
 * library, atomic placement, idempotence. Real tarballs made with `tar`, real folders; the 180 MB
 * package itself is fetched only by a person (or with XPKG_GPU_TARBALL pointing at it).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { afterEach, describe, expect, it } from 'vitest';
import { CUDA_PROVIDER, installGpuProviders, ortBinding, type ProviderPackage } from '../runner/gpu-install.js';
import { EXIT } from '../spec/errors.js';
import { xpkg } from './helpers/cli.js';
import { codeOf } from './helpers/errors.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function temp(): string {
  const d = mkdtempSync(join(tmpdir(), 'xpkg-gpu-test-'));
  dirs.push(d);
  return d;
}

/** A tarball laid out like the provider package, with the given library contents. */
async function fakePackage(libs: Record<string, Buffer>): Promise<{ tarball: string; pkg: ProviderPackage }> {
  const root = temp();
  const sub = 'package/Plugins/Linux/x64';
  mkdirSync(join(root, sub), { recursive: true });
  writeFileSync(join(root, 'package/package.json'), '{"name":"fake"}');
  for (const [name, bytes] of Object.entries(libs)) writeFileSync(join(root, sub, name), bytes);
  const tarball = join(temp(), 'fake.tgz');
  await tar.c({ gzip: true, file: tarball, cwd: root }, ['package']);
  const pkg: ProviderPackage = {
    ...CUDA_PROVIDER,
    tarballSha256: sha(readFileSync(tarball)),
    files: Object.entries(libs).map(([name, bytes]) => ({
      entry: `${sub}/${name}`,
      name,
      sha256: sha(bytes),
      size: bytes.length,
    })),
  };
  return { tarball, pkg };
}

const LIBS = {
  'libonnxruntime_providers_shared.so': Buffer.from('shared bridge'),
  'libonnxruntime_providers_cuda.so': Buffer.from('cuda provider '.repeat(1000)),
};

describe('gpu install', () => {
  it('pins onnxruntime-node to the release the provider libraries match', () => {
    const pkgJson = JSON.parse(readFileSync('package.json', 'utf8')) as { dependencies: Record<string, string> };
    expect(pkgJson.dependencies['onnxruntime-node']).toBe(CUDA_PROVIDER.ortVersion);
    expect(ortBinding().version).toBe(CUDA_PROVIDER.ortVersion);
  });

  it('refuses another onnxruntime-node version before fetching anything', async () => {
    const dir = temp();
    // no tarball given: getting past the check would run npm pack
    expect(await codeOf(installGpuProviders({ binding: { dir, version: '1.30.0' } }))).toBe('E_GPU_RUNTIME_VERSION');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses a platform the libraries are not built for', async () => {
    expect(
      await codeOf(
        installGpuProviders({ platform: 'darwin', arch: 'arm64', binding: { dir: temp(), version: '1.29.0' } }),
      ),
    ).toBe('E_GPU_PLATFORM');
  });

  it('refuses a tarball that is not the pinned one and places nothing', async () => {
    const { tarball } = await fakePackage(LIBS);
    const dir = temp();
    expect(await codeOf(installGpuProviders({ tarball, binding: { dir, version: '1.29.0' } }))).toBe('E_GPU_DIGEST');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a tarball that cannot be read is E_GPU_FETCH, not a raw file-system error', async () => {
    const { pkg } = await fakePackage(LIBS);
    expect(
      await codeOf(
        installGpuProviders({ pkg, tarball: join(temp(), 'absent.tgz'), binding: { dir: temp(), version: '1.29.0' } }),
      ),
    ).toBe('E_GPU_FETCH');
  });

  it('refuses a library whose digest differs, before placing any', async () => {
    const { tarball, pkg } = await fakePackage(LIBS);
    pkg.files[1] = { ...pkg.files[1], sha256: '0'.repeat(64) };
    const dir = temp();
    expect(await codeOf(installGpuProviders({ pkg, tarball, binding: { dir, version: '1.29.0' } }))).toBe(
      'E_GPU_DIGEST',
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  it('places both libraries beside the binding, leaves no temp file, and is idempotent', async () => {
    const { tarball, pkg } = await fakePackage(LIBS);
    const dir = temp();
    writeFileSync(join(dir, 'libonnxruntime.so.1'), 'ort');
    const r = await installGpuProviders({ pkg, tarball, binding: { dir, version: '1.29.0' } });
    expect(r.files.map((f) => f.action)).toEqual(['installed', 'installed']);
    expect(readdirSync(dir).sort()).toEqual([
      'libonnxruntime.so.1',
      'libonnxruntime_providers_cuda.so',
      'libonnxruntime_providers_shared.so',
    ]);
    for (const [name, bytes] of Object.entries(LIBS)) expect(readFileSync(join(dir, name))).toEqual(bytes);
    // everything in place: the tarball is not even read
    const again = await installGpuProviders({
      pkg,
      tarball: join(dir, 'absent.tgz'),
      binding: { dir, version: '1.29.0' },
    });
    expect(again.files.map((f) => f.action)).toEqual(['present', 'present']);
  });

  it('replaces a library that was altered in place', async () => {
    const { tarball, pkg } = await fakePackage(LIBS);
    const dir = temp();
    await installGpuProviders({ pkg, tarball, binding: { dir, version: '1.29.0' } });
    writeFileSync(join(dir, 'libonnxruntime_providers_cuda.so'), 'tampered');
    const r = await installGpuProviders({ pkg, tarball, binding: { dir, version: '1.29.0' } });
    expect(r.files.map((f) => f.action)).toEqual(['present', 'installed']);
    expect(readFileSync(join(dir, 'libonnxruntime_providers_cuda.so'))).toEqual(
      LIBS['libonnxruntime_providers_cuda.so'],
    );
  });

  it('the CLI reports a wrong tarball with E_GPU_DIGEST and its own exit status', async () => {
    const { tarball } = await fakePackage(LIBS);
    const r = xpkg(['gpu', 'install', '--tarball', tarball, '--no-binding', '--json']);
    const installed = CUDA_PROVIDER.files.every((f) => readdirSync(ortBinding().dir).includes(f.name));
    if (installed)
      expect(r.json?.result?.files?.length).toBe(2); // already installed here: nothing to fetch or check
    else {
      expect(r.json?.error?.code).toBe('E_GPU_DIGEST');
      expect(r.status).toBe(EXIT.gpu);
    }
  });

  it.skipIf(!process.env.XPKG_GPU_TARBALL)('accepts the real pinned package (XPKG_GPU_TARBALL)', async () => {
    const dir = temp();
    const r = await installGpuProviders({
      tarball: process.env.XPKG_GPU_TARBALL!,
      binding: { dir, version: '1.29.0' },
    });
    expect(r.tarballSha256).toBe(CUDA_PROVIDER.tarballSha256);
    expect(readdirSync(dir).sort()).toEqual(CUDA_PROVIDER.files.map((f) => f.name).sort());
  });
});
