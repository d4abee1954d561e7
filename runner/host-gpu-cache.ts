/**
 * nvidia-smi's answer, kept per driver and GPU set. `xpkg run` detects the host on every start, and
 * nvidia-smi (two calls at once: compute capability and memory, and its banner's CUDA version) took
 * ~100 ms of that on the H200 machine, against well under a millisecond to read the driver's /proc
 * files. What it reports does not change while the driver (its /proc version text) and the GPUs
 * (their /proc information files) stay the same, so those make the key; a driver update, another
 * GPU, or an entry that does not parse runs nvidia-smi again. Kept under cacheRoot()/host
 * (XPKG_CACHE); deleting it only costs the next start that ~100 ms.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { HostDevice } from './host-profile.js';

const FORMAT = 1;

/** The key: the driver's version text and each GPU's bus id and information file, in bus order. */
export function smiCacheKey(driverVersion: string, gpus: readonly { bus: string; information: string }[]): string {
  const h = createHash('sha256').update(`xpkg-nvidia-smi/${FORMAT}\0${driverVersion}`);
  for (const g of [...gpus].sort((a, b) => (a.bus < b.bus ? -1 : 1))) h.update(`\0${g.bus}\0${g.information}`);
  return h.digest('hex').slice(0, 32);
}

const fileOf = (dir: string, key: string) => join(dir, `nvidia-smi-${key}.json`);

const isDevice = (d: unknown): d is HostDevice => {
  const o = d as Partial<HostDevice> | null;
  return (
    typeof o === 'object' &&
    o !== null &&
    o.kind === 'gpu' &&
    o.vendor === 'nvidia' &&
    typeof o.name === 'string' &&
    ['arch', 'driver', 'cuda', 'source'].every(
      (k) => !(k in o) || typeof (o as Record<string, unknown>)[k] === 'string',
    ) &&
    (o.memoryMiB === undefined || Number.isFinite(o.memoryMiB))
  );
};

/** The devices stored under `key`, or null (none, unreadable, or not what this code writes). */
export async function readSmiCache(dir: string, key: string): Promise<HostDevice[] | null> {
  try {
    const doc = JSON.parse(await readFile(fileOf(dir, key), 'utf8')) as { format?: unknown; devices?: unknown };
    if (doc.format !== FORMAT || !Array.isArray(doc.devices) || !doc.devices.length) return null;
    return doc.devices.every(isDevice) ? doc.devices : null;
  } catch {
    return null;
  }
}

/** Stores `devices` under `key` (a temp file renamed into place); a cache that cannot be written is no error. */
export async function writeSmiCache(dir: string, key: string, devices: readonly HostDevice[]): Promise<void> {
  const tmp = join(dir, `.nvidia-smi-${key}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await mkdir(dir, { recursive: true });
    await writeFile(tmp, JSON.stringify({ format: FORMAT, devices }));
    await rename(tmp, fileOf(dir, key));
  } catch {
    await rm(tmp, { force: true }).catch(() => {});
  }
}
