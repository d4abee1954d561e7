/**
 * What the browser under this process uses, read from /proc (robust to a shared machine's load):
 * resident memory and CPU time of every process under this one, and CPU time by thread name.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Resident memory of every process under this one (the browser and its renderers and workers). */
export function descendantsRss(): number {
  return descendants((d) => {
    const status = readFileSync(`/proc/${d}/status`, 'utf8');
    return [Number(/PPid:\s+(\d+)/.exec(status)?.[1]), Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024];
  });
}

/** CPU milliseconds (user + system) used so far by every process under this one. */
export function descendantsCpuMs(): number {
  return [...cpuByProcess().values()].reduce((a, b) => a + b, 0);
}

/** CPU milliseconds so far of each process under this one, by pid. */
export function cpuByProcess(): Map<number, number> {
  const tick = 1000 / 100; // USER_HZ is 100 on Linux
  const pids = new Set<number>();
  const cpu = new Map<number, number>();
  descendants((d) => {
    const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    cpu.set(Number(d), (Number(f[11]) + Number(f[12])) * tick);
    return [Number(f[1]), 0];
  }, pids);
  return new Map([...pids].map((p) => [p, cpu.get(p) ?? 0]));
}

/**
 * CPU milliseconds used since `before` (a cpuByProcess() snapshot) by the processes alive now:
 * a process that exited meanwhile (a closed page's renderer) would otherwise make it negative.
 */
export function cpuSince(before: Map<number, number>): number {
  let ms = 0;
  for (const [pid, now] of cpuByProcess()) ms += now - (before.get(pid) ?? 0);
  return ms;
}

/**
 * CPU milliseconds so far of every thread of the processes under this one, by thread name with
 * digits dropped ("ThreadPoolForegroundWorker", "DedicatedWorker thread", "CrRendererMain"...).
 */
export function threadsCpuMs(): Map<string, number> {
  const out = new Map<string, number>();
  const under = new Set<number>();
  descendants((d) => {
    const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
    return [Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]), Number(d)];
  }, under);
  for (const pid of under) {
    try {
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).replace(/\d+$/, '');
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        out.set(name, (out.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) * 10);
      }
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Sums `of(pid)` = [parent, value] over the processes under this one (their pids added to `pids`). */
function descendants(of: (pid: string) => [number, number], pids?: Set<number>): number {
  const children = new Map<number, number[]>();
  const value = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const [ppid, v] = of(d);
      value.set(Number(d), v);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(d)]);
    } catch {
      // exited meanwhile
    }
  }
  let total = 0;
  const walk = (pid: number) => {
    for (const c of children.get(pid) ?? []) {
      total += value.get(c) ?? 0;
      pids?.add(c);
      walk(c);
    }
  };
  walk(process.pid);
  return total;
}

/** Memory of one process, in bytes, by kind (/proc status and smaps_rollup). */
export interface ProcessMemory {
  /** Chromium's `--type` of the process (`browser` when it has none). */
  type: string;
  /** Resident pages, as VmRSS counts them: a page shared by two processes (a data pipe's shared memory) counts in both. */
  rss: number;
  /** Anonymous resident pages (heaps, buffers): private to each process. */
  anon: number;
  /** Resident shared memory (shared-memory segments, e.g. Mojo data pipes between the browser's processes). */
  shmem: number;
  /** Proportional set size: each shared page divided among the processes that map it, so a sum counts it once. */
  pss: number;
}
export type MemoryKind = Exclude<keyof ProcessMemory, 'type'>;
export const MEMORY_KINDS: readonly MemoryKind[] = ['rss', 'anon', 'shmem', 'pss'];

/** The memory of each process under this one, by pid (the tree walked once, then only its processes read). */
export function memoryByProcess(): Map<number, ProcessMemory> {
  const under = new Set<number>();
  descendants((d) => [Number(/PPid:\s+(\d+)/.exec(readFileSync(`/proc/${d}/status`, 'utf8'))?.[1]), 0], under);
  const kb = (text: string, key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(text)?.[1] ?? 0) * 1024;
  const out = new Map<number, ProcessMemory>();
  for (const pid of under) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      out.set(pid, {
        type: /--type=([a-z-]+)/.exec(readFileSync(`/proc/${pid}/cmdline`, 'utf8'))?.[1] ?? 'browser',
        rss: kb(status, 'VmRSS'),
        anon: kb(status, 'RssAnon'),
        shmem: kb(status, 'RssShmem'),
        pss: kb(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'), 'Pss'),
      });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** The processes' memory summed by kind. */
export function totalMemory(m: ReadonlyMap<number, ProcessMemory>): Record<MemoryKind, number> {
  const sum = { rss: 0, anon: 0, shmem: 0, pss: 0 };
  for (const p of m.values()) for (const k of MEMORY_KINDS) sum[k] += p[k];
  return sum;
}
