/**
 * The daemon's logger: pino, JSON lines (`--log-format json`, one object per line with the request id)
 * or short text lines for a person. Logs go to stderr by default; the library never picks a terminal.
 */
import { type DestinationStream, type Logger, pino } from 'pino';

export type LogFormat = 'json' | 'text';

/** Text lines: time, level, message, then the fields as key=value (pino's JSON, re-rendered). */
function textStream(out: NodeJS.WritableStream): DestinationStream {
  const levels: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
  return {
    write(line: string) {
      const { time, level, msg, pid: _p, hostname: _h, ...rest } = JSON.parse(line) as Record<string, unknown>;
      const fields = Object.entries(rest)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      out.write(
        `${new Date(time as number).toISOString()} ${levels[level as number] ?? level} ${msg}${fields ? ` ${fields}` : ''}\n`,
      );
    },
  };
}

export function createLogger(
  o: { format?: LogFormat; level?: string; destination?: NodeJS.WritableStream } = {},
): Logger {
  const out = o.destination ?? process.stderr;
  const opts = { level: o.level ?? 'info', base: undefined };
  return o.format === 'json' ? pino(opts, out as DestinationStream) : pino(opts, textStream(out));
}
