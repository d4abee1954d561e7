/**
 * The daemon's logger: pino, JSON lines (`--log-format json`, one object per line with the request id)
 * or short text lines for a person. Logs go to stderr by default (in batches: `batched`); the library
 * never picks a terminal.
 */
import { type DestinationStream, type Logger, pino } from 'pino';

export type LogFormat = 'json' | 'text';

/** Where lines go: `urgent` ones (warnings and worse) are not held back. */
interface Sink {
  write(s: string, urgent?: boolean): void;
  flush?(cb?: () => void): void;
}

/**
 * A stream written in batches: lines wait at most `ms` (or until 64 KiB wait, a warning comes, or
 * the process exits). A write per line costs a loaded daemon a system call per request on its
 * event loop, and wakes whoever reads the log (journald, a supervisor) as often.
 */
export function batched(out: NodeJS.WritableStream, ms = 50): Sink & { flush(cb?: () => void): void } {
  let lines: string[] = [];
  let bytes = 0;
  let timer: NodeJS.Timeout | undefined;
  const flush = (cb?: () => void) => {
    clearTimeout(timer);
    timer = undefined;
    if (lines.length) out.write(lines.length === 1 ? lines[0] : lines.join(''));
    lines = [];
    bytes = 0;
    cb?.();
  };
  process.once('exit', () => flush());
  return {
    write(s: string, urgent = false) {
      lines.push(s);
      bytes += s.length;
      if (urgent || bytes >= 65536) flush();
      else timer ??= setTimeout(flush, ms).unref();
    },
    flush,
  };
}

const URGENT = /^\{"level":[4-6]0/;

/** Text lines: time, level, message, then the fields as key=value (pino's JSON, re-rendered). */
function textStream(out: Sink): DestinationStream {
  const levels: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
  return {
    write(line: string) {
      const { time, level, msg, pid: _p, hostname: _h, ...rest } = JSON.parse(line) as Record<string, unknown>;
      const fields = Object.entries(rest)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      out.write(
        `${new Date(time as number).toISOString()} ${levels[level as number] ?? level} ${msg}${fields ? ` ${fields}` : ''}\n`,
        (level as number) >= 40,
      );
    },
    ...(out.flush ? { flush: out.flush } : {}),
  } as DestinationStream;
}

/**
 * `destination`: written line by line (tests read it at once) unless `batchMs` is given; by default
 * the process's stderr, in batches of at most 50 ms.
 */
export function createLogger(
  o: { format?: LogFormat; level?: string; destination?: NodeJS.WritableStream; batchMs?: number } = {},
): Logger {
  const given = o.destination;
  const out: Sink =
    given && o.batchMs === undefined
      ? { write: (s: string) => void given.write(s) }
      : batched(given ?? process.stderr, o.batchMs);
  const opts = { level: o.level ?? 'info', base: undefined };
  const json = {
    write: (line: string) => out.write(line, URGENT.test(line)),
    ...(out.flush ? { flush: out.flush } : {}),
  } as DestinationStream;
  return pino(opts, o.format === 'json' ? json : textStream(out));
}
