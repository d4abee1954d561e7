/** `xpkg gpu install [--json]`: the opt-in CUDA execution provider (runner/gpu-install.ts). */
import type { Command } from 'commander';
import type { BindingResult } from '../../runner/gpu-binding.js';
import type { InstallResult } from '../../runner/gpu-install.js';
import { action, type CommandOutcome, type Io } from '../framework.js';

export interface GpuInstallOptions {
  json?: boolean;
  /** A tarball of the provider package already on disk (offline install); still checked against the pins. */
  tarball?: string;
  /** A tarball of the C API header package already on disk; still checked against the pins. */
  headersTarball?: string;
  /** commander's `--no-binding`: false skips building the C API binding. */
  binding?: boolean;
}

export type GpuInstallResult = InstallResult & {
  /** xpkg's C API binding (cuDNN HEURISTIC search): built, present, skipped, or why it could not be built. */
  binding: BindingResult | { action: 'skipped' } | { action: 'failed'; code: string; reason: string };
};

export async function gpuInstallCommand(io: Io, opts: GpuInstallOptions): Promise<CommandOutcome<GpuInstallResult>> {
  // Imported on use: `xpkg --help` and the other commands load none of it.
  const { installGpuProviders } = await import('../../runner/gpu-install.js');
  const { buildOrtBinding } = await import('../../runner/gpu-binding.js');
  const p = await installGpuProviders({ ...(opts.tarball ? { tarball: opts.tarball } : {}), log: (l) => io.log(l) });
  // The providers work without the binding (sessions then search cuDNN exhaustively): its failure is reported, not fatal.
  const binding: GpuInstallResult['binding'] =
    opts.binding === false
      ? { action: 'skipped' }
      : await buildOrtBinding({
          ...(opts.headersTarball ? { tarball: opts.headersTarball } : {}),
          log: (l) => io.log(l),
        }).catch((e: { code?: string; message?: string }) => ({
          action: 'failed' as const,
          code: e.code ?? 'E_GPU_BUILD',
          reason: String(e.message ?? e),
        }));
  const r: GpuInstallResult = { ...p, binding };
  const lines = r.files.map(
    (f) =>
      `  ${f.action === 'installed' ? 'installed' : 'present  '} ${f.name} (${(f.size / 1048576).toFixed(1)} MB, sha256 ${f.sha256.slice(0, 16)}…)`,
  );
  return {
    result: r,
    human: [
      `CUDA execution provider for onnxruntime ${r.ortVersion} in ${r.dir}:`,
      ...lines,
      binding.action === 'failed'
        ? `C API binding not built (${binding.code}: ${binding.reason}); CUDA sessions will search cuDNN's algorithms exhaustively at each new shape`
        : binding.action === 'skipped'
          ? 'C API binding skipped (--no-binding)'
          : `C API binding (cuDNN HEURISTIC search) ${binding.action}: ${binding.path}`,
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
    .option('--headers-tarball <file>', "use this tarball of onnxruntime's C API header package instead of npm pack")
    .option('--no-binding', "do not build xpkg's C API binding (cuDNN HEURISTIC search; needs a C++ compiler)")
    .option('--json', 'print one JSON document on stdout');
  action<[], GpuInstallOptions>(install, gpuInstallCommand);
}
