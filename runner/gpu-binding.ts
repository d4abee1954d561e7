/**
 * The build step of `xpkg gpu install` for xpkg's binding over onnxruntime's C API
 * (native/ort/session.cc, runner/backends/ort-capi.ts): the C API headers of the onnxruntime release
 * the CUDA provider matches come from `com.github.asus4.onnxruntime@0.4.9` (MIT; its iOS framework
 * carries the platform-independent C headers), fetched with `npm pack`, checked against the digests
 * pinned here, unpacked into a temp folder, and the binding compiled against them with node-gyp.
 * Nothing of that package is kept or vendored; the built .node links nothing of onnxruntime.
 */
import { spawn } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { RunnerError } from '../spec/errors.js';
import { CAPI_BUILT, PACKAGE_ROOT } from './backends/ort-capi.js';
import { npmPack, sha256File } from './gpu-install.js';

export interface HeaderPackage {
  spec: string;
  tarballSha256: string;
  /** Where the headers sit in the tarball. */
  dir: string;
  files: { name: string; sha256: string; size: number }[];
}

/** Measured with `npm pack com.github.asus4.onnxruntime@0.4.9` (150 MB): onnxruntime 1.29.0, C API 29. */
export const ORT_HEADERS: HeaderPackage = {
  spec: 'com.github.asus4.onnxruntime@0.4.9',
  tarballSha256: 'e59788788818fdde1b2e522e766a21ba0f7d8391de55737abf81e32cc801785d',
  dir: 'package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers',
  files: [
    {
      name: 'onnxruntime_c_api.h',
      sha256: 'acc0cf4b3f28d39339c76770d76164bb7a0637dc89f5fde764b4017b632f6743',
      size: 398209,
    },
    {
      name: 'onnxruntime_ep_c_api.h',
      sha256: 'e6c986c9e98583f8113b2c6bc3864814883b806d501cf24da4d239c45753e235',
      size: 156950,
    },
    {
      name: 'onnxruntime_error_code.h',
      sha256: '5ce3b054e798eced8d14f5b86e98692fd33470463f96194ce0700a2d53dd8721',
      size: 2775,
    },
  ],
};

export interface BindingResult {
  path: string;
  action: 'built' | 'present';
  /** sha256 of the header tarball, when one was fetched. */
  tarballSha256?: string;
}

/** npm's own node-gyp (npm runs it for `install` scripts; xpkg does not depend on it). */
export function nodeGyp(env: NodeJS.ProcessEnv = process.env): string | null {
  const candidates = [env.npm_config_node_gyp];
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    const npm = join(dir, 'npm');
    if (!existsSync(npm)) continue;
    candidates.push(join(dirname(realpathSync(npm)), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  candidates.push(
    join(
      dirname(process.execPath),
      '..',
      'lib',
      'node_modules',
      'npm',
      'node_modules',
      'node-gyp',
      'bin',
      'node-gyp.js',
    ),
  );
  return candidates.find((c): c is string => Boolean(c && existsSync(c))) ?? null;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (d: Buffer) => (output = (output + d.toString()).slice(-8000));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

/**
 * Fetches (or takes `tarball`), checks and unpacks the headers, and builds the binding into
 * native/ort/build. Already built: nothing is fetched unless `rebuild`. Failures are E_GPU_FETCH,
 * E_GPU_DIGEST or E_GPU_BUILD (no compiler, no node-gyp).
 */
export async function buildOrtBinding(
  o: {
    tarball?: string;
    rebuild?: boolean;
    log?: (line: string) => void;
    pkg?: HeaderPackage;
    /** The binding's source folder (binding.gyp), built in place (default native/ort). */
    source?: string;
  } = {},
): Promise<BindingResult> {
  const pkg = o.pkg ?? ORT_HEADERS;
  const log = o.log ?? (() => {});
  const source = o.source ?? join(PACKAGE_ROOT, 'native', 'ort');
  const built = o.source ? join(source, 'build', 'Release', 'xpkg_ort.node') : CAPI_BUILT;
  if (existsSync(built) && !o.rebuild) return { path: built, action: 'present' };
  const gyp = nodeGyp();
  if (!gyp) throw new RunnerError('E_GPU_BUILD', 'node-gyp not found (it comes with npm)', {});
  const work = await mkdtemp(join(tmpdir(), 'xpkg-ort-headers-'));
  try {
    let tarball = o.tarball;
    if (!tarball) {
      log(`fetching ${pkg.spec} with npm pack (about 150 MB) for onnxruntime's C API headers…`);
      tarball = await npmPack(pkg.spec, work);
    }
    const tarballSha256 = await sha256File(tarball).catch((e: unknown) => {
      throw new RunnerError('E_GPU_FETCH', `cannot read ${tarball}: ${(e as Error).message}`, { file: tarball });
    });
    if (tarballSha256 !== pkg.tarballSha256)
      throw new RunnerError(
        'E_GPU_DIGEST',
        `${pkg.spec}: the tarball's sha256 is ${tarballSha256}, not the pinned ${pkg.tarballSha256}`,
        { file: tarball, expected: pkg.tarballSha256, actual: tarballSha256 },
      );
    const out = join(work, 'x');
    await mkdir(out);
    const wanted = new Set(pkg.files.map((f) => `${pkg.dir}/${f.name}`));
    const tar = await import('tar');
    await tar
      .x({ file: tarball, cwd: out, filter: (p) => wanted.has(p.replace(/^\.\//, '')), strict: true })
      .catch((e: unknown) => {
        throw new RunnerError('E_GPU_FETCH', `cannot unpack ${tarball}: ${(e as Error).message}`, { file: tarball });
      });
    const headers = join(out, pkg.dir);
    for (const f of pkg.files) {
      const p = join(headers, f.name);
      const sha = existsSync(p) ? await sha256File(p) : 'absent';
      if (sha !== f.sha256)
        throw new RunnerError('E_GPU_DIGEST', `${pkg.dir}/${f.name}: sha256 ${sha}, not the pinned ${f.sha256}`, {
          entry: f.name,
          expected: f.sha256,
          actual: sha,
        });
    }
    log('building the C API binding (node-gyp)…');
    // node's own headers where this node has them (distribution packages), else node-gyp fetches them
    const nodedir = dirname(dirname(process.execPath));
    const local = existsSync(join(nodedir, 'include', 'node', 'node_api.h')) ? [`--nodedir=${nodedir}`] : [];
    const r = await run(process.execPath, [gyp, 'rebuild', `--directory=${source}`, ...local], {
      ...process.env,
      XPKG_ORT_HEADERS: headers,
    }).catch((e: unknown) => ({ code: -1, output: String((e as Error).message) }));
    if (r.code !== 0 || !existsSync(built))
      throw new RunnerError(
        'E_GPU_BUILD',
        `node-gyp could not build the binding: ${r.output.trim().split('\n').slice(-3).join(' ')}`,
        {
          exitCode: r.code,
        },
      );
    log(`built ${built}`);
    return { path: built, action: 'built', tarballSha256 };
  } finally {
    await rm(work, { recursive: true, force: true }).catch(() => {});
  }
}
