/**
 * The daemon's logger: pino, JSON lines (`--log-format json`, one object per line with the request id)
 * or short text lines for a person. Logs go to stderr by default (in batches: `batched`); the library
 * never picks a terminal.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type DestinationStream, type Logger, pino } from 'pino';
import type { ServeMetrics } from './metrics.js';

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

/**
 * Characters a text line must not carry as they are: controls (C0, DEL, C1: a newline would forge a
 * line, an escape sequence rewrite a terminal), line and paragraph separators, and format
 * characters (bidirectional overrides reorder what a reader sees).
 */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;
const unicodeEscape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
/** A value as it is when that reads unambiguously, else quoted and escaped (logfmt style). */
const BARE = /^[^\s"=\\\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+$/u;
const value = (v: unknown) => {
  if (typeof v === 'string' && BARE.test(v)) return v;
  return (JSON.stringify(v) ?? String(v)).replace(UNSAFE, unicodeEscape);
};

/**
 * Text lines: time, level, message, then the fields as key=value (pino's JSON, re-rendered). Whatever
 * came from outside (a URL, a file name, an error's message) is escaped: one line per entry.
 */
function textStream(out: Sink): DestinationStream {
  const levels: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
  return {
    write(line: string) {
      // pino adds no pid or hostname (base: undefined): a pid here was logged on purpose (`listening`)
      const { time, level, msg, ...rest } = JSON.parse(line) as Record<string, unknown>;
      const fields = Object.entries(rest)
        .map(([k, v]) => `${k.replace(UNSAFE, unicodeEscape)}=${value(v)}`)
        .join(' ');
      out.write(
        `${new Date(time as number).toISOString()} ${levels[level as number] ?? level} ${String(msg).replace(UNSAFE, unicodeEscape)}${fields ? ` ${fields}` : ''}\n`,
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

/** A request with what the routes learnt: the model and version that answered, the error code. */
export type Tagged = FastifyRequest & {
  xpkg?: { model?: string; version?: string; code?: string; error?: string; receiveMs?: number };
  /** When the body began to be read (the preParsing hook of the routes that take one: receiveTimer). */
  receiving?: number;
};

/** Distinct internal-error stacks logged (each once). */
const STACKS = 64;

/** Each request's one log line and its counts, wherever it was answered. */
export function requestLog(log: Logger, metrics: ServeMetrics) {
  const recorded = new WeakSet<object>();
  const stacks = new Set<string>();
  return {
    /** From the onResponse hook, or where no hook runs (the router's own errors): once per request. */
    record(req: Tagged, reply: FastifyReply) {
      if (recorded.has(req.raw)) return;
      recorded.add(req.raw);
      // the route's pattern, never the URL: a client's path must not become a label value
      const route = req.routeOptions?.url ?? 'none';
      const t = req.xpkg ?? {};
      const model = t.model ?? '';
      metrics.requests.inc({ route, status: reply.statusCode, code: t.code ?? 'ok', model });
      metrics.latency.observe({ route, model }, reply.elapsedTime / 1000);
      const line = {
        reqId: req.id,
        method: req.method,
        url: req.url,
        status: reply.statusCode,
        ms: Number(reply.elapsedTime.toFixed(2)),
        ...t,
      };
      if (reply.statusCode >= 500) log.warn(line, 'request failed');
      else log.info(line, 'request');
    },
    /**
     * The client closed its connection before the answer was complete (fastify's onRequestAbort): no
     * response and no onResponse, so counted here as status 499 (nginx's "client closed request"),
     * code `aborted`, with its line; a later record() of the same request adds nothing.
     */
    aborted(req: Tagged) {
      if (recorded.has(req.raw)) return;
      recorded.add(req.raw);
      const route = req.routeOptions?.url ?? 'none';
      const t = req.xpkg ?? {};
      metrics.requests.inc({ route, status: 499, code: 'aborted', model: t.model ?? '' });
      log.info(
        { reqId: req.id, method: req.method, url: req.url, status: 499, code: 'aborted', ...t },
        'request aborted',
      );
    },
    /** Refused by Node's HTTP parser (no request object): `reason` is Node's code, never the client's bytes. */
    refused(reqId: string, status: number, code: string, reason?: string) {
      metrics.requests.inc({ route: 'none', status, code, model: '' });
      log.info({ reqId, status, code, reason }, 'request');
    },
    /**
     * An internal error's stack once per distinct stack (at most STACKS of them): a bug every request
     * hits would otherwise write a stack trace per request; the request line says what failed.
     */
    internal(err: unknown, req: Tagged) {
      const stack = err instanceof Error && err.stack ? err.stack : String(err);
      // the frames, not the message: one that quotes the request must not make every stack new
      const key = `${(err as Error)?.name}${stack.slice(stack.indexOf('\n    at '))}`;
      req.xpkg = { ...req.xpkg, error: String((err as Error)?.message ?? err).slice(0, 512) };
      if (stacks.has(key) || stacks.size >= STACKS) return;
      stacks.add(key);
      log.error({ reqId: req.id, err }, 'internal error');
    },
  };
}
