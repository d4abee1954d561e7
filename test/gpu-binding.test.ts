/**
 * `xpkg gpu install`'s build step for the C API binding (runner/gpu-binding.ts): the header package
 * is checked against its pinned digests (the tarball, then each header) before anything is
 * compiled. Real tarballs made with `tar`; the real 150 MB package only with
 * XPKG_ORT_HEADERS_TARBALL pointing at it (then the binding is really built and loaded).
 */
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { afterEach, describe, expect, it } from 'vitest';
import { loadCapi, resetCapi } from '../runner/backends/ort-capi.js';
import { buildOrtBinding, type HeaderPackage, nodeGyp, ORT_HEADERS } from '../runner/gpu-binding.js';
import { ortBinding } from '../runner/gpu-install.js';
import { codeOf } from './helpers/errors.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function temp(): string {
  const d = mkdtempSync(join(tmpdir(), 'xpkg-ortbind-test-'));
  dirs.push(d);
  return d;
}

/** A tarball with the header package's layout and these headers. */
async function fakeHeaders(headers: Record<string, string>): Promise<{ tarball: string; pkg: HeaderPackage }> {
  const root = temp();
  mkdirSync(join(root, ORT_HEADERS.dir), { recursive: true });
  for (const [name, text] of Object.entries(headers)) writeFileSync(join(root, ORT_HEADERS.dir, name), text);
  const tarball = join(temp(), 'headers.tgz');
  await tar.c({ gzip: true, file: tarball, cwd: root }, ['package']);
  const pkg: HeaderPackage = {
    ...ORT_HEADERS,
    tarballSha256: sha(readFileSync(tarball)),
    files: Object.entries(headers).map(([name, text]) => ({ name, sha256: sha(Buffer.from(text)), size: text.length })),
  };
  return { tarball, pkg };
}

describe('gpu install: the C API binding', () => {
  it('finds npm’s node-gyp', () => {
    expect(nodeGyp()).toMatch(/node-gyp\.js$/);
  });

  it('refuses a header tarball that is not the pinned one, before compiling anything', async () => {
    const { tarball } = await fakeHeaders({ 'onnxruntime_c_api.h': '#error not onnxruntime\n' });
    expect(await codeOf(buildOrtBinding({ tarball, rebuild: true }))).toBe('E_GPU_DIGEST');
  });

  it('refuses a header whose digest differs from its pin, and a header the tarball lacks', async () => {
    const { tarball, pkg } = await fakeHeaders({ 'onnxruntime_c_api.h': 'one\n', 'onnxruntime_error_code.h': 'two\n' });
    const altered: HeaderPackage = { ...pkg, files: [{ ...pkg.files[0], sha256: sha(Buffer.from('other')) }] };
    expect(await codeOf(buildOrtBinding({ tarball, rebuild: true, pkg: altered }))).toBe('E_GPU_DIGEST');
    const missing: HeaderPackage = {
      ...pkg,
      files: [...pkg.files, { name: 'onnxruntime_ep_c_api.h', sha256: 'x', size: 1 }],
    };
    expect(await codeOf(buildOrtBinding({ tarball, rebuild: true, pkg: missing }))).toBe('E_GPU_DIGEST');
  });

  it.skipIf(!process.env.XPKG_ORT_HEADERS_TARBALL)(
    'builds the binding from the real pinned package and loads it on onnxruntime-node’s library',
    async () => {
      // a copy of the sources inside the checkout (node-addon-api resolves from there), so the
      // binding other test files load (built by the global set-up) is never rebuilt under them
      const source = mkdtempSync(join(process.cwd(), 'native', 'ort-build-test-'));
      dirs.push(source);
      for (const f of ['binding.gyp', 'session.cc']) copyFileSync(join('native', 'ort', f), join(source, f));
      const r = await buildOrtBinding({ tarball: process.env.XPKG_ORT_HEADERS_TARBALL!, rebuild: true, source });
      expect(r).toMatchObject({ action: 'built', tarballSha256: ORT_HEADERS.tarballSha256 });
      resetCapi();
      expect(loadCapi(ortBinding().dir, { XPKG_ORT_CAPI_PATH: r.path })).toMatchObject({
        version: ortBinding().version,
      });
    },
    240_000,
  );
});
