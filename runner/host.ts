/**
 * Host detection: OS, CPU, memory, GPUs, NPUs and usable runtimes, as one JSON-serialisable
 * profile. Detection never throws for a missing tool or file; what it could not find is listed in
 * `notDetected` with the reason. A profile can be injected instead (`--host <file>`, `XPKG_HOST`).
 */
import os from 'node:os';
import { nativeInfo } from '../native/index.js';
import { defaultRegistry } from './backends/index.js';
import type { BackendRegistry } from './backends/registry.js';
import { detectCpu } from './host-cpu.js';
import { detectGpus } from './host-gpu.js';
import { detectNpus } from './host-npu.js';
import { HOST_PROFILE_FORMAT, type HostDevice, type HostProfile, loadHostProfile, memoryText } from './host-profile.js';
import { detectRuntimes } from './host-runtimes.js';

export {
  devicesOf,
  HOST_PROFILE_FORMAT,
  type HostDevice,
  type HostProfile,
  hostSummary,
  loadHostProfile,
  type RuntimeInfo,
} from './host-profile.js';

export interface DetectOptions {
  /** Backends whose init decides which runtimes are usable (default: the process-wide registry). */
  registry?: BackendRegistry;
}

export async function detectHost(options: DetectOptions = {}): Promise<HostProfile> {
  const registry = options.registry ?? defaultRegistry();
  const [cpuPart, gpuPart, rtPart] = await Promise.all([detectCpu(), detectGpus(), detectRuntimes(registry)]);
  const npuPart = await detectNpus(cpuPart.cpu.model);
  // strings from /proc, sysctl and tools are clipped to the schema's bounds: detection must not fail on them
  const clip = (s: string, n = 256) => (s.length > n ? `${s.slice(0, n - 1)}…` : s) || 'unknown';
  cpuPart.cpu.model = clip(cpuPart.cpu.model);
  for (const d of [...gpuPart.gpus, ...npuPart.gpus, ...npuPart.npus]) {
    d.name = clip(d.name);
    // a size no device has (a tool's garbage) is unknown, not a reason to fail detection
    if (d.memoryMiB !== undefined && !(d.memoryMiB <= 2 ** 40)) delete d.memoryMiB;
  }
  const profile: HostProfile = {
    format: HOST_PROFILE_FORMAT,
    description: clip(`detected on ${os.hostname()}`, 1024),
    os: process.platform as HostProfile['os'],
    arch: process.arch as HostProfile['arch'],
    cpu: cpuPart.cpu,
    memoryMiB: cpuPart.memoryMiB,
    ...(cpuPart.limits ? { limits: cpuPart.limits } : {}),
    gpus: [...gpuPart.gpus, ...npuPart.gpus],
    npus: npuPart.npus,
    runtimes: rtPart.runtimes,
    notDetected: [...cpuPart.notDetected, ...gpuPart.notDetected, ...npuPart.notDetected, ...rtPart.notDetected],
    kernels: kernelBackend(),
  };
  // detection output must satisfy the same schema as injected profiles
  return loadHostProfile(profile);
}

/** Which pre/post-processing kernels this process runs: the addon (with its SIMD level) or portable TypeScript. */
function kernelBackend(): NonNullable<HostProfile['kernels']> {
  const k = nativeInfo();
  const clip = (s: string) => (s.length > 2048 ? `${s.slice(0, 2047)}…` : s);
  return {
    backend: k.backend,
    simd: k.simd.slice(0, 64),
    threads: k.threads,
    cuda: k.cudaBuilt,
    ...(k.loadError ? { loadError: clip(k.loadError) } : {}),
  };
}

export interface ResolveHostOptions extends DetectOptions {
  /** A profile, its JSON text, or a file path; wins over XPKG_HOST. */
  host?: string | HostProfile;
  env?: NodeJS.ProcessEnv;
}

/** The host to select for: `host` option, else the XPKG_HOST variable, else detection. */
export async function resolveHost(options: ResolveHostOptions = {}): Promise<HostProfile> {
  if (options.host !== undefined) return loadHostProfile(options.host);
  const env = (options.env ?? process.env).XPKG_HOST;
  if (env) return loadHostProfile(env);
  return detectHost(options);
}

/** Features worth showing a person; the JSON form has all of them. */
const SHOWN_FEATURES = [
  'sse4_2',
  'avx',
  'avx2',
  'fma',
  'f16c',
  'avx512f',
  'avx512bw',
  'avx512_vnni',
  'avx512_bf16',
  'avx512_fp16',
  'avx_vnni',
  'amx_tile',
  'amx_int8',
  'amx_bf16',
  'neon',
  'fp16',
  'dotprod',
  'i8mm',
  'bf16',
  'sve',
  'sve2',
  'sme',
];

function device(d: HostDevice): string {
  const parts = [
    d.arch,
    d.memoryMiB !== undefined ? memoryText(d.memoryMiB) : undefined,
    d.driver ? `driver ${d.driver}` : undefined,
    d.cuda ? `CUDA ${d.cuda}` : undefined,
  ].filter(Boolean);
  return `${d.vendor} ${d.name}${parts.length ? ` (${parts.join(', ')})` : ''}`;
}

/** "1.5 CPUs (cgroup quota), 4 CPUs allowed, 2048 MiB; 1 thread by default". */
export function limitsText(l: NonNullable<HostProfile['limits']>): string {
  const parts = [
    l.cpuQuota !== undefined ? `${l.cpuQuota} CPUs (cgroup quota)` : undefined,
    l.cpusAllowed !== undefined ? `${l.cpusAllowed} CPUs allowed (affinity)` : undefined,
    l.memoryMiB !== undefined ? `${l.memoryMiB} MiB memory (cgroup)` : undefined,
  ].filter(Boolean);
  return `${parts.join(', ')}; ${l.threads} thread${l.threads === 1 ? '' : 's'} by default`;
}

/** The human form of `xpkg host`. */
export function renderHost(h: HostProfile): string {
  const shown = SHOWN_FEATURES.filter((f) => h.cpu.features.includes(f));
  const lines = [
    `os        ${h.os} ${h.arch}`,
    `cpu       ${h.cpu.model} — ${h.cpu.physicalCores} cores, ${h.cpu.logicalCores} threads`,
    `features  ${shown.length ? shown.join(' ') : 'none of note'}${h.cpu.features.length > shown.length ? ` (+${h.cpu.features.length - shown.length} more in --json)` : ''}`,
    `memory    ${(h.memoryMiB / 1024).toFixed(1)} GiB${h.limits?.memoryMiB !== undefined ? ' (cgroup limit)' : ''}`,
    ...(h.limits ? [`limits    ${limitsText(h.limits)}`] : []),
    `gpus      ${h.gpus.length ? h.gpus.map(device).join('; ') : 'none detected'}`,
    `npus      ${h.npus.length ? h.npus.map(device).join('; ') : 'none detected'}`,
  ];
  const k = h.kernels;
  if (k)
    lines.push(
      `kernels   ${k.backend === 'native' ? `native (${k.simd}, ${k.threads} threads${k.cuda ? ', CUDA library built' : ''})` : `portable TypeScript — ${k.loadError ?? 'forced'}`}`,
    );
  lines.push('runtimes');
  for (const [name, r] of Object.entries(h.runtimes).sort(([a], [b]) => a.localeCompare(b))) {
    if (r.available) {
      const prov = r.providers ? ` — providers: ${r.providers.join(', ')}` : '';
      lines.push(`  ${name.padEnd(12)}${r.version ?? 'present'}${prov}${r.path ? ` (${r.path})` : ''}`);
      for (const u of r.unavailable ?? []) lines.push(`  ${''.padEnd(12)}  ${u.name}: not available — ${u.reason}`);
    } else lines.push(`  ${name.padEnd(12)}not detected — ${r.reason ?? 'absent'}`);
  }
  const other = h.notDetected.filter((n) => !n.what.startsWith('runtime '));
  if (other.length) {
    lines.push('not detected');
    for (const n of other) lines.push(`  ${n.what}: ${n.reason}`);
  }
  return lines.join('\n');
}
