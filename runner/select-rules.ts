/**
 * The rules behind variant selection: which requirements a host fails (every failure, not just the
 * first, so `explain` says everything at once) and the facts ranking uses. Pure functions of the
 * variant, the host profile and the set of runtimes xpkg has backends for.
 */
import type { Accelerator, Variant } from '../spec/schema.js';
import {
  devicesOf,
  type HostDevice,
  type HostProfile,
  hasCpuFeature,
  INT8_DOT_FEATURES,
  smNumber,
} from './host-profile.js';
import { usableProviders, variantProviders } from './providers.js';
import { rangeProblem, satisfies } from './semver.js';

export type Precision = Variant['precision'];

/** Preferred precisions, best first, per kind of compute. */
export interface PrecisionPolicy {
  gpu: Precision[];
  /** NPUs, TPUs, DSPs: integer engines first. */
  npu: Precision[];
  cpu: Precision[];
  /** CPU list used when the CPU has int8 dot-product instructions (VNNI, AMX, dotprod, i8mm). */
  cpuInt8: Precision[];
}

export const DEFAULT_PRECISION_POLICY: Readonly<PrecisionPolicy> = Object.freeze<PrecisionPolicy>({
  gpu: ['fp16', 'fp32', 'bf16', 'mixed', 'int8', 'int4'],
  npu: ['int8', 'fp16', 'mixed', 'int4', 'bf16', 'fp32'],
  cpu: ['fp32', 'mixed', 'bf16', 'fp16', 'int8', 'int4'],
  cpuInt8: ['int8', 'fp32', 'mixed', 'bf16', 'fp16', 'int4'],
});

/** A policy that puts `first` ahead everywhere (`--precision fp32`), the rest as in `base`. */
export function preferPrecision(first: Precision, base: PrecisionPolicy = DEFAULT_PRECISION_POLICY): PrecisionPolicy {
  const lift = (list: Precision[]) => [first, ...list.filter((p) => p !== first)];
  return { gpu: lift(base.gpu), npu: lift(base.npu), cpu: lift(base.cpu), cpuInt8: lift(base.cpuInt8) };
}

/**
 * The policy of one-shot runs (RunnerOptions.oneShot): float32 first on GPUs. A half model's first
 * run at each new input shape pays seconds of cuDNN set-up (H200: the OCR recogniser's 17 widths
 * 3–11 s each against 0.5–1 s in float32), which a runner that pre-warms pays once in `open` and
 * a one-shot run would pay on its first page.
 */
export const ONE_SHOT_PRECISION: Readonly<Partial<PrecisionPolicy>> = Object.freeze({
  gpu: preferPrecision('fp32').gpu,
});

export type ReasonCode =
  | 'os'
  | 'arch'
  | 'cpu-features'
  | 'memory'
  | 'accelerator'
  | 'accelerator-arch'
  | 'accelerator-memory'
  | 'no-backend'
  | 'runtime-missing'
  | 'runtime-version'
  | 'provider'
  | 'load-failed'
  | 'run-failed'
  /** A partial package leaves the variant's files out (spec/OCI.md §4). */
  | 'absent';

export interface Reason {
  code: ReasonCode;
  message: string;
  detail?: Record<string, unknown>;
}

/** exact: the device's arch is listed; compatible: at or above minArch; any: no arch constraint. */
export type ArchMatch = 'exact' | 'compatible' | 'any';

export interface DeviceMatch {
  kind: HostDevice['kind'];
  vendor: string;
  name: string;
  arch?: string;
  match: ArchMatch;
}

export interface Evaluation {
  reasons: Reason[];
  notes: string[];
  device?: DeviceMatch;
  /** onnxruntime providers to create the session with, in order. */
  providers?: string[];
}

const list = (xs: readonly string[]) => (xs.length ? xs.join(', ') : 'none');
const a = (word: string) => (/^[aeiou]/i.test(word) ? `an ${word}` : `a ${word}`);

function archOk(acc: Accelerator, d: HostDevice): ArchMatch | null {
  if (!acc.arch && !acc.minArch) return 'any';
  if (d.arch && acc.arch?.includes(d.arch)) return 'exact';
  if (acc.minArch && d.arch) {
    const have = smNumber(d.arch);
    if (have >= smNumber(acc.minArch)) return 'compatible';
  }
  return null;
}

const MATCH_ORDER: Record<ArchMatch, number> = { exact: 0, compatible: 1, any: 2 };

/** The best host device for an accelerator requirement, or the reasons none fits. */
export function matchAccelerator(
  acc: Accelerator,
  host: HostProfile,
): { device: DeviceMatch; notes: string[] } | { reasons: Reason[] } {
  const all = devicesOf(host);
  const same = all.filter((d) => d.kind === acc.kind && d.vendor === acc.vendor);
  if (!same.length) {
    const has = all.map((d) => `${d.vendor} ${d.kind}${d.arch ? ` ${d.arch}` : ''}`);
    return {
      reasons: [
        {
          code: 'accelerator',
          message: `needs ${a(acc.vendor)} ${acc.kind}; host has ${list(has)}`,
          detail: { wanted: { kind: acc.kind, vendor: acc.vendor }, have: has },
        },
      ],
    };
  }
  const wantArch = [...(acc.arch ?? []), ...(acc.minArch ? [`≥ ${acc.minArch}`] : [])].join(' or ');
  const fits: { d: HostDevice; m: ArchMatch; memUnknown: boolean }[] = [];
  const reasons: Reason[] = [];
  for (const d of same) {
    const m = archOk(acc, d);
    if (!m) {
      reasons.push({
        code: 'accelerator-arch',
        message: `needs ${acc.vendor} ${acc.kind} arch ${wantArch}; ${d.name} is ${d.arch ?? 'of unknown arch'}`,
        detail: { device: d.name, arch: d.arch ?? null, wanted: acc.arch ?? [], minArch: acc.minArch ?? null },
      });
      continue;
    }
    if (acc.minMemoryMiB !== undefined && d.memoryMiB !== undefined && d.memoryMiB < acc.minMemoryMiB) {
      reasons.push({
        code: 'accelerator-memory',
        message: `needs ${acc.minMemoryMiB} MiB of device memory; ${d.name} has ${d.memoryMiB} MiB`,
        detail: { device: d.name, have: d.memoryMiB, need: acc.minMemoryMiB },
      });
      continue;
    }
    fits.push({ d, m, memUnknown: acc.minMemoryMiB !== undefined && d.memoryMiB === undefined });
  }
  if (!fits.length) return { reasons };
  fits.sort((a, b) => MATCH_ORDER[a.m] - MATCH_ORDER[b.m] || (b.d.memoryMiB ?? 0) - (a.d.memoryMiB ?? 0));
  const best = fits[0];
  const how =
    best.m === 'exact'
      ? `exact arch ${best.d.arch}`
      : best.m === 'compatible'
        ? `${best.d.arch} ≥ minArch ${acc.minArch}`
        : 'no arch constraint';
  const notes = [`accelerator: ${best.d.vendor} ${best.d.kind} ${best.d.name} (${how})`];
  if (best.memUnknown)
    notes.push(`device memory of ${best.d.name} unknown; minMemoryMiB ${acc.minMemoryMiB} not checked`);
  return {
    device: {
      kind: best.d.kind,
      vendor: best.d.vendor,
      name: best.d.name,
      ...(best.d.arch ? { arch: best.d.arch } : {}),
      match: best.m,
    },
    notes,
  };
}

/** Every requirement of `variant` the host fails, plus the facts ranking uses. */
export function evaluateVariant(variant: Variant, host: HostProfile, backends: readonly string[]): Evaluation {
  const req = variant.requires ?? {};
  const reasons: Reason[] = [];
  const notes: string[] = [];
  const ev: Evaluation = { reasons, notes };

  if (req.os && !(req.os as string[]).includes(host.os))
    reasons.push({
      code: 'os',
      message: `runs on ${list(req.os)}; host is ${host.os}`,
      detail: { wanted: req.os, have: host.os },
    });
  if (req.arch && !(req.arch as string[]).includes(host.arch))
    reasons.push({
      code: 'arch',
      message: `runs on ${list(req.arch)}; host CPU is ${host.arch}`,
      detail: { wanted: req.arch, have: host.arch },
    });
  const missing = (req.cpuFeatures ?? []).filter((f) => !hasCpuFeature(host.cpu.features, f));
  if (missing.length) {
    // no feature source here (Windows, a sandbox without /proc): the CPU may well have them, but
    // running code built for features it lacks dies of SIGILL, so the variant stays out
    const unknown = host.cpu.features.length
      ? undefined
      : (host.notDetected.find((n) => n.what === 'cpu features')?.reason ?? 'none listed');
    reasons.push({
      code: 'cpu-features',
      message:
        unknown === undefined
          ? `CPU lacks ${missing.join(', ')}`
          : `needs CPU features ${missing.join(', ')}; this host's CPU features are unknown (${unknown})`,
      detail: { missing, ...(unknown !== undefined ? { unknown: true } : {}) },
    });
  }
  if (req.minMemoryMiB !== undefined && host.memoryMiB < req.minMemoryMiB) {
    reasons.push({
      code: 'memory',
      message: `needs ${req.minMemoryMiB} MiB of memory; host has ${host.memoryMiB} MiB${host.limits?.memoryMiB !== undefined ? ' (its cgroup limit)' : ''}`,
      detail: {
        need: req.minMemoryMiB,
        have: host.memoryMiB,
        ...(host.limits?.memoryMiB !== undefined ? { limit: 'cgroup' } : {}),
      },
    });
  }
  if (req.accelerator) {
    const m = matchAccelerator(req.accelerator, host);
    if ('reasons' in m) reasons.push(...m.reasons);
    else {
      ev.device = m.device;
      notes.push(...m.notes);
    }
  } else notes.push('cpu');

  const rt = host.runtimes[variant.runtime];
  if (!backends.includes(variant.runtime)) {
    reasons.push({
      code: 'no-backend',
      message: `xpkg has no backend for runtime ${variant.runtime} (backends: ${list(backends)})`,
      detail: { runtime: variant.runtime, backends: [...backends] },
    });
  }
  if (!rt?.available) {
    reasons.push({
      code: 'runtime-missing',
      message: `runtime ${variant.runtime} is not installed on this host${rt?.reason ? ` (${rt.reason})` : ''}`,
      detail: { runtime: variant.runtime },
    });
  } else {
    if (req.runtimeVersion !== undefined) {
      const bad = rangeProblem(req.runtimeVersion);
      if (bad)
        reasons.push({
          code: 'runtime-version',
          message: `runtimeVersion ${JSON.stringify(req.runtimeVersion)} is not a valid range: ${bad}`,
          detail: { range: req.runtimeVersion },
        });
      else if (!rt.version)
        reasons.push({
          code: 'runtime-version',
          message: `needs ${variant.runtime} ${req.runtimeVersion}; the installed version is unknown`,
          detail: { range: req.runtimeVersion, have: null },
        });
      else if (!satisfies(rt.version, req.runtimeVersion)) {
        reasons.push({
          code: 'runtime-version',
          message: `needs ${variant.runtime} ${req.runtimeVersion}; host has ${rt.version}`,
          detail: { range: req.runtimeVersion, have: rt.version },
        });
      }
    }
    if (variant.runtime === 'onnxruntime') {
      const available = rt.providers ?? ['cpu'];
      const usable = usableProviders(variant, available);
      const wanted = variantProviders(variant);
      if (!usable.length) {
        const why = wanted
          .map((p) => rt.unavailable?.find((u) => u.name === p))
          .filter(Boolean)
          .map((u) => `${u!.name}: ${u!.reason}`);
        reasons.push({
          code: 'provider',
          message: `needs execution provider ${wanted.join(' or ')}; onnxruntime here loads ${list(available)}${why.length ? ` (${why.join('; ')})` : ''}`,
          detail: { wanted, available },
        });
      } else {
        ev.providers = usable;
        const skipped = wanted.filter((p) => !usable.includes(p));
        notes.push(`providers: ${usable.join(', ')}${skipped.length ? ` (${skipped.join(', ')} not available)` : ''}`);
      }
    }
  }
  return ev;
}

/** The precision list that applies to a variant run on `device` (or the CPU), and why. */
export function precisionList(
  policy: PrecisionPolicy,
  host: HostProfile,
  device: DeviceMatch | undefined,
): { list: Precision[]; label: string } {
  if (device)
    return device.kind === 'gpu'
      ? { list: policy.gpu, label: 'gpu policy' }
      : { list: policy.npu, label: `${device.kind} policy` };
  const dot = INT8_DOT_FEATURES.filter((f) => hasCpuFeature(host.cpu.features, f));
  return dot.length
    ? { list: policy.cpuInt8, label: `cpu policy with int8 dot product (${dot.join(', ')})` }
    : { list: policy.cpu, label: 'cpu policy' };
}
