/**
 * CPU priority of model workers while they load. A new version's worker verifies, loads and warms
 * up its package on the same cores as the workers serving requests; at the lowest priority
 * (niceness 19) it takes what they leave, and at the switch its threads (its main thread and every
 * thread onnxruntime started meanwhile, which inherited 19) go back to the serving niceness. Going
 * back means lowering a niceness, which Linux allows only with CAP_SYS_NICE or a RLIMIT_NICE that
 * covers it; without either the worker loads at the serving niceness (nothing to undo).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { setPriority } from 'node:os';

/** The niceness a loading worker runs at where it can be undone. */
export const LOAD_NICE = 19;

/** CAP_SYS_NICE's bit in /proc/<pid>/status's CapEff. */
const CAP_SYS_NICE = 23n;

/**
 * Whether this process (and the workers it starts: same credentials and limits) may lower a
 * thread's niceness to `target`, from the text of /proc/self/status and /proc/self/limits.
 */
export function mayLowerNiceTo(target: number, status: string, limits: string): boolean {
  const cap = /^CapEff:\s*([0-9a-f]+)$/im.exec(status)?.[1];
  if (cap && (BigInt(`0x${cap}`) >> CAP_SYS_NICE) & 1n) return true;
  // RLIMIT_NICE n (soft limit) allows nice values down to 20 - n
  const soft = /^Max nice priority\s+(\S+)/m.exec(limits)?.[1];
  if (soft === undefined) return false;
  return soft === 'unlimited' || target >= 20 - Number(soft);
}

/**
 * The niceness new workers load at, given the one they serve at: LOAD_NICE for process workers
 * where it can be undone at the switch; else the serving one. Thread workers share the daemon's
 * process, where their threads cannot be told from the event loop's helpers: they keep `nice`.
 */
export function loadNiceFor(isolation: 'process' | 'thread', nice: number): number {
  if (process.platform !== 'linux' || isolation !== 'process' || nice >= LOAD_NICE) return nice;
  try {
    const ok = mayLowerNiceTo(
      nice,
      readFileSync('/proc/self/status', 'utf8'),
      readFileSync('/proc/self/limits', 'utf8'),
    );
    return ok ? LOAD_NICE : nice;
  } catch {
    return nice;
  }
}

/**
 * Every thread of a process (this one, or a child `pid` this process may renice) to niceness `nice`
 * (Linux: niceness is per thread, and a thread started later inherits its creator's). Returns how
 * many threads were set; throws on the first that refuses (a thread that ended meanwhile is skipped).
 */
export function setProcessNice(nice: number, pid?: number): number {
  let n = 0;
  for (const tid of readdirSync(`/proc/${pid ?? 'self'}/task`)) {
    try {
      setPriority(Number(tid), nice);
      n++;
    } catch (e) {
      if ((e as { info?: { code?: string } }).info?.code === 'ESRCH') continue;
      throw e;
    }
  }
  return n;
}
