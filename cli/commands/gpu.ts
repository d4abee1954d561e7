/** `xpkg gpu install [--json]`: the opt-in CUDA execution provider (runner/gpu-install.ts). */
import type { Command } from 'commander';
import type { InstallResult } from '../../runner/gpu-install.js';
import { action, type CommandOutcome, type Io } from '../framework.js';

export interface GpuInstallOptions {
  json?: boolean;
  /** A tarball of the provider package already on disk (offline install); still checked against the pins. */
  tarball?: string;
}

export async function gpuInstallCommand(io: Io, opts: GpuInstallOptions): Promise<CommandOutcome<InstallResult>> {
  // Imported on use: `xpkg --help` and the other commands load none of it.
  const { installGpuProviders } = await import('../../runner/gpu-install.js');
  const r = await installGpuProviders({ ...(opts.tarball ? { tarball: opts.tarball } : {}), log: (l) => io.log(l) });
  const lines = r.files.map(
    (f) =>
      `  ${f.action === 'installed' ? 'installed' : 'present  '} ${f.name} (${(f.size / 1048576).toFixed(1)} MB, sha256 ${f.sha256.slice(0, 16)}…)`,
  );
  return {
    result: r,
    human: [
      `CUDA execution provider for onnxruntime ${r.ortVersion} in ${r.dir}:`,
      ...lines,
      'it needs the CUDA 13 runtime (libcudart, cuBLAS) and cuDNN 9 on the loader path; `xpkg host` says whether it loads',
    ].join('\n'),
  };
}

export function register(program: Command): void {
  const gpu = program
    .command('gpu')
    .description('GPU execution providers for onnxruntime (opt-in; the CPU install needs none)');
  const install = gpu
    .command('install')
    .description(
      "fetch onnxruntime's CUDA provider package with npm, check it against pinned sha256 digests and place its libraries beside onnxruntime-node's",
    )
    .option('--tarball <file>', 'use this tarball of the package instead of running npm pack (checked the same way)')
    .option('--json', 'print one JSON document on stdout');
  action<[], GpuInstallOptions>(install, gpuInstallCommand);
}
