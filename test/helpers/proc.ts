/**
 * What a process holds, read from /proc (Linux): its child processes and its open file descriptors,
 * so the serve tests can check that a swap, an unload or a stop leaves no worker or descriptor behind.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Process ids whose parent is `pid` (live ones; zombies are reaped by Node soon after). */
export function childPids(pid = process.pid): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      // the command name may hold spaces and parentheses: fields after the last ')'
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === pid && state !== 'Z') out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out.sort((a, b) => a - b);
}

/** How many file descriptors `pid` has open. */
export function fdCount(pid: number | 'self' = 'self'): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}
