/**
 * Runs `xpkg run`/`xpkg bench` in a child process with glibc's malloc asking for transparent huge
 * pages (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`), which glibc reads only at process start.
 *
 * Why: a cold `run` of the OCR package first-touches ~55,000 pages (onnxruntime's arenas, the
 * package's bytes, V8's heap); on a virtual machine each such fault is expensive. With the tunable
 * glibc madvises its large blocks for huge pages: ~18,000 faults and ~20% less CPU for the whole
 * run, which pays for the second process start (~40 ms) many times over. The child inherits stdio,
 * arguments and node's own flags; the parent forwards termination signals and exits as the child did.
 *
 * Only where it can help: Linux, glibc (musl ignores the variable), transparent huge pages not
 * `never`, the tunable not already set, and `XPKG_RELAUNCH` not `0`.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** The commands that load models, where the faults are. */
const COMMANDS = new Set(['run', 'bench']);
const TUNABLE = 'glibc.malloc.hugetlb=1';
const FORWARD = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;

export interface RelaunchFacts {
  platform: NodeJS.Platform;
  env: NodeJS.ProcessEnv;
  /** process.argv */
  argv: readonly string[];
  /** Whether this process runs on glibc. */
  glibc: () => boolean;
  /** The text of /sys/kernel/mm/transparent_hugepage/enabled, or null. */
  thp: () => string | null;
}

/** The environment of the child to start, or null to run in this process. */
export function relaunchEnv(f: RelaunchFacts): NodeJS.ProcessEnv | null {
  if (f.platform !== 'linux' || f.env.XPKG_RELAUNCH === '0') return null;
  // the first argument that is not an option is the command (`xpkg [--flags] run …`)
  const command = f.argv.slice(2).find((a) => !a.startsWith('-'));
  if (!command || !COMMANDS.has(command)) return null;
  const tunables = f.env.GLIBC_TUNABLES ?? '';
  if (/(^|:)glibc\.malloc\.hugetlb=/.test(tunables)) return null;
  const thp = f.thp();
  if (!thp || thp.includes('[never]') || !f.glibc()) return null;
  return { ...f.env, GLIBC_TUNABLES: tunables ? `${tunables}:${TUNABLE}` : TUNABLE };
}

function facts(): RelaunchFacts {
  return {
    platform: process.platform,
    env: process.env,
    argv: process.argv,
    // the C library mapped into this process: glibc's is libc.so.6, musl's ld-musl-*.so.1
    glibc: () => {
      try {
        return /\/libc\.so\.6$/m.test(readFileSync('/proc/self/maps', 'utf8'));
      } catch {
        return false;
      }
    },
    thp: () => {
      try {
        return readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8');
      } catch {
        return null;
      }
    },
  };
}

/**
 * Starts the child and settles with its outcome, or resolves false at once when this process should
 * run the command itself (nothing to gain, or the child could not be started).
 */
export function relaunch(f: RelaunchFacts = facts()): Promise<boolean> {
  const env = relaunchEnv(f);
  if (!env) return Promise.resolve(false);
  return new Promise((resolve) => {
    // handlers first: a signal that lands between the fork and their registration would otherwise
    // kill this process by default and leave the child running; one before the spawn is passed on after it
    let child: ReturnType<typeof spawn> | undefined;
    let early: NodeJS.Signals | undefined;
    const handlers = FORWARD.map((s) => [s, () => (child ? child.kill(s) : (early = s))] as const);
    for (const [s, h] of handlers) process.on(s, h);
    child = spawn(process.execPath, [...process.execArgv, ...f.argv.slice(1)], { env, stdio: 'inherit' });
    if (early) child.kill(early);
    let started = false;
    child.once('spawn', () => (started = true));
    // a failure to start (no memory, no process slots) leaves this process to do the work
    child.on('error', () => {
      if (started) return;
      for (const [s, h] of handlers) process.off(s, h);
      resolve(false);
    });
    child.once('exit', (code, signal) => {
      for (const [s, h] of handlers) process.off(s, h);
      // die of the same signal, so a shell or supervisor sees what the child saw
      if (signal) process.kill(process.pid, signal);
      else process.exit(code ?? 1);
    });
  });
}
