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

/** Memory of the processes under this one, in bytes, summed by kind (/proc status and smaps_rollup). */
export interface MemoryBreakdown {
  /** Resident pages, as VmRSS counts them: a page shared by two processes (a data pipe's shared memory) counts twice. */
  rss: number;
  /** Anonymous resident pages (heaps, buffers): private to each process. */
  anon: number;
  /** Resident shared memory (shared-memory segments, e.g. Mojo data pipes between the browser's processes). */
  shmem: number;
  /** Proportional set size: each shared page divided among the processes that map it, so the sum counts it once. */
  pss: number;
}

export function descendantsMemory(): MemoryBreakdown {
  const kb = (text: string, key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(text)?.[1] ?? 0) * 1024;
  const sum = (key: keyof MemoryBreakdown) =>
    descendants((d) => {
      const status = readFileSync(`/proc/${d}/status`, 'utf8');
      const ppid = Number(/PPid:\s+(\d+)/.exec(status)?.[1]);
      if (key === 'pss') return [ppid, kb(readFileSync(`/proc/${d}/smaps_rollup`, 'utf8'), 'Pss')];
      return [ppid, kb(status, key === 'rss' ? 'VmRSS' : key === 'anon' ? 'RssAnon' : 'RssShmem')];
    });
  return { rss: sum('rss'), anon: sum('anon'), shmem: sum('shmem'), pss: sum('pss') };
}

/** Anonymous resident memory of each process under this one, by pid, with its Chromium --type (browser when none). */
export function anonByProcess(): Map<number, { type: string; anon: number }> {
  const out = new Map<number, { type: string; anon: number }>();
  descendants((d) => {
    const status = readFileSync(`/proc/${d}/status`, 'utf8');
    const type = /--type=([a-z-]+)/.exec(readFileSync(`/proc/${d}/cmdline`, 'utf8'))?.[1] ?? 'browser';
    out.set(Number(d), { type, anon: Number(/RssAnon:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024 });
    return [Number(/PPid:\s+(\d+)/.exec(status)?.[1]), 0];
  });
  return out;
}
