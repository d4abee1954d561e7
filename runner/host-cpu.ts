/**
 * CPU facts: model, core counts and instruction-set features, from /proc/cpuinfo on Linux and
 * `sysctl` on macOS. Feature names keep the kernel's spelling and add the normalised aliases that
 * manifests use (asimddp → dotprod, asimd → neon, pni → sse3, AVX512VNNI → avx512_vnni), so a
 * manifest can say `dotprod` whatever the kernel calls it.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { type ResourceLimits, readLimits, usableCpus } from './host-limits.js';
import { FEATURE_ALIASES, type HostProfile } from './host-profile.js';
import { readText, runTool } from './host-util.js';

export type CpuInfo = HostProfile['cpu'];
type NotDetected = HostProfile['notDetected'];

export { INT8_DOT_FEATURES } from './host-profile.js';

export function normaliseFeatures(raw: Iterable<string>): string[] {
  const out = new Set<string>();
  for (const r of raw) {
    const f = r
      .trim()
      .toLowerCase()
      .replace(/[.\s-]+/g, '_');
    if (!/^[a-z0-9_.]{1,64}$/.test(f)) continue;
    out.add(f);
    // own keys only: a flag named `constructor` has no alias
    if (Object.hasOwn(FEATURE_ALIASES, f)) out.add(FEATURE_ALIASES[f]);
  }
  return [...out].sort();
}

/** Arm's own core names by MIDR part number (implementer 0x41). */
const ARM_PARTS: Record<string, string> = {
  '0xd03': 'Cortex-A53',
  '0xd04': 'Cortex-A35',
  '0xd05': 'Cortex-A55',
  '0xd07': 'Cortex-A57',
  '0xd08': 'Cortex-A72',
  '0xd09': 'Cortex-A73',
  '0xd0a': 'Cortex-A75',
  '0xd0b': 'Cortex-A76',
  '0xd0c': 'Neoverse-N1',
  '0xd0d': 'Cortex-A77',
  '0xd40': 'Neoverse-V1',
  '0xd41': 'Cortex-A78',
  '0xd42': 'Cortex-A78AE',
  '0xd44': 'Cortex-X1',
  '0xd46': 'Cortex-A510',
  '0xd47': 'Cortex-A710',
  '0xd48': 'Cortex-X2',
  '0xd49': 'Neoverse-N2',
  '0xd4d': 'Cortex-A715',
  '0xd4e': 'Cortex-X3',
  '0xd4f': 'Neoverse-V2',
  '0xd80': 'Cortex-A520',
  '0xd81': 'Cortex-A720',
  '0xd82': 'Cortex-X4',
};

/**
 * Parses /proc/cpuinfo text. Layouts differ by architecture and kernel age: x86, Arm and RISC-V
 * give one block per processor; ppc64 blocks carry only `processor` and `cpu`; s390x lists
 * `processor N: …` lines under one `features` line; old Arm kernels put every `processor : N`
 * line in one block and `Features` in another. Processors are counted by their lines, so none of
 * these reads as one CPU. A feature is listed only when every processor that lists features has it
 * (a build using it may be scheduled on any of them).
 */
export function parseCpuinfo(text: string): CpuInfo {
  const blocks = text.split(/\n\s*\n/).map((b) => {
    const m = new Map<string, string>();
    for (const line of b.split('\n')) {
      const i = line.indexOf(':');
      if (i > 0) m.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
    }
    return m;
  });
  const procs = blocks.filter((b) => /^\d+$/.test(b.get('processor') ?? ''));
  const numbered = text.match(/^processor[ \t]*:[ \t]*\d+[ \t]*\r?$/gim)?.length ?? 0;
  const s390 = text.match(/^processor \d+:/gm)?.length ?? 0;
  const declared = Number(blocks.find((b) => b.has('# processors'))?.get('# processors'));
  const logical = Math.max(1, numbered, s390, Number.isInteger(declared) && declared < 65536 ? declared : 0);

  const flagsOf = (b: Map<string, string>) => b.get('flags') ?? b.get('features');
  const split = (s: string) => s.split(/\s+/).filter(Boolean);
  const perProc = procs.map(flagsOf).filter((f): f is string => f !== undefined);
  let raw: string[];
  if (perProc.length) {
    const sets = perProc.map((f) => new Set(split(f)));
    raw = [...sets[0]].filter((f) => sets.every((s) => s.has(f)));
  } else raw = split(blocks.map(flagsOf).find((f) => f !== undefined) ?? '');

  const cores = new Set(
    procs.filter((b) => b.has('core id')).map((b) => `${b.get('physical id') ?? 0}/${b.get('core id')}`),
  );
  let physical = cores.size || logical;
  if (!cores.size && procs[0]?.has('cpu cores')) {
    const packages = new Set(procs.map((b) => b.get('physical id') ?? '0')).size;
    physical = Number(procs[0].get('cpu cores')) * packages || logical;
  }

  let model = procs[0]?.get('model name') ?? '';
  if (!model) {
    // Arm: describe the cores by MIDR part (big.LITTLE shows as "4× Cortex-A55 + 4× Cortex-A76")
    const counts = new Map<string, number>();
    for (const b of procs) {
      const impl = b.get('cpu implementer');
      const part = b.get('cpu part');
      if (!part) continue;
      const name = impl === '0x41' && ARM_PARTS[part] ? ARM_PARTS[part] : `implementer ${impl ?? '?'} part ${part}`;
      counts.set(name, (counts.get(name) ?? 0) + 1);
    }
    model = [...counts].map(([n, c]) => `${c}× ${n}`).join(' + ');
  }
  // ppc64 names the core in `cpu` ("POWER9, altivec supported"), s390x the machine in `machine`
  if (!model) model = procs[0]?.get('cpu') ?? '';
  const hardware = blocks.map((b) => b.get('hardware') ?? b.get('vendor_id')).find(Boolean);
  if (!model) model = hardware ?? 'unknown';
  return {
    model,
    logicalCores: logical,
    physicalCores: Math.max(1, Math.min(physical, logical)),
    features: normaliseFeatures(raw),
  };
}

/** Parses `sysctl hw machdep.cpu` output (macOS). */
export function parseSysctl(text: string): CpuInfo & { memoryBytes?: number } {
  const kv = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([\w.]+):\s*(.*)$/.exec(line.trim());
    if (m) kv.set(m[1], m[2]);
  }
  const raw: string[] = [];
  for (const [k, v] of kv) {
    if (k.startsWith('hw.optional.') && v.trim() === '1')
      raw.push(
        k
          .slice('hw.optional.'.length)
          .replace(/^arm\./, '')
          .replace(/^FEAT_/, ''),
      );
  }
  for (const k of ['machdep.cpu.features', 'machdep.cpu.leaf7_features', 'machdep.cpu.extfeatures']) {
    for (const f of (kv.get(k) ?? '').split(/\s+/)) if (f) raw.push(f);
  }
  const int = (k: string) => (kv.has(k) && /^\d+$/.test(kv.get(k)!) ? Number(kv.get(k)) : undefined);
  const logical = Math.max(1, Math.min(int('hw.logicalcpu') ?? int('hw.ncpu') ?? 1, 65536));
  const mem = int('hw.memsize');
  return {
    model: kv.get('machdep.cpu.brand_string') || 'unknown',
    logicalCores: logical,
    physicalCores: Math.max(1, Math.min(int('hw.physicalcpu') ?? logical, logical)),
    features: normaliseFeatures(raw),
    ...(mem !== undefined ? { memoryBytes: mem } : {}),
  };
}

function fromNode(): CpuInfo {
  const cpus = os.cpus();
  const logical = Math.max(1, cpus.length || os.availableParallelism());
  return { model: cpus[0]?.model?.trim() || 'unknown', logicalCores: logical, physicalCores: logical, features: [] };
}

export interface DetectCpuOptions {
  /** Stands in for / when reading /proc and /sys/fs/cgroup (tests). */
  root?: string;
}

/** The default thread count: physical cores, bounded by the CPUs this process may use. */
export function threadsFor(cpu: Pick<CpuInfo, 'logicalCores' | 'physicalCores'>, limits: ResourceLimits): number {
  return Math.max(1, Math.min(cpu.physicalCores, usableCpus(cpu.logicalCores, limits)));
}

export async function detectCpu(options: DetectCpuOptions = {}): Promise<{
  cpu: CpuInfo;
  memoryMiB: number;
  limits?: NonNullable<HostProfile['limits']>;
  notDetected: NotDetected;
}> {
  const root = options.root ?? '/';
  const notDetected: NotDetected = [];
  let memoryMiB = Math.floor(os.totalmem() / 1048576);
  let cpu: CpuInfo;
  const linux = process.platform === 'linux' || process.platform === 'android' || options.root !== undefined;
  if (linux) {
    const r = await readText(join(root, 'proc/cpuinfo'), 8 << 20);
    if (r.ok) {
      cpu = parseCpuinfo(r.value);
      // a cpuinfo that numbers no processor (some sandboxes give an empty one): count them as Node does
      if (!/^processor\b/im.test(r.value)) {
        const n = fromNode();
        cpu = { ...cpu, logicalCores: n.logicalCores, physicalCores: n.physicalCores };
      }
    } else {
      cpu = fromNode();
      notDetected.push({ what: 'cpu features', reason: r.reason });
    }
    if (cpu.model === 'unknown') cpu.model = fromNode().model;
    // Arm boards name the SoC in the device tree, not in cpuinfo
    const dt = await readText(join(root, 'proc/device-tree/model'));
    if (dt.ok && process.arch !== 'x64' && process.arch !== 'ia32')
      cpu.model = `${cpu.model} (${dt.value.replace(/\0/g, '').trim()})`;
  } else if (process.platform === 'darwin') {
    const r = await runTool('sysctl', ['hw', 'machdep.cpu']);
    if (r.ok) {
      const { memoryBytes, ...c } = parseSysctl(r.value);
      cpu = c;
      if (memoryBytes) memoryMiB = Math.floor(memoryBytes / 1048576);
    } else {
      cpu = fromNode();
      notDetected.push({ what: 'cpu features', reason: r.reason });
    }
  } else {
    cpu = fromNode();
    notDetected.push({ what: 'cpu features', reason: `no feature source implemented for ${process.platform}` });
  }
  if (!cpu.features.length && !notDetected.some((n) => n.what === 'cpu features'))
    notDetected.push({ what: 'cpu features', reason: 'the CPU reported none' });
  const lim = linux ? readLimits(root) : { sources: [] };
  const limits: NonNullable<HostProfile['limits']> = { threads: threadsFor(cpu, lim) };
  if (lim.cpuQuota !== undefined && lim.cpuQuota < cpu.logicalCores)
    limits.cpuQuota = Math.round(lim.cpuQuota * 1000) / 1000 || 0.001;
  if (lim.cpusAllowed !== undefined && lim.cpusAllowed < cpu.logicalCores) limits.cpusAllowed = lim.cpusAllowed;
  const limitMiB = lim.memoryBytes !== undefined ? Math.floor(lim.memoryBytes / 1048576) : undefined;
  if (limitMiB !== undefined && limitMiB < memoryMiB) memoryMiB = limits.memoryMiB = limitMiB;
  const binds = limits.cpuQuota !== undefined || limits.cpusAllowed !== undefined || limits.memoryMiB !== undefined;
  return { cpu, memoryMiB, ...(binds ? { limits } : {}), notDetected };
}

let cachedThreads: number | undefined;
/**
 * The default intra-op thread count of backends (synchronous, cached): physical cores, bounded by
 * the affinity mask and the cgroup's CPU quota. More threads than the quota allows are throttled
 * each period and run slower than fewer.
 */
export function physicalCores(): number {
  if (cachedThreads) return cachedThreads;
  let cpu: Pick<CpuInfo, 'logicalCores' | 'physicalCores'> = fromNode();
  let limits: ResourceLimits = { sources: [] };
  if (process.platform === 'linux' || process.platform === 'android') {
    try {
      const text = readFileSync('/proc/cpuinfo', 'utf8');
      if (/^processor\b/im.test(text)) cpu = parseCpuinfo(text);
    } catch {
      // keep the logical count
    }
    limits = readLimits();
  }
  cachedThreads = threadsFor(cpu, limits);
  return cachedThreads;
}
