/**
 * Raw HTTP/1.1 over a socket for the transport tests (test/serve-transport.test.ts): bytes written as
 * given (pipelined, dribbled, malformed), and the answers read back apart from the byte stream.
 */
import { connect } from 'node:net';

export interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** The body as JSON, when it is JSON. */
  json?: any;
}

export interface Exchange {
  answers: RawAnswer[];
  /** The server closed the connection (rather than the wait running out). */
  closed: boolean;
  /** Bytes after the last whole answer. */
  rest: Buffer;
}

/**
 * Writes each part in turn (`delayMs` between them) on one connection to `url`'s host and port, and
 * reads until the server closes it or `waitMs` passes. `headOnly`: which answers have no body (HEAD).
 */
export function exchange(
  url: string,
  parts: (string | Buffer)[],
  o: { delayMs?: number; waitMs?: number; headOnly?: number[] } = {},
): Promise<Exchange> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const sock = connect(Number(u.port), u.hostname);
    const got: Buffer[] = [];
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ ...parseAnswers(Buffer.concat(got), o.headOnly ?? []), closed });
    };
    const timer = setTimeout(() => finish(false), o.waitMs ?? 5000);
    sock.on('data', (d) => got.push(d));
    sock.on('close', () => finish(true));
    sock.on('error', () => {});
    (async () => {
      for (const p of parts) {
        if (done || sock.destroyed) return;
        sock.write(p);
        if (o.delayMs) await new Promise((r) => setTimeout(r, o.delayMs));
      }
    })();
  });
}

/** Answers one after another in `buf`: Content-Length or chunked bodies; 1xx, 204 and `headOnly` have none. */
export function parseAnswers(buf: Buffer, headOnly: number[]): { answers: RawAnswer[]; rest: Buffer } {
  const answers: RawAnswer[] = [];
  let off = 0;
  let finals = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', off);
    if (end < 0) break;
    const [line, ...fields] = buf.subarray(off, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(line)?.[1]);
    if (!status) break;
    const headers: Record<string, string> = {};
    for (const f of fields) {
      const i = f.indexOf(':');
      headers[f.slice(0, i).trim().toLowerCase()] = f.slice(i + 1).trim();
    }
    let at = end + 4;
    let body: Buffer = Buffer.alloc(0);
    const bodiless = status < 200 || status === 204 || headOnly.includes(finals);
    if (!bodiless && headers['transfer-encoding'] === 'chunked') {
      const chunks: Buffer[] = [];
      for (;;) {
        const eol = buf.indexOf('\r\n', at);
        if (eol < 0) return { answers, rest: buf.subarray(off) };
        const n = Number.parseInt(buf.subarray(at, eol).toString('latin1'), 16);
        at = eol + 2;
        if (n === 0) {
          at = buf.indexOf('\r\n', at) + 2;
          break;
        }
        chunks.push(buf.subarray(at, at + n));
        at += n + 2;
      }
      body = Buffer.concat(chunks);
    } else if (!bodiless) {
      const n = Number(headers['content-length'] ?? 0);
      if (at + n > buf.length) break;
      body = buf.subarray(at, at + n);
      at += n;
    }
    let json: unknown;
    if ((headers['content-type'] ?? '').includes('json') && body.length) json = JSON.parse(body.toString('utf8'));
    answers.push({ status, headers, body, ...(json !== undefined ? { json } : {}) });
    if (status >= 200) finals++;
    off = at;
  }
  return { answers, rest: buf.subarray(off) };
}

/** The status and error code of each answer (1xx included), for comparing a whole exchange at once. */
export const codes = (x: Exchange) => x.answers.map((a) => [a.status, a.json?.code ?? a.json?.error?.code ?? null]);
