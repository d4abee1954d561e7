/**
 * Browser twin of runner/host.ts: what variant selection sees in a browser. The OS is `browser`
 * and the CPU `wasm32` (a variant asking for an OS or a CPU feature is not for a page), the cores
 * are navigator.hardwareConcurrency, the memory navigator.deviceMemory where the browser tells it,
 * and the runtimes those of the registered backends (onnxruntime-web: its WASM CPU provider, and
 * WebGPU where an adapter exists). A profile given as JSON text is used as it is.
 */

import type { BackendRegistry } from '../../runner/backends/registry.js';
import { HOST_PROFILE_FORMAT, type HostProfile, loadHostProfile, type RuntimeInfo } from '../../runner/host-profile.js';
import { defaultRegistry } from './backends.js';

export {
  devicesOf,
  HOST_PROFILE_FORMAT,
  type HostDevice,
  type HostProfile,
  hostSummary,
  loadHostProfile,
  type RuntimeInfo,
} from '../../runner/host-profile.js';

export interface DetectOptions {
  registry?: BackendRegistry;
}

export interface ResolveHostOptions extends DetectOptions {
  /** A profile as an object or JSON text (no files here). */
  host?: string | HostProfile;
}

export async function detectHost(options: DetectOptions = {}): Promise<HostProfile> {
  const registry = options.registry ?? defaultRegistry();
  const nav = globalThis.navigator as (Navigator & { deviceMemory?: number }) | undefined;
  const threads = Math.max(1, nav?.hardwareConcurrency ?? 1);
  const runtimes: Record<string, RuntimeInfo> = {};
  for (const s of await registry.status())
    for (const rt of s.runtimes)
      runtimes[rt] ??= s.init.ok
        ? { available: true, ...(s.init.version ? { version: s.init.version } : {}), providers: s.init.providers ?? [] }
        : { available: false, reason: (s.init.reason ?? 'did not initialise').slice(0, 2048) };
  const profile: HostProfile = {
    format: HOST_PROFILE_FORMAT,
    description: 'a web browser',
    os: 'browser',
    arch: 'wasm32',
    cpu: { model: `${threads}-thread browser`, logicalCores: threads, physicalCores: threads, features: ['wasm_simd'] },
    // deviceMemory is rounded and capped (8 GiB in Chromium); WASM memory is 4 GiB at most anyway.
    memoryMiB: Math.round((nav?.deviceMemory ?? 4) * 1024),
    gpus: [],
    npus: [],
    runtimes,
    notDetected:
      nav?.deviceMemory === undefined ? [{ what: 'memory', reason: 'navigator.deviceMemory is not available' }] : [],
    kernels: { backend: 'portable', simd: 'none', threads: 1, cuda: false },
  };
  return loadHostProfile(profile);
}

export async function resolveHost(options: ResolveHostOptions = {}): Promise<HostProfile> {
  if (options.host !== undefined) return loadHostProfile(options.host);
  return detectHost(options);
}
