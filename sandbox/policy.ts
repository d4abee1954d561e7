/**
 * Effective limits of a sandbox: what the package declares, defaulted, then capped by the host.
 * Also derives the sizes of the worker that enforces them (WebAssembly memory, V8 stack).
 */
import type { EffectivePolicy, SandboxCaps, SandboxPolicy } from './types.js';

/** Used when a package declares nothing. */
export const DEFAULT_POLICY: Readonly<Required<SandboxPolicy>> = Object.freeze({
  memoryMiB: 64,
  timeMs: 1000,
  stackKiB: 512,
});

/** The host's ceilings unless the runner passes its own. */
export const DEFAULT_CAPS: Readonly<SandboxCaps> = Object.freeze({
  memoryMiB: 512,
  timeMs: 60_000,
  stackKiB: 4096,
  graceMs: 100,
  outputBytes: 1 << 20,
  copyBytes: 1 << 20,
  hostTensorMiB: 1024,
  sourceBytes: 1 << 20,
});

/** The emscripten build's shadow stack is 5 MiB: a larger QuickJS limit would overrun it. */
const STACK_KIB_MAX = 4096;
/** Below this the prelude itself cannot run. */
const STACK_KIB_MIN = 64;
/** WebAssembly memory beyond the QuickJS heap limit: shadow stack, static data, allocator slack. */
export const WASM_OVERHEAD_MIB = 16;

function positiveInt(name: string, v: unknown, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max)
    throw new RangeError(`sandbox: ${name} must be an integer in 1..${max}, got ${String(v)}`);
  return v;
}

export function resolveCaps(caps: Partial<SandboxCaps> = {}): SandboxCaps {
  const out = { ...DEFAULT_CAPS } as SandboxCaps;
  for (const key of Object.keys(caps) as (keyof SandboxCaps)[]) {
    if (!(key in DEFAULT_CAPS)) throw new TypeError(`sandbox: unknown cap '${key}'`);
    if (caps[key] === undefined) continue;
    out[key] = positiveInt(`caps.${key}`, caps[key]);
  }
  out.stackKiB = Math.min(out.stackKiB, STACK_KIB_MAX);
  return out;
}

/** Declared policy → effective policy: each declared limit defaulted, then lowered to the cap. */
export function resolvePolicy(declared: SandboxPolicy = {}, caps: Partial<SandboxCaps> = {}): EffectivePolicy {
  if (declared === null || typeof declared !== 'object') throw new TypeError('sandbox: policy must be an object');
  for (const key of Object.keys(declared))
    if (!(key in DEFAULT_POLICY)) throw new TypeError(`sandbox: unknown policy field '${key}'`);
  const c = resolveCaps(caps);
  const pick = (key: keyof SandboxPolicy) =>
    Math.min(positiveInt(`policy.${key}`, declared[key] ?? DEFAULT_POLICY[key]), c[key]);
  return {
    ...c,
    memoryMiB: pick('memoryMiB'),
    timeMs: pick('timeMs'),
    stackKiB: Math.max(STACK_KIB_MIN, pick('stackKiB')),
  };
}

/** Pages of the bounded WebAssembly memory: the hard cap on everything the guest allocates. */
export function wasmMaxPages(p: EffectivePolicy): number {
  return ((p.memoryMiB + WASM_OVERHEAD_MIB) * 1024 * 1024) / 65536;
}

/**
 * V8 stack of the worker. QuickJS frames run on V8's native stack as well as on the shadow stack,
 * measured at up to 4× the QuickJS figure; give room so QuickJS's own check fires first.
 */
export function workerStackMb(p: EffectivePolicy): number {
  return Math.max(4, Math.ceil((p.stackKiB * 4) / 1024) + 2);
}
