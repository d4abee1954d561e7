/**
 * The host profile: what `xpkg host` detects and what variant selection reads. It is plain JSON so
 * a profile recorded on one machine (or written by hand) can stand in for detection anywhere
 * (`--host <file>`, `XPKG_HOST`): every selection rule is testable without the hardware.
 */
import type { ErrorObject, ValidateFunction } from 'ajv';
import { readTextFileSync } from '../platform/index.js';
import { parseStrictJson } from '../spec/canonical.js';
import { RunnerError, XpkgError } from '../spec/errors.js';
import { hostProfile } from '../spec/generated/host-profile.js';
import type { HostDevice, HostProfile } from './host-profile-schema.js';

export type { HostDevice, HostProfile, RuntimeInfo } from './host-profile-schema.js';

export const HOST_PROFILE_FORMAT = 'xpkg-host/1';
/** The largest host profile file read: a detected one is a few KiB (`--host /dev/zero` never ends). */
export const HOST_PROFILE_MAX_BYTES = 1 << 20;

// Compiled at build time from host-profile-schema.ts (spec/gen-validators.ts): no ajv compile at start.
const validate = hostProfile as unknown as ValidateFunction;

function problemsOf(errors: ErrorObject[] | null | undefined): string[] {
  return (errors ?? []).map((e) => {
    const extra =
      e.keyword === 'additionalProperties'
        ? ` ${JSON.stringify((e.params as { additionalProperty: string }).additionalProperty)}`
        : '';
    return `${e.instancePath || '/'}: ${e.message ?? 'invalid'}${extra}`;
  });
}

/**
 * Validates a host profile given as a parsed value, JSON text, or a file path. Hand-written profiles
 * may leave out `gpus`, `npus`, `runtimes`, `notDetected` (read as none) and `cpu.physicalCores`
 * (read as the logical count). The saved output of `xpkg host --json` (the profile under
 * `result`) is read as the profile. Throws RunnerError E_HOST_PROFILE listing every problem.
 */
export function loadHostProfile(input: string | object): HostProfile {
  let value: unknown = input;
  let origin = 'profile';
  if (typeof input === 'string') {
    let text = input;
    if (!input.trimStart().startsWith('{')) {
      origin = input;
      try {
        text = readTextFileSync(input, HOST_PROFILE_MAX_BYTES);
      } catch (e) {
        throw new RunnerError(
          'E_HOST_PROFILE',
          `cannot read host profile ${input}: ${(e as Error).message}`,
          { path: input },
          { cause: e },
        );
      }
    }
    try {
      value = parseStrictJson(text);
    } catch (e) {
      const summary = e instanceof XpkgError ? e.message : String(e);
      throw new RunnerError(
        'E_HOST_PROFILE',
        `host profile ${origin} is not valid JSON: ${summary}`,
        { origin },
        { cause: e },
      );
    }
  }
  if (!value || typeof value !== 'object' || Array.isArray(value))
    throw new RunnerError('E_HOST_PROFILE', `host profile ${origin} is not a JSON object`, { origin });
  // what `xpkg host --json > host.json` records: the profile in the CLI's {"result": …} envelope
  const keys = Object.keys(value);
  if (keys.length === 1 && keys[0] === 'result') {
    const inner = (value as { result: unknown }).result;
    if (inner && typeof inner === 'object' && !Array.isArray(inner)) value = inner;
  }
  const v = value as Record<string, unknown>;
  const cpu =
    v.cpu && typeof v.cpu === 'object' && !Array.isArray(v.cpu) ? (v.cpu as Record<string, unknown>) : undefined;
  const filled = {
    ...v,
    gpus: v.gpus ?? [],
    npus: v.npus ?? [],
    runtimes: v.runtimes ?? {},
    notDetected: v.notDetected ?? [],
    ...(cpu ? { cpu: { ...cpu, physicalCores: cpu.physicalCores ?? cpu.logicalCores } } : {}),
  };
  if (!validate(filled)) {
    const problems = problemsOf(validate.errors);
    throw new RunnerError(
      'E_HOST_PROFILE',
      `host profile ${origin} is invalid: ${problems.slice(0, 3).join('; ')}${problems.length > 3 ? ` (and ${problems.length - 3} more)` : ''}`,
      { origin, problems },
    );
  }
  const profile = filled as HostProfile;
  const conflicts = inconsistencies(profile);
  if (conflicts.length)
    throw new RunnerError('E_HOST_PROFILE', `host profile ${origin} contradicts itself: ${conflicts.join('; ')}`, {
      origin,
      problems: conflicts,
    });
  profile.cpu.features = [...profile.cpu.features].sort(); // stable output for explain and diffs
  return profile;
}

/**
 * What the schema cannot say: counts that exceed the CPUs there are, and a memory above the
 * cgroup limit it is meant to be bounded by (selection reads `memoryMiB`, so a hand-written
 * container profile with the machine's memory there would pick variants the limit kills).
 */
function inconsistencies(h: HostProfile): string[] {
  const out: string[] = [];
  const n = h.cpu.logicalCores;
  if (h.cpu.physicalCores > n) out.push(`/cpu/physicalCores: ${h.cpu.physicalCores} is more than logicalCores ${n}`);
  const l = h.limits;
  if (l?.cpuQuota !== undefined && l.cpuQuota > n)
    out.push(`/limits/cpuQuota: ${l.cpuQuota} is more than logicalCores ${n}`);
  if (l?.cpusAllowed !== undefined && l.cpusAllowed > n)
    out.push(`/limits/cpusAllowed: ${l.cpusAllowed} is more than logicalCores ${n}`);
  if (l && l.threads > n) out.push(`/limits/threads: ${l.threads} is more than logicalCores ${n}`);
  if (l?.memoryMiB !== undefined && h.memoryMiB > l.memoryMiB)
    out.push(
      `/memoryMiB: ${h.memoryMiB} is more than limits.memoryMiB ${l.memoryMiB} (memoryMiB is what this process may use: the limit, where one binds)`,
    );
  return out;
}

/** Every accelerator of the host, GPUs first. */
export function devicesOf(host: HostProfile): HostDevice[] {
  return [...host.gpus, ...host.npus];
}

/** 512 MiB, 1.5 GiB, 16 GiB: a Pi Zero or a small container's memory is not "1 GiB" or "0 GiB". */
export function memoryText(mib: number): string {
  if (mib < 1024) return `${mib} MiB`;
  const gib = mib / 1024;
  return `${gib < 10 ? Math.round(gib * 10) / 10 : Math.round(gib)} GiB`;
}

/** One line naming the host, for the head of `explain`. */
export function hostSummary(h: HostProfile): string {
  const accel = [...h.gpus, ...h.npus].map((d) => `${d.vendor} ${d.kind}${d.arch ? ` ${d.arch}` : ''}`);
  const mem = `${memoryText(h.memoryMiB)}${h.limits?.memoryMiB !== undefined ? ' (cgroup limit)' : ''}`;
  const cpus =
    h.limits?.cpuQuota !== undefined || h.limits?.cpusAllowed !== undefined
      ? `, ${Math.min(h.limits.cpuQuota ?? Infinity, h.limits.cpusAllowed ?? Infinity)} of ${h.cpu.logicalCores} CPUs`
      : '';
  return `${h.os} ${h.arch}, ${h.cpu.model}${cpus}, ${mem}${accel.length ? `, ${accel.join(', ')}` : ', no accelerator'}`;
}

/**
 * Kernel, sysctl and vendor spellings → the names manifests use (asimddp → dotprod, pni → sse3,
 * AVX512VNNI → avx512_vnni, macOS's armv8_1_atomics → atomics). Detection lists both names.
 */
export const FEATURE_ALIASES: Readonly<Record<string, string>> = Object.freeze({
  pni: 'sse3',
  supplementalsse3: 'ssse3',
  asimd: 'neon',
  advsimd: 'neon',
  asimddp: 'dotprod',
  asimdhp: 'fp16',
  fphp: 'fp16',
  neon_fp16: 'fp16',
  asimdfhm: 'fhm',
  armv8_2_fhm: 'fhm',
  armv8_1_atomics: 'atomics',
  lse: 'atomics',
  armv8_crc32: 'crc32',
  armv8_2_sha3: 'sha3',
  armv8_2_sha512: 'sha512',
  floatingpoint: 'fp',
  avx1_0: 'avx',
  avx2_0: 'avx2',
  avx512vnni: 'avx512_vnni',
  avx512bf16: 'avx512_bf16',
  avx512fp16: 'avx512_fp16',
  avxvnni: 'avx_vnni',
  amxtile: 'amx_tile',
  amxbf16: 'amx_bf16',
  amxint8: 'amx_int8',
});

const canonical = (f: string) => (Object.hasOwn(FEATURE_ALIASES, f) ? FEATURE_ALIASES[f] : f);

/**
 * Whether a CPU with `features` has `name`, whatever either side calls it: a manifest written
 * against Linux's names (asimddp, pni) matches a Mac's (dotprod, sse3) and the other way round.
 */
export function hasCpuFeature(features: readonly string[], name: string): boolean {
  if (features.includes(name)) return true;
  const want = canonical(name);
  return features.some((f) => canonical(f) === want);
}

/** Features that give a CPU fast int8 dot products (the precision policy prefers int8 with them). */
export const INT8_DOT_FEATURES = ['avx512_vnni', 'avx_vnni', 'amx_int8', 'dotprod', 'i8mm'] as const;

/** Numeric value of "sm_89" (89), for minArch comparisons; NaN when not an sm name. */
export function smNumber(arch: string): number {
  const m = /^sm_(\d{2,3})$/.exec(arch);
  return m ? Number(m[1]) : Number.NaN;
}
