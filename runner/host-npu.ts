/**
 * NPUs by their device nodes and platform: Rockchip (device tree + rknpu node or devfreq), Intel
 * NPU (/dev/accel with the intel_vpu driver), and Apple silicon (Neural Engine and GPU on darwin
 * arm64, where they always exist).
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import { parseCompatible } from './host-gpu.js';
import type { HostDevice, HostProfile } from './host-profile.js';
import { linkName, listDir, readText } from './host-util.js';

type NotDetected = HostProfile['notDetected'];

/** Rockchip SoCs that carry an NPU. */
const ROCKCHIP_NPU_SOCS = new Set([
  'rk3588',
  'rk3576',
  'rk3568',
  'rk3566',
  'rk3562',
  'rv1103',
  'rv1106',
  'rk3399pro',
  'rk1808',
]);

/** The Rockchip SoC named by a device-tree compatible list ("rockchip,rk3588s"), if any. */
export function rockchipSoc(compatible: string[]): string | undefined {
  for (const c of compatible) {
    const m = /^rockchip,(r[kv]\d{4}(?:[a-z]|pro)?)$/.exec(c); // rk3588s, rk3399pro
    if (m) return m[1];
  }
  return undefined;
}

/** The NPU arch variants name for a SoC: rk3588s carries the rk3588's NPU. Undefined without an NPU. */
export function rockchipNpuArch(soc: string): string | undefined {
  const family = soc.replace(/^(rk3588|rk3576|rk3566|rk3568)s$/, '$1');
  return ROCKCHIP_NPU_SOCS.has(family) ? family : undefined;
}

/** Intel NPU generations by PCI device id. */
const INTEL_NPU_IDS: Record<string, { arch: string; name: string }> = {
  '0x7d1d': { arch: 'npu3720', name: 'Intel NPU (Meteor Lake)' },
  '0xad1d': { arch: 'npu3720', name: 'Intel NPU (Arrow Lake)' },
  '0x643e': { arch: 'npu4000', name: 'Intel NPU (Lunar Lake)' },
  '0xb03e': { arch: 'npu5010', name: 'Intel NPU (Panther Lake)' },
};

export function intelNpuFromPciId(id: string): { arch: string; name: string } | undefined {
  return INTEL_NPU_IDS[id.trim().toLowerCase()];
}

async function rockchip(notDetected: NotDetected): Promise<HostDevice[]> {
  const compat = await readText('/proc/device-tree/compatible');
  const soc = compat.ok ? rockchipSoc(parseCompatible(compat.value)) : undefined;
  const nodes = (await listDir('/dev')).filter((n) => /^rknpu/.test(n));
  const devfreq = (await listDir('/sys/class/devfreq')).filter((n) => /npu/i.test(n));
  const arch = soc ? rockchipNpuArch(soc) : undefined;
  if (!arch && !nodes.length && !devfreq.length) return [];
  const evidence = nodes.length
    ? `/dev/${nodes[0]}`
    : devfreq.length
      ? `/sys/class/devfreq/${devfreq[0]}`
      : '/proc/device-tree/compatible';
  const d: HostDevice = {
    kind: 'npu',
    vendor: 'rockchip',
    name: `Rockchip NPU${soc ? ` (${soc.toUpperCase()})` : ''}`,
    source: evidence,
  };
  if (arch) d.arch = arch;
  else
    notDetected.push({
      what: 'rockchip soc',
      reason: `NPU node present but the device tree names ${soc ?? 'no rockchip SoC'}`,
    });
  const ver = await readText('/sys/module/rknpu/version');
  if (ver.ok) d.driver = ver.value.trim();
  return [d];
}

async function intelNpu(): Promise<HostDevice[]> {
  const out: HostDevice[] = [];
  for (const acc of (await listDir('/sys/class/accel')).filter((n) => /^accel\d+$/.test(n))) {
    const dev = `/sys/class/accel/${acc}/device`;
    const driver = await linkName(`${dev}/driver`);
    if (driver !== 'intel_vpu' || !existsSync(`/dev/accel/${acc}`)) continue;
    const id = await readText(`${dev}/device`);
    const gen = id.ok ? intelNpuFromPciId(id.value) : undefined;
    const d: HostDevice = {
      kind: 'npu',
      vendor: 'intel',
      name: gen?.name ?? 'Intel NPU',
      source: `/dev/accel/${acc} (driver intel_vpu)`,
      driver: 'intel_vpu',
    };
    if (gen) d.arch = gen.arch;
    out.push(d);
  }
  return out;
}

/** "Apple M2 Pro" → "m2"; undefined for Intel Macs. */
export function appleChip(brand: string): string | undefined {
  return /Apple (M\d+)/i.exec(brand)?.[1]?.toLowerCase();
}

function apple(cpuModel: string, memoryMiB: number): { gpus: HostDevice[]; npus: HostDevice[] } {
  const chip = appleChip(cpuModel);
  const base = { vendor: 'apple', source: 'darwin arm64 (Apple silicon)', ...(chip ? { arch: chip } : {}) };
  return {
    // unified memory: the GPU can use most of system memory
    gpus: [{ kind: 'gpu', name: `${cpuModel} GPU`, memoryMiB, ...base }],
    npus: [{ kind: 'npu', name: 'Apple Neural Engine', ...base }],
  };
}

export async function detectNpus(
  cpuModel: string,
): Promise<{ gpus: HostDevice[]; npus: HostDevice[]; notDetected: NotDetected }> {
  const notDetected: NotDetected = [];
  if (process.platform === 'darwin' && process.arch === 'arm64')
    return { ...apple(cpuModel, Math.floor(os.totalmem() / 1048576)), notDetected };
  if (process.platform !== 'linux' && process.platform !== 'android') {
    notDetected.push({ what: 'npu', reason: `no NPU probe implemented for ${process.platform}` });
    return { gpus: [], npus: [], notDetected };
  }
  const npus = [...(await rockchip(notDetected)), ...(await intelNpu())];
  if (!npus.length)
    notDetected.push({
      what: 'npu',
      reason:
        'no rockchip NPU (device tree, /dev/rknpu*, devfreq) and no /sys/class/accel device with driver intel_vpu',
    });
  return { gpus: [], npus, notDetected };
}
