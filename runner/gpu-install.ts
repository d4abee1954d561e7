/**
 * `xpkg gpu install`: the opt-in CUDA execution provider for onnxruntime-node, from npm alone.
 *
 * onnxruntime-node's npm package bundles the CPU and WebGPU providers only. The CUDA provider is a
 * pair of shared libraries that onnxruntime loads from the folder of its own `libonnxruntime.so.1`,
 * and they must come from the same onnxruntime release. `com.github.asus4.onnxruntime.linux-x64-gpu`
 * ships exactly those for onnxruntime 1.29.0 (CUDA 13, MIT). This fetches it with `npm pack`, checks
 * the tarball and both libraries against the digests pinned here, and places them beside
 * onnxruntime's binding, each through a temp file + rename. CPU users download nothing.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { RunnerError } from '../spec/errors.js';

export interface PinnedFile {
  /** Path inside the tarball. */
  entry: string;
  /** File name beside libonnxruntime.so.1. */
  name: string;
  sha256: string;
  size: number;
}

export interface ProviderPackage {
  /** npm spec given to `npm pack`. */
  spec: string;
  /** sha256 of the tarball `npm pack` writes. */
  tarballSha256: string;
  /** The onnxruntime-node version these libraries were built with; no other loads them. */
  ortVersion: string;
  platform: NodeJS.Platform;
  arch: string;
  /** In placing order: the shared bridge first, so an interrupted install never leaves a cuda library without it. */
  files: PinnedFile[];
}

/** Measured with `npm pack com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9` (179 MB). */
export const CUDA_PROVIDER: ProviderPackage = {
  spec: 'com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9',
  tarballSha256: '2b459e0c17f340c92970c10ed86de4f37a3009f93c14053e6ad4334cbb6be412',
  ortVersion: '1.29.0',
  platform: 'linux',
  arch: 'x64',
  files: [
    {
      entry: 'package/Plugins/Linux/x64/libonnxruntime_providers_shared.so',
      name: 'libonnxruntime_providers_shared.so',
      sha256: 'c6a12593396095f5670160e284c35d1700b7708cf3037b7042e2a5200ccae772',
      size: 14632,
    },
    {
      entry: 'package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so',
      name: 'libonnxruntime_providers_cuda.so',
      sha256: '56cf3254b118ad837ccc4ed8f6d1b23504bbf7ef91b34cbc0b289cb7f10b3037',
      size: 229780440,
    },
  ],
};

export interface OrtBinding {
  /** The folder holding libonnxruntime.so.1 (where onnxruntime looks for provider libraries). */
  dir: string;
  version: string;
}

/** Where the installed onnxruntime-node keeps its native binding, and its version. */
export function ortBinding(module = 'onnxruntime-node'): OrtBinding {
  const req = createRequire(import.meta.url);
  let pkgDir: string;
  try {
    pkgDir = dirname(req.resolve(`${module}/package.json`));
  } catch {
    // packages whose exports hide package.json: walk up from the entry
    pkgDir = join(dirname(req.resolve(module)), '..');
  }
  const version = (JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { version: string }).version;
  return { dir: join(pkgDir, 'bin', 'napi-v6', process.platform, process.arch), version };
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Runs `npm pack <spec>` into `dir` and returns the tarball's path. */
export async function npmPack(spec: string, dir: string): Promise<string> {
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(
      process.platform === 'win32' ? 'npm.cmd' : 'npm',
      ['pack', spec, '--silent', '--pack-destination', dir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (e) =>
      reject(new RunnerError('E_GPU_FETCH', `cannot run npm to fetch ${spec}: ${e.message}`, { spec }, { cause: e })),
    );
    child.on('close', (code) =>
      code === 0
        ? resolve(stdout)
        : reject(
            new RunnerError(
              'E_GPU_FETCH',
              `npm pack ${spec} failed (exit ${code}): ${stderr.trim().split('\n').slice(-2).join(' ')}`,
              { spec, exitCode: code },
            ),
          ),
    );
  });
  const named = out.trim().split('\n').pop()?.trim();
  const files = (await readdir(dir)).filter((f) => f.endsWith('.tgz'));
  const file = named && files.includes(named) ? named : files[0];
  if (!file) throw new RunnerError('E_GPU_FETCH', `npm pack ${spec} wrote no tarball`, { spec });
  return join(dir, file);
}

export interface InstallOptions {
  /** What to install (default: CUDA_PROVIDER). */
  pkg?: ProviderPackage;
  /** Where onnxruntime-node is and which version (default: the one xpkg imports). */
  binding?: OrtBinding;
  /** A tarball already on disk instead of `npm pack` (offline installs, tests). */
  tarball?: string;
  platform?: NodeJS.Platform;
  arch?: string;
  log?: (line: string) => void;
}

export interface InstallResult {
  dir: string;
  ortVersion: string;
  /** Every library and whether it was written now or already there with the pinned digest. */
  files: { name: string; sha256: string; size: number; action: 'installed' | 'present' }[];
  /** sha256 of the tarball, when one was fetched. */
  tarballSha256?: string;
}

/** A library already in place with the pinned digest (size first: hashing 230 MB is not free). */
async function inPlace(dir: string, f: PinnedFile): Promise<boolean> {
  const p = join(dir, f.name);
  const s = await stat(p).catch(() => null);
  return Boolean(s?.isFile() && s.size === f.size && (await sha256File(p)) === f.sha256);
}

/**
 * Installs the provider libraries beside onnxruntime-node's binding. Refuses (E_GPU_PLATFORM,
 * E_GPU_RUNTIME_VERSION) before downloading anything when they could not load here; a tarball or
 * library that differs from the pins is E_GPU_DIGEST and nothing is placed. Running it again
 * with everything in place downloads nothing.
 */
export async function installGpuProviders(options: InstallOptions = {}): Promise<InstallResult> {
  const pkg = options.pkg ?? CUDA_PROVIDER;
  const platform = options.platform ?? process.platform;
  const arch = options.arch ?? process.arch;
  const log = options.log ?? (() => {});
  if (platform !== pkg.platform || arch !== pkg.arch) {
    throw new RunnerError(
      'E_GPU_PLATFORM',
      `${pkg.spec} has provider libraries for ${pkg.platform}-${pkg.arch} only; this is ${platform}-${arch}`,
      { platform, arch, supported: `${pkg.platform}-${pkg.arch}` },
    );
  }
  let binding: OrtBinding;
  try {
    binding = options.binding ?? ortBinding();
  } catch (e) {
    throw new RunnerError(
      'E_GPU_RUNTIME_VERSION',
      `onnxruntime-node is not installed: ${(e as Error).message.split('\n')[0]}`,
      { wanted: pkg.ortVersion },
      { cause: e },
    );
  }
  if (binding.version !== pkg.ortVersion) {
    throw new RunnerError(
      'E_GPU_RUNTIME_VERSION',
      `the CUDA provider of ${pkg.spec} is built for onnxruntime ${pkg.ortVersion}; the installed onnxruntime-node is ${binding.version} (install onnxruntime-node@${pkg.ortVersion})`,
      { wanted: pkg.ortVersion, installed: binding.version },
    );
  }
  if (!existsSync(binding.dir))
    throw new RunnerError('E_GPU_PLACE', `onnxruntime-node has no binding folder ${binding.dir}`, { dir: binding.dir });

  const present = await Promise.all(pkg.files.map((f) => inPlace(binding.dir, f)));
  const files: InstallResult['files'] = pkg.files.map((f, i) => ({
    name: f.name,
    sha256: f.sha256,
    size: f.size,
    action: present[i] ? 'present' : 'installed',
  }));
  if (present.every(Boolean)) return { dir: binding.dir, ortVersion: binding.version, files };

  const work = await mkdtemp(join(tmpdir(), 'xpkg-gpu-'));
  try {
    let tarball = options.tarball;
    if (!tarball) {
      log(`fetching ${pkg.spec} with npm pack (about 180 MB)…`);
      tarball = await npmPack(pkg.spec, work);
    }
    const tarballSha256 = await sha256File(tarball).catch((e: unknown) => {
      throw new RunnerError(
        'E_GPU_FETCH',
        `cannot read ${tarball}: ${(e as Error).message}`,
        { file: tarball },
        { cause: e },
      );
    });
    if (tarballSha256 !== pkg.tarballSha256) {
      throw new RunnerError(
        'E_GPU_DIGEST',
        `${pkg.spec}: the tarball's sha256 is ${tarballSha256}, not the pinned ${pkg.tarballSha256}`,
        { file: tarball, expected: pkg.tarballSha256, actual: tarballSha256 },
      );
    }
    const wanted = new Set(pkg.files.map((f) => f.entry));
    const out = join(work, 'x');
    await mkdir(out);
    // loaded here only: host detection imports this module for the pins
    const tar = await import('tar');
    try {
      await tar.x({ file: tarball, cwd: out, filter: (p) => wanted.has(p.replace(/^\.\//, '')), strict: true });
    } catch (e) {
      throw new RunnerError(
        'E_GPU_FETCH',
        `cannot unpack ${tarball}: ${(e as Error).message}`,
        { file: tarball },
        { cause: e },
      );
    }
    // every library is checked before any is placed
    for (const f of pkg.files) {
      const p = join(out, f.entry);
      if (!existsSync(p)) throw new RunnerError('E_GPU_DIGEST', `${pkg.spec} has no ${f.entry}`, { entry: f.entry });
      const sha = await sha256File(p);
      if (sha !== f.sha256)
        throw new RunnerError('E_GPU_DIGEST', `${f.entry}: sha256 ${sha}, not the pinned ${f.sha256}`, {
          entry: f.entry,
          expected: f.sha256,
          actual: sha,
        });
    }
    for (const [i, f] of pkg.files.entries()) {
      if (present[i]) continue;
      // copied into the destination folder first so the rename is atomic on that file system
      const dest = join(binding.dir, f.name);
      const temp = join(binding.dir, `.${f.name}.${process.pid}.tmp`);
      try {
        await copyFile(join(out, f.entry), temp);
        await rename(temp, dest);
      } catch (e) {
        await rm(temp, { force: true }).catch(() => {});
        throw new RunnerError(
          'E_GPU_PLACE',
          `cannot write ${dest}: ${(e as Error).message}`,
          { file: dest },
          { cause: e },
        );
      }
      log(`placed ${dest}`);
    }
    return { dir: binding.dir, ortVersion: binding.version, files, tarballSha256 };
  } finally {
    await rm(work, { recursive: true, force: true }).catch(() => {});
  }
}
