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
 * (read as the logical count). Throws RunnerError E_HOST_PROFILE listing every problem.
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
  profile.cpu.features = [...profile.cpu.features].sort(); // stable output for explain and diffs
  return profile;
}

/** Every accelerator of the host, GPUs first. */
export function devicesOf(host: HostProfile): HostDevice[] {
  return [...host.gpus, ...host.npus];
}

/** One line naming the host, for the head of `explain`. */
export function hostSummary(h: HostProfile): string {
  const accel = [...h.gpus, ...h.npus].map((d) => `${d.vendor} ${d.kind}${d.arch ? ` ${d.arch}` : ''}`);
  const mem = `${Math.round(h.memoryMiB / 1024)} GiB${h.limits?.memoryMiB !== undefined ? ' (cgroup limit)' : ''}`;
  const cpus =
    h.limits?.cpuQuota !== undefined || h.limits?.cpusAllowed !== undefined
      ? `, ${Math.min(h.limits.cpuQuota ?? Infinity, h.limits.cpusAllowed ?? Infinity)} of ${h.cpu.logicalCores} CPUs`
      : '';
  return `${h.os} ${h.arch}, ${h.cpu.model}${cpus}, ${mem}${accel.length ? `, ${accel.join(', ')}` : ', no accelerator'}`;
}

/** Features that give a CPU fast int8 dot products (the precision policy prefers int8 with them). */
export const INT8_DOT_FEATURES = ['avx512_vnni', 'avx_vnni', 'amx_int8', 'dotprod', 'i8mm'] as const;

/** Numeric value of "sm_89" (89), for minArch comparisons; NaN when not an sm name. */
export function smNumber(arch: string): number {
  const m = /^sm_(\d{2,3})$/.exec(arch);
  return m ? Number(m[1]) : Number.NaN;
}
