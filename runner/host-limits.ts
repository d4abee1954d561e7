/**
 * What this process may use of the machine, as against what the machine has: the CPUs of its
 * affinity mask (taskset, a container's cpuset), its cgroup's CPU quota (v2 `cpu.max`, v1
 * `cpu.cfs_quota_us`; 1.5 CPUs is a quota, not a core count) and its cgroup's memory limit. A
 * container on a 64-core host with `--cpus 2 --memory 4g` sees 64 cores in /proc/cpuinfo and the
 * host's memory in /proc/meminfo; onnxruntime with 64 threads under a 2-CPU quota is throttled
 * most of each period, and a variant that needs 8 GiB is killed.
 *
 * Limits are nested: every cgroup from the process's own up to the mount's root bounds it, so the
 * lowest one counts. The files are a few bytes; they are read synchronously so the thread default
 * (host-cpu.ts physicalCores) can use them. `root` stands in for / in tests.
 */
import { readFileSync } from 'node:fs';
import { join, posix } from 'node:path';

export interface ResourceLimits {
  /** CPU time quota in CPUs (1.5 = 150 ms per 100 ms), the lowest along the cgroup path. */
  cpuQuota?: number;
  /** CPUs in the affinity mask (sched_getaffinity; /proc/self/status Cpus_allowed_list). */
  cpusAllowed?: number;
  /** The cgroup memory limit, the lowest along the cgroup path. */
  memoryBytes?: number;
  /** The files the limits came from. */
  sources: string[];
}

function read(root: string, path: string): string | undefined {
  try {
    return readFileSync(join(root, path), 'utf8').slice(0, 1 << 16);
  } catch {
    return undefined;
  }
}

/** Counts the CPUs of a kernel CPU list ("0-3,8-11" → 8); undefined when it does not parse. */
export function countCpuList(text: string): number | undefined {
  let n = 0;
  const t = text.trim();
  if (!t) return undefined;
  for (const part of t.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) return undefined;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo) return undefined;
    n += hi - lo + 1;
  }
  return n || undefined;
}

/** cgroup v2 `cpu.max` ("max 100000", "150000 100000") → CPUs, undefined for no quota. */
export function parseCpuMax(text: string): number | undefined {
  const [quota, period = '100000'] = text.trim().split(/\s+/);
  return quotaOf(quota, period);
}

function quotaOf(quota: string | undefined, period: string | undefined): number | undefined {
  if (!quota || !period || !/^\d+$/.test(quota) || !/^\d+$/.test(period)) return undefined; // "max", -1
  const q = Number(quota);
  const p = Number(period);
  return q > 0 && p > 0 ? q / p : undefined;
}

/** A memory limit file's bytes; "max" and v1's "no limit" (a page-rounded 2^63) are none. */
export function parseMemoryLimit(text: string): number | undefined {
  const t = text.trim();
  if (!/^\d+$/.test(t)) return undefined;
  const n = Number(t);
  return n > 0 && n < 2 ** 62 ? n : undefined;
}

interface Mount {
  root: string;
  point: string;
  v2: boolean;
  controllers: string[];
}

/** cgroup mounts from /proc/self/mountinfo ("… root mountpoint … - cgroup2 cgroup2 rw"). */
export function parseCgroupMounts(text: string): Mount[] {
  const out: Mount[] = [];
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const f = left.split(' ');
    const [fstype, , superopts = ''] = right.split(' ');
    if ((fstype !== 'cgroup' && fstype !== 'cgroup2') || f.length < 5) continue;
    const octal = (s: string) => s.replace(/\\(\d{3})/g, (_, o) => String.fromCharCode(Number.parseInt(o, 8)));
    out.push({
      root: octal(f[3]),
      point: octal(f[4]),
      v2: fstype === 'cgroup2',
      controllers: superopts.split(','),
    });
  }
  return out;
}

/**
 * The folders of the process's cgroup for one controller, leaf first up to the mount point. A
 * cgroup path outside the mount's root (a container that sees the host's path but mounts only its
 * own cgroup) is read at the mount point.
 */
function cgroupDirs(mount: Mount, path: string): string[] {
  const rel = posix.relative(mount.root, path);
  const inside = !rel.startsWith('..') && !posix.isAbsolute(rel);
  const dirs = [mount.point];
  if (inside && rel) {
    const parts = rel.split('/');
    for (let i = 1; i <= parts.length; i++) dirs.push(posix.join(mount.point, ...parts.slice(0, i)));
  }
  return dirs.reverse();
}

/** Reads the limits of this process (Linux); an empty result elsewhere or where nothing is limited. */
export function readLimits(root = '/'): ResourceLimits {
  const out: ResourceLimits = { sources: [] };
  const status = read(root, '/proc/self/status');
  const allowed = status && /^Cpus_allowed_list:\s*(.*)$/m.exec(status)?.[1];
  const n = allowed ? countCpuList(allowed) : undefined;
  if (n !== undefined) {
    out.cpusAllowed = n;
    out.sources.push('/proc/self/status');
  }
  const membership = read(root, '/proc/self/cgroup');
  if (!membership) return out;
  // "0::/path" (v2) and "4:memory:/path", "3:cpu,cpuacct:/path" (v1)
  const paths = new Map<string, string>();
  for (const line of membership.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    if (m[1] === '') paths.set('', m[2]);
    else for (const c of m[1].split(',')) paths.set(c, m[2]);
  }
  const mountinfo = read(root, '/proc/self/mountinfo');
  const mounts = mountinfo
    ? parseCgroupMounts(mountinfo)
    : [{ root: '/', point: '/sys/fs/cgroup', v2: true, controllers: [] }];
  const dirsFor = (controller: string): { dirs: string[]; v2: boolean } | undefined => {
    const v1 = mounts.find((m) => !m.v2 && m.controllers.includes(controller));
    if (v1 && paths.has(controller)) return { dirs: cgroupDirs(v1, paths.get(controller)!), v2: false };
    const v2 = mounts.find((m) => m.v2);
    if (v2 && paths.has('')) return { dirs: cgroupDirs(v2, paths.get('')!), v2: true };
    return undefined;
  };
  // the lowest value along the cgroup's path, and the file it came from
  type Probe = (dir: string, v2: boolean) => [number, string] | undefined;
  const lowest = (controller: string, probe: Probe) => {
    const at = dirsFor(controller);
    let best: [number, string] | undefined;
    for (const dir of at?.dirs ?? []) {
      const v = probe(dir, at!.v2);
      if (v && (!best || v[0] < best[0])) best = v;
    }
    if (best) out.sources.push(best[1]);
    return best?.[0];
  };
  const value = (path: string, parse: (t: string) => number | undefined): [number, string] | undefined => {
    const t = read(root, path);
    const v = t === undefined ? undefined : parse(t);
    return v === undefined ? undefined : [v, path];
  };
  out.cpuQuota = lowest('cpu', (dir, v2) =>
    v2
      ? value(join(dir, 'cpu.max'), parseCpuMax)
      : value(join(dir, 'cpu.cfs_quota_us'), (q) =>
          quotaOf(q.trim(), read(root, join(dir, 'cpu.cfs_period_us'))?.trim()),
        ),
  );
  out.memoryBytes = lowest('memory', (dir, v2) =>
    value(join(dir, v2 ? 'memory.max' : 'memory.limit_in_bytes'), parseMemoryLimit),
  );
  if (out.cpuQuota === undefined) delete out.cpuQuota;
  if (out.memoryBytes === undefined) delete out.memoryBytes;
  return out;
}

/** CPUs this process can keep busy: the machine's, bounded by the affinity mask and the quota (rounded up). */
export function usableCpus(logical: number, limits: ResourceLimits): number {
  let n = logical;
  if (limits.cpusAllowed !== undefined) n = Math.min(n, limits.cpusAllowed);
  if (limits.cpuQuota !== undefined) n = Math.min(n, Math.ceil(limits.cpuQuota));
  return Math.max(1, n);
}
