/**
 * GPU facts. NVIDIA: the driver's own files (/proc/driver/nvidia) give names and bus ids without
 * running anything; `nvidia-smi` (short timeout) adds compute capability, memory and the CUDA
 * version. Jetson boards have neither and are recognised by their device tree. Other PCI GPUs
 * (AMD, Intel) are listed from /sys/class/drm.
 */
import { join } from 'node:path';
import { cacheRoot } from '../platform/cache-dir.js';
import { readSmiCache, smiCacheKey, writeSmiCache } from './host-gpu-cache.js';
import type { HostDevice, HostProfile } from './host-profile.js';
import { listDir, readText, runTool } from './host-util.js';

type NotDetected = HostProfile['notDetected'];

export interface NvidiaProcGpu {
  name: string;
  busId?: string;
  uuid?: string;
}

/** Parses /proc/driver/nvidia/gpus/<bus>/information. */
export function parseNvidiaInformation(text: string): NvidiaProcGpu | null {
  const kv = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) kv.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
  }
  const name = kv.get('model');
  if (!name) return null;
  return {
    name,
    ...(kv.get('bus location') ? { busId: kv.get('bus location') } : {}),
    ...(kv.get('gpu uuid') ? { uuid: kv.get('gpu uuid') } : {}),
  };
}

/** Driver version from /proc/driver/nvidia/version ("NVRM version: … Kernel Module  550.54.14  …"). */
export function parseNvidiaVersion(text: string): string | undefined {
  return /NVRM version:.*?\s(\d+\.\d+(?:\.\d+)?)\s/.exec(text)?.[1];
}

export interface SmiGpu {
  name: string;
  computeCap?: string;
  memoryMiB?: number;
  driver?: string;
  busId?: string;
  /** MIG mode is on: CUDA sees the GPU's slices, not the GPU (memory.total is the whole GPU's). */
  mig?: boolean;
}

export const SMI_QUERY = ['name', 'compute_cap', 'memory.total', 'driver_version', 'pci.bus_id', 'mig.mode.current'];
/**
 * What older drivers answer: compute_cap came with driver 510 and mig.mode.current with 450, and a
 * query naming a field the driver does not know fails whole (`Field "compute_cap" is not a valid
 * field to query.`, exit 2), memory included. Asked in turn until one answers.
 */
export const SMI_QUERIES: readonly (readonly string[])[] = [
  SMI_QUERY,
  SMI_QUERY.filter((f) => f !== 'compute_cap'),
  SMI_QUERY.filter((f) => f !== 'compute_cap' && f !== 'mig.mode.current'),
];

/**
 * Parses `nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version,pci.bus_id
 * --format=csv[,noheader][,nounits]`. With a header, columns are found by name (so a recording
 * with other columns still parses); without one, the order above is assumed.
 */
export function parseNvidiaSmiCsv(text: string, query: readonly string[] = SMI_QUERY): SmiGpu[] {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean);
  if (!lines.length) return [];
  let cols = query;
  if (/\bname\b/i.test(lines[0]) && /driver_version|memory\.total/i.test(lines[0])) {
    cols = lines
      .shift()!
      .split(',')
      .map((c) =>
        c
          .trim()
          .toLowerCase()
          .replace(/\s*\[.*\]$/, ''),
      );
  }
  return lines.map((line) => {
    const cells = line.split(',').map((c) => c.trim());
    const get = (k: string) => {
      const v = cells[cols.indexOf(k)];
      return v === undefined || v === '' || /^\[?(N\/A|Not Supported)\]?$/i.test(v) ? undefined : v;
    };
    const mem = get('memory.total');
    const memNum = mem ? Number.parseFloat(mem) : NaN;
    const g: SmiGpu = { name: get('name') ?? 'NVIDIA GPU' };
    if (get('compute_cap')) g.computeCap = get('compute_cap');
    if (Number.isFinite(memNum)) g.memoryMiB = Math.round(/GiB/i.test(mem!) ? memNum * 1024 : memNum);
    if (get('driver_version')) g.driver = get('driver_version');
    if (get('pci.bus_id')) g.busId = get('pci.bus_id');
    if (get('mig.mode.current')?.toLowerCase() === 'enabled') g.mig = true;
    return g;
  });
}

export interface MigSlice {
  /** nvidia-smi's index of the GPU it is carved from. */
  gpu: number;
  /** The GPU instance profile: "1g.10gb", "3g.40gb". */
  profile: string;
  /** The profile's memory, rounded down (its "10gb" is 10⁹-byte units, and a little is reserved). */
  memoryMiB?: number;
  uuid?: string;
}

/** MIG slices from `nvidia-smi -L` ("GPU 0: … (UUID: GPU-…)" then "  MIG 1g.10gb Device 0: (UUID: MIG-…)"). */
export function parseNvidiaSmiList(text: string): MigSlice[] {
  const out: MigSlice[] = [];
  let gpu = -1;
  for (const line of text.split(/\r?\n/)) {
    const g = /^GPU (\d+):/.exec(line.trim());
    if (g) gpu = Number(g[1]);
    const m = /^MIG\s+(\S+)\s+Device\s+\d+:\s*(?:\(UUID:\s*([^)\s]+)\))?/.exec(line.trim());
    if (!m || gpu < 0) continue;
    const gb = /\.(\d+)gb$/i.exec(m[1]);
    out.push({
      gpu,
      profile: m[1],
      ...(gb ? { memoryMiB: Math.floor((Number(gb[1]) * 1e9) / 1048576) } : {}),
      ...(m[2] ? { uuid: m[2] } : {}),
    });
  }
  return out;
}

/** Driver and CUDA versions from the banner of plain `nvidia-smi`. */
export function parseNvidiaSmiBanner(text: string): { driver?: string; cuda?: string } {
  const driver = /Driver Version:\s*([\d.]+)/.exec(text)?.[1];
  const cuda = /CUDA Version:\s*([\d.]+)/.exec(text)?.[1];
  return { ...(driver ? { driver } : {}), ...(cuda ? { cuda } : {}) };
}

/** "8.9" → "sm_89", "10.0" → "sm_100", "12.1" → "sm_121". */
export function smFromComputeCap(cc: string): string | undefined {
  const m = /^(\d+)\.(\d)$/.exec(cc.trim());
  return m ? `sm_${m[1]}${m[2]}` : undefined;
}

export { smNumber } from './host-profile.js';

/**
 * Compute capability by product name, for when only the driver's files are readable (no
 * nvidia-smi). Families only; order matters (first match wins).
 */
const NAME_TABLE: [RegExp, string][] = [
  [/\b(B200|B100|GB200)\b/i, 'sm_100'],
  [/\bRTX (PRO )?50\d\d\b|\bRTX PRO \d+ Blackwell\b/i, 'sm_120'],
  [/\b(H100|H200|H800|GH200|H20)\b/i, 'sm_90'],
  [/\bRTX 40\d\d\b|\bL4\b|\bL40S?\b|\bRTX \d+ Ada\b/i, 'sm_89'],
  [/\b(A100|A800|A30)\b/i, 'sm_80'],
  [/\bRTX 30\d\d\b|\b(A10|A10G|A16|A2|A40|A6000|A5000|A4000)\b/i, 'sm_86'],
  [/\bT4\b|\bRTX 20\d\d\b|\bGTX 16\d\d\b|\bQuadro RTX\b/i, 'sm_75'],
  [/\bV100\b|\bTITAN V\b/i, 'sm_70'],
  [/\bP100\b/i, 'sm_60'],
  [/\bGTX 10\d\d\b|\bP40\b|\bP4\b/i, 'sm_61'],
];
export function smFromName(name: string): string | undefined {
  return NAME_TABLE.find(([re]) => re.test(name))?.[1];
}

/** Jetson SoCs by device-tree compatible string. */
const TEGRA: Record<string, { name: string; arch: string }> = {
  'nvidia,tegra264': { name: 'Jetson Thor', arch: 'sm_110' },
  'nvidia,tegra234': { name: 'Jetson Orin', arch: 'sm_87' },
  'nvidia,tegra194': { name: 'Jetson Xavier', arch: 'sm_72' },
  'nvidia,tegra186': { name: 'Jetson TX2', arch: 'sm_62' },
  'nvidia,tegra210': { name: 'Jetson Nano/TX1', arch: 'sm_53' },
};

/** The NUL-separated strings of /proc/device-tree/compatible. */
export function parseCompatible(text: string): string[] {
  return text
    .split('\0')
    .map((s) => s.trim())
    .filter(Boolean);
}

export function jetsonFromCompatible(compatible: string[]): { name: string; arch: string } | undefined {
  for (const c of compatible) if (TEGRA[c]) return TEGRA[c];
  return undefined;
}

/** CUDA toolkit version from /usr/local/cuda/version.json or version.txt. */
export function parseCudaToolkitVersion(text: string): string | undefined {
  try {
    const j = JSON.parse(text) as { cuda?: { version?: string } };
    if (j.cuda?.version) return j.cuda.version.split('.').slice(0, 2).join('.');
  } catch {
    // version.txt form: "CUDA Version 10.2.89"
  }
  return /CUDA Version\s+(\d+\.\d+)/.exec(text)?.[1];
}

const busKey = (id: string | undefined) =>
  id ? id.toLowerCase().replace(/^0+/, '').split(':').slice(-2).join(':') : undefined;

/** Where nvidiaGpus reads the driver's files and keeps nvidia-smi's answer (tests point them elsewhere). */
export interface NvidiaSources {
  /** `/proc/driver/nvidia` */
  procDir?: string;
  /** host-gpu-cache.ts's folder, or null for none (default: cacheRoot()/host) */
  cacheDir?: string | null;
}

export async function nvidiaGpus(notDetected: NotDetected, sources: NvidiaSources = {}): Promise<HostDevice[]> {
  const proc = sources.procDir ?? '/proc/driver/nvidia';
  const fromProc: NvidiaProcGpu[] = [];
  const informations: { bus: string; information: string }[] = [];
  for (const bus of await listDir(`${proc}/gpus`)) {
    const r = await readText(`${proc}/gpus/${bus}/information`);
    const g = r.ok ? parseNvidiaInformation(r.value) : null;
    if (g) {
      fromProc.push({ busId: bus, ...g });
      informations.push({ bus, information: r.ok ? r.value : '' });
    }
  }
  const version = await readText(`${proc}/version`);
  const procDriver = version.ok ? parseNvidiaVersion(version.value) : undefined;
  // nvidia-smi's answer is kept per driver and GPU set (host-gpu-cache.ts): only /proc is read then
  const cacheDir = sources.cacheDir === undefined ? join(cacheRoot(), 'host') : sources.cacheDir;
  const key = cacheDir && version.ok && fromProc.length ? smiCacheKey(version.value, informations) : null;
  const cached = key && cacheDir ? await readSmiCache(cacheDir, key) : null;
  if (cached) return cached;

  const ask = (query: readonly string[]) =>
    runTool('nvidia-smi', [`--query-gpu=${query.join(',')}`, '--format=csv,noheader,nounits']);
  let [smi, banner] = await Promise.all([ask(SMI_QUERY), runTool('nvidia-smi', [])]);
  let query = SMI_QUERY;
  for (const older of SMI_QUERIES.slice(1)) {
    if (smi.ok || !/not a valid field/i.test(smi.reason)) break;
    query = [...older];
    smi = await ask(query);
  }
  const cuda = banner.ok ? parseNvidiaSmiBanner(banner.value).cuda : undefined;
  if (smi.ok) {
    const gpus = parseNvidiaSmiCsv(smi.value, query);
    if (!query.includes('compute_cap'))
      notDetected.push({
        what: 'nvidia compute capability',
        reason:
          "this driver's nvidia-smi has no compute_cap (driver 510 or newer has); arch guessed from the product name",
      });
    const devices = gpus.map((g) => {
      const arch = (g.computeCap && smFromComputeCap(g.computeCap)) ?? smFromName(g.name);
      const d: HostDevice = { kind: 'gpu', vendor: 'nvidia', name: g.name, source: 'nvidia-smi' };
      if (arch) d.arch = arch;
      if (g.memoryMiB !== undefined) d.memoryMiB = g.memoryMiB;
      if (g.driver ?? procDriver) d.driver = g.driver ?? procDriver;
      if (cuda) d.cuda = cuda;
      return d;
    });
    if (gpus.some((g) => g.mig)) return migDevices(gpus, devices, notDetected);
    // only a whole answer is kept: one without the banner's CUDA version is asked again next time
    if (key && cacheDir && devices.length && banner.ok) await writeSmiCache(cacheDir, key, devices);
    return devices;
  }
  if (fromProc.length)
    notDetected.push({
      what: 'nvidia compute capability and memory',
      reason: `${smi.reason}; arch guessed from the product name`,
    });
  return fromProc.map((g) => {
    const arch = smFromName(g.name);
    const d: HostDevice = {
      kind: 'gpu',
      vendor: 'nvidia',
      name: g.name,
      source: `/proc/driver/nvidia/gpus/${busKey(g.busId) ?? ''}`,
    };
    if (arch) d.arch = arch;
    if (procDriver) d.driver = procDriver;
    return d;
  });
}

/**
 * A GPU in MIG mode is, to CUDA, its slices: each with a share of the memory (a variant that needs
 * 20 GiB does not fit a 1g.10gb slice of an 80 GB GPU), none at all before slices are made. Slices
 * can be remade without a driver change, so this answer is never cached.
 */
async function migDevices(gpus: SmiGpu[], devices: HostDevice[], notDetected: NotDetected): Promise<HostDevice[]> {
  const list = await runTool('nvidia-smi', ['-L']);
  const slices = list.ok ? parseNvidiaSmiList(list.value) : [];
  const out: HostDevice[] = [];
  gpus.forEach((g, i) => {
    const d = devices[i];
    if (!g.mig) return out.push(d);
    const mine = slices.filter((s) => s.gpu === i);
    if (!list.ok) {
      const { memoryMiB: _whole, ...rest } = d;
      notDetected.push({ what: `memory of ${d.name}'s MIG slices`, reason: list.reason });
      return out.push({ ...rest, name: `${d.name} (MIG)`, source: 'nvidia-smi (MIG mode)' });
    }
    if (!mine.length)
      notDetected.push({ what: `${d.name} (MIG)`, reason: 'MIG mode is on and no slice is made: CUDA sees no device' });
    for (const sl of mine) {
      const { memoryMiB: _whole, ...rest } = d;
      out.push({
        ...rest,
        name: `${d.name} MIG ${sl.profile}`,
        ...(sl.memoryMiB !== undefined ? { memoryMiB: sl.memoryMiB } : {}),
        source: `nvidia-smi -L${sl.uuid ? ` (${sl.uuid})` : ''}`.slice(0, 256),
      });
    }
  });
  return out;
}

async function jetson(notDetected: NotDetected): Promise<HostDevice[]> {
  const compat = await readText('/proc/device-tree/compatible');
  if (!compat.ok) return [];
  const soc = jetsonFromCompatible(parseCompatible(compat.value));
  if (!soc) return [];
  const d: HostDevice = {
    kind: 'gpu',
    vendor: 'nvidia',
    name: soc.name,
    arch: soc.arch,
    source: '/proc/device-tree/compatible',
  };
  const release = await readText('/etc/nv_tegra_release');
  const l4t = release.ok ? /R(\d+).*REVISION:\s*([\d.]+)/.exec(release.value) : null;
  if (l4t) d.driver = `L4T R${l4t[1]}.${l4t[2]}`;
  for (const f of ['/usr/local/cuda/version.json', '/usr/local/cuda/version.txt']) {
    const t = await readText(f);
    const v = t.ok ? parseCudaToolkitVersion(t.value) : undefined;
    if (v) {
      d.cuda = v;
      break;
    }
  }
  if (!d.cuda)
    notDetected.push({ what: 'jetson cuda version', reason: '/usr/local/cuda/version.{json,txt} not readable' });
  return [d];
}

const PCI_VENDORS: Record<string, string> = { '0x1002': 'amd', '0x8086': 'intel', '0x10de': 'nvidia' };

async function drmGpus(skipNvidia: boolean): Promise<HostDevice[]> {
  const out: HostDevice[] = [];
  for (const card of (await listDir('/sys/class/drm')).filter((c) => /^card\d+$/.test(c))) {
    const dev = `/sys/class/drm/${card}/device`;
    const vendorId = await readText(`${dev}/vendor`);
    const vendor = vendorId.ok ? PCI_VENDORS[vendorId.value.trim()] : undefined;
    if (!vendor || (vendor === 'nvidia' && skipNvidia)) continue; // virtual display adapters are not accelerators
    const deviceId = await readText(`${dev}/device`);
    const d: HostDevice = {
      kind: 'gpu',
      vendor,
      name: `${vendor.toUpperCase()} GPU ${deviceId.ok ? deviceId.value.trim() : ''}`.trim(),
      source: dev,
    };
    const vram = await readText(`${dev}/mem_info_vram_total`);
    if (vram.ok && /^\d+$/.test(vram.value.trim())) d.memoryMiB = Math.floor(Number(vram.value.trim()) / 1048576);
    out.push(d);
  }
  return out;
}

export async function detectGpus(): Promise<{ gpus: HostDevice[]; notDetected: NotDetected }> {
  const notDetected: NotDetected = [];
  const gpus = await nvidiaGpus(notDetected);
  if (process.platform === 'linux') {
    if (!gpus.length) gpus.push(...(await jetson(notDetected)));
    gpus.push(...(await drmGpus(gpus.some((g) => g.vendor === 'nvidia'))));
  }
  if (!gpus.some((g) => g.vendor === 'nvidia')) {
    notDetected.push({ what: 'nvidia gpu', reason: 'no /proc/driver/nvidia/gpus, no nvidia-smi answer, not a Jetson' });
  }
  return { gpus, notDetected };
}
