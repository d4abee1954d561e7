/**
 * CLI plumbing shared by every command: one exit handler, `--json` documents on stdout, human text
 * otherwise, logs and progress on stderr. Commands are typed async functions returning a result
 * object plus a human rendering; they never call process.exit or print the result themselves.
 */
import { availableParallelism } from 'node:os';
import type { Command } from 'commander';
import { toXpkgError, UsageError, type XpkgError } from '../spec/errors.js';
import { escapeLine, terminalSafe } from '../spec/terminal.js';
import { checkEnvironment } from './env.js';

export interface CommandOutcome<T> {
  /** What `--json` prints as `{"result": …}`. */
  result: T;
  /** What a person sees on stdout without `--json`. */
  human: string;
  /** Exit status when the command ran but the answer is "no" (defaults to 0). */
  exitStatus?: number;
  /** The command printed its own stdout as it went (JSON Lines of `run` over many inputs): print nothing more. */
  streamed?: boolean;
}

export interface Io {
  json: boolean;
  /** A line for the person at the terminal; goes to stderr so stdout stays parseable. */
  log(message: string): void;
  /** Progress callback, drawn on stderr only when it is a TTY. */
  progress(label: string): (done: number, total: number) => void;
}

export function makeIo(json: boolean): Io {
  const tty = Boolean(process.stderr.isTTY) && !process.env.CI;
  return {
    json,
    log: (m) => process.stderr.write(`${terminalSafe(m)}\n`),
    progress(label) {
      if (!tty) return () => {};
      const shown = escapeLine(label); // names a file the user gave: no raw escape to the terminal
      let last = -1;
      return (done, total) => {
        const pct = total > 0 ? Math.floor((done / total) * 100) : 100;
        if (pct === last) return;
        last = pct;
        process.stderr.write(`\r${shown} ${pct}%${pct >= 100 ? '\n' : ''}`);
      };
    },
  };
}

let exitHandled = false;
/** Whether `finish` has run: the command's one document (or error line) is out. */
export function finished(): boolean {
  return exitHandled;
}

/** The single place where the process exit status and the error document are produced. */
export function finish(io: Io, outcome: CommandOutcome<unknown> | { error: unknown }): never | void {
  if (exitHandled) return;
  exitHandled = true;
  if ('error' in outcome) {
    const err: XpkgError = toXpkgError(outcome.error);
    if (io.json) process.stdout.write(`${JSON.stringify({ error: err.toJSON() })}\n`);
    else {
      // one line: a newline in a path or a package string cannot forge another
      process.stderr.write(`xpkg: error ${err.code}: ${escapeLine(err.message)}\n`);
      if (process.env.XPKG_DEBUG && err.stack) process.stderr.write(`${err.stack}\n`);
    }
    process.exitCode = err.exitStatus;
    return;
  }
  if (outcome.streamed) void 0;
  else if (io.json) process.stdout.write(`${JSON.stringify({ result: outcome.result })}\n`);
  else if (outcome.human) {
    // the human rendering holds the package's own strings: never a raw escape sequence to the terminal
    const human = terminalSafe(outcome.human);
    process.stdout.write(human.endsWith('\n') ? human : `${human}\n`);
  }
  process.exitCode = outcome.exitStatus ?? 0;
}

const oneShot = new WeakSet<Command>();
/** Marks a one-shot command: its process ends as soon as its output is flushed (cli/exit.ts). */
export function endsWhenDone(cmd: Command): Command {
  oneShot.add(cmd);
  return cmd;
}

/**
 * Attaches an action: parses options, runs the typed command, hands the outcome to `finish`.
 * `--json` is read from the command's own options (each command declares it).
 */
export function action<A extends unknown[], O extends { json?: boolean }>(
  cmd: Command,
  run: (io: Io, ...args: [...A, O]) => Promise<CommandOutcome<unknown>>,
): Command {
  return cmd.action(async (...raw: unknown[]) => {
    // commander passes (...positionals, options, command)
    const opts = raw[raw.length - 2] as O;
    const positionals = raw.slice(0, -2) as A;
    const io = makeIo(Boolean(opts?.json));
    try {
      refuseEmpty(cmd, positionals, opts);
      checkEnvironment();
      finish(io, await run(io, ...positionals, opts));
    } catch (e) {
      finish(io, { error: e });
    }
    if (oneShot.has(cmd)) await (await import('./exit.js')).exitWhenFlushed();
  });
}

/**
 * An empty argument or option value (`-o ""`, an unset shell variable) is a usage error: as a path
 * it would fall back to a default name or resolve to the current folder, silently.
 */
function refuseEmpty(cmd: Command, positionals: unknown[], opts: object | undefined): void {
  cmd.registeredArguments.forEach((arg, i) => {
    const v = positionals[i];
    if (v === '' || (Array.isArray(v) && v.includes('')))
      throw usage(`<${arg.name()}> must not be empty`, { argument: arg.name() });
  });
  for (const o of cmd.options) {
    const v = (opts as Record<string, unknown> | undefined)?.[o.attributeName()];
    if (v === '' || (Array.isArray(v) && v.includes('')))
      throw usage(`${o.long ?? o.short} must not be empty`, { option: o.long ?? o.short });
  }
}

/**
 * The trust policy's single-valued options: given twice with different values, commander keeps
 * the last, and the first would be dropped without a word (a threshold lowered, another trust
 * folder or anti-rollback state read). Other options keep the last value, as wrapper scripts
 * (`xpkg serve --port 8000 "$@"`) and manifests that append arguments expect.
 */
const ONE_VALUE = new Set(['--trust-dir', '--threshold', '--state-dir']);

/**
 * One of ONE_VALUE given twice with different values is E_USAGE; the same value twice is harmless.
 */
export function refuseRepeated(cmd: Command): void {
  const seen = new Map<string, unknown>();
  for (const o of cmd.options) {
    if (!(o.required || o.optional) || o.variadic || o.parseArg || !ONE_VALUE.has(o.long ?? '')) continue;
    cmd.on(`option:${o.name()}`, (value: unknown) => {
      const flag = o.long ?? o.short ?? o.name();
      if (seen.has(flag) && seen.get(flag) !== value)
        throw usage(
          `${flag} given twice with different values (${JSON.stringify(seen.get(flag))}, ${JSON.stringify(value)})`,
          {
            option: flag,
          },
        );
      seen.set(flag, value);
    });
  }
  for (const sub of cmd.commands) refuseRepeated(sub);
}

export function usage(summary: string, detail?: unknown): UsageError {
  return new UsageError('E_USAGE', summary, detail);
}

/** Parses an integer option in [min, max] (max: a safe integer by default) or throws E_USAGE. */
export function intOption(
  value: string | undefined,
  name: string,
  min = 1,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[0-9]+$/.test(value) || Number(value) < min)
    throw usage(`--${name} must be an integer ≥ ${min}, not ${JSON.stringify(value)}`);
  // 1e23 would round silently to another number (and a budget of it means no budget)
  if (Number(value) > max) throw usage(`--${name} must be at most ${max}, not ${JSON.stringify(value)}`);
  return Number(value);
}

/** Node runs a timer longer than this after 1 ms (TimeoutOverflowWarning): `--wait 9999999999` did not wait at all. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A duration in milliseconds that a timer will wait, or E_USAGE. */
export function msOption(value: string | undefined, name: string, min = 0): number | undefined {
  return intOption(value, name, min, MAX_TIMER_MS);
}

/** A count of threads or processes to start: at most 4 per core (at least 64 allowed), or E_USAGE. */
export function perCoreOption(value: string | undefined, name: string, min = 1): number | undefined {
  return intOption(value, name, min, Math.max(64, 4 * availableParallelism()));
}

/** A TCP/UDP port option (0…65535; `min` 0 allows "any free one"), or E_USAGE: never a socket error later. */
export function portOption(value: string | undefined, name: string, min = 0): number | undefined {
  const port = intOption(value, name, min);
  if (port !== undefined && port > 65535) throw usage(`--${name} must be a port ≤ 65535, not ${JSON.stringify(value)}`);
  return port;
}

/**
 * An `-o` naming the file to write, or E_USAGE: one ending in a separator names a folder, which the
 * written file would be renamed onto and fail late, naming its temp file.
 */
export function fileOutputOption(value: string | undefined, what: string): string | undefined {
  if (value !== undefined && /[/\\]$/.test(value))
    throw usage(`-o ${value} names a folder; give the ${what}'s file name`, { output: value });
  return value;
}
