/**
 * Runs `xpkg serve` in a child process started with V8 heap flags (FLAGS below), which V8 reads
 * only at process start, and, where it can help, with glibc's malloc asking for transparent huge
 * pages (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`), which glibc reads only at process start: the
 * daemon's main thread then takes a few page faults per large request body instead of dozens. The
 * child inherits stdio, arguments and node's own flags; the parent forwards termination signals and
 * exits as the child did.
 *
 * One-shot commands (`run`, `bench`) run in this process. They were relaunched for huge pages too,
 * until a side-by-side measure on the 2-core VM (15 rounds, alternating) showed the second process
 * costing more than the faults it saved: a cold OCR `xpkg run` took 1.11 s wall and 1.48 s CPU
 * relaunched, 1.09 / 1.42 with the tunable set by hand, 1.02 / 1.36 in one process without it
 * (~48,000 page faults against ~19,000), and twelve images in one run no less CPU with it.
 *
 * The tunable only where it can help: Linux, glibc (musl ignores the variable), transparent huge
 * pages not `never`, the tunable not already set; the flags unless this process has them already;
 * neither when `XPKG_RELAUNCH` is `0`.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { processAlive as alive } from '../platform/process.js';

/** The long-running command, whose start cost is paid once. */
const COMMANDS = new Set(['serve']);
/**
 * Node flags per command. The daemon's old generation starts at 64 MiB: from V8's default small
 * start, a daemon under sustained load (every request's objects outlive a young-generation GC) ran a
 * full mark-compact every ~20 requests, each freeing ~1 MB of a 15 MB heap and pausing the event
 * loop; from 64 MiB, about one per 300 requests (bench/serve.ts, the GC lines). Node refuses this
 * flag in NODE_OPTIONS, so the daemon gets it from a relaunch.
 */
const FLAGS: Record<string, readonly string[]> = { serve: ['--initial-old-space-size=64'] };
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
  /** process.execArgv (node's own flags of this process). */
  execArgv?: readonly string[];
}

/** The first argument that is not an option is the command (`xpkg [--flags] run …`). */
const commandOf = (argv: readonly string[]) => argv.slice(2).find((a) => !a.startsWith('-'));

/** The environment of the child to start, or null to run in this process. */
export function relaunchEnv(f: RelaunchFacts): NodeJS.ProcessEnv | null {
  if (f.platform !== 'linux' || f.env.XPKG_RELAUNCH === '0') return null;
  const command = commandOf(f.argv);
  if (!command || !COMMANDS.has(command)) return null;
  const tunables = f.env.GLIBC_TUNABLES ?? '';
  if (/(^|:)glibc\.malloc\.hugetlb=/.test(tunables)) return null;
  const thp = f.thp();
  if (!thp || thp.includes('[never]') || !f.glibc()) return null;
  return { ...f.env, GLIBC_TUNABLES: tunables ? `${tunables}:${TUNABLE}` : TUNABLE };
}

/** What the child gets: its environment and node flags beyond this process's own; null to run here. */
export function relaunchPlan(f: RelaunchFacts): { env: NodeJS.ProcessEnv; execArgv: string[] } | null {
  if (f.env.XPKG_RELAUNCH === '0') return null;
  const command = commandOf(f.argv);
  // flags this process was started with already (the child itself, or a user's) are not added again
  const flags = (FLAGS[command ?? ''] ?? []).filter(
    (flag) => !(f.execArgv ?? []).some((a) => a.split('=')[0] === flag.split('=')[0]),
  );
  const env = relaunchEnv(f);
  if (!env && flags.length === 0) return null;
  return { env: env ?? f.env, execArgv: flags };
}

function facts(): RelaunchFacts {
  return {
    platform: process.platform,
    env: process.env,
    argv: process.argv,
    execArgv: process.execArgv,
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
  const plan = relaunchPlan(f);
  if (!plan) return Promise.resolve(false);
  return new Promise((resolve) => {
    // handlers first: a signal that lands between the fork and their registration would otherwise
    // kill this process by default and leave the child running; one before the spawn is passed on after it
    let child: ReturnType<typeof spawn> | undefined;
    let early: NodeJS.Signals | undefined;
    const handlers = FORWARD.map((s) => [s, () => (child ? child.kill(s) : (early = s))] as const);
    for (const [s, h] of handlers) process.on(s, h);
    // XPKG_LAUNCHER: a long-running child (serve) stops when this process is gone (launcherGone)
    child = spawn(process.execPath, [...process.execArgv, ...plan.execArgv, ...f.argv.slice(1)], {
      env: { ...plan.env, XPKG_LAUNCHER: String(process.pid) },
      stdio: 'inherit',
    });
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

/**
 * In a child this module started: resolves when the launcher has died without passing a signal on
 * (SIGKILL), so that a daemon does not outlive it holding its port; never elsewhere. Polls the parent
 * pid once a second (an unref'd timer: it keeps nothing alive). Call it before starting processes of
 * your own: it takes the variable out of the environment they inherit.
 */
export function launcherGone(): Promise<void> {
  const launcher = Number(process.env.XPKG_LAUNCHER);
  // the model workers and anything else this process starts are not the launcher's children
  delete process.env.XPKG_LAUNCHER;
  if (!launcher || (process.ppid !== launcher && alive(launcher))) return new Promise(() => {}); // not ours
  return new Promise((resolve) => {
    if (process.ppid !== launcher) return resolve(); // gone already
    const timer = setInterval(() => {
      if (process.ppid === launcher) return;
      clearInterval(timer);
      resolve();
    }, 1000).unref();
  });
}
