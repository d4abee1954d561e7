/**
 * A man in the middle of the fabric on loopback: anyone who announced a peer can take a device's
 * calls and relay them to a real peer. This relay forwards each call whole (headers as sent, so the
 * device's signature and the peer's proof pass through) and lets a test change the request body on
 * the way there or the answer's body on the way back.
 */
import http, { type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TamperRelay {
  url: string;
  /** Requests relayed, and the statuses the peer answered them with. */
  statuses: number[];
  close(): Promise<void>;
}

async function read(s: IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of s) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

export async function tamperRelay(
  target: string,
  o: { request?: (b: Buffer) => Buffer; answer?: (b: Buffer) => Buffer },
): Promise<TamperRelay> {
  const to = new URL(target);
  const statuses: number[] = [];
  const server = http.createServer(async (req, res) => {
    const body = (o.request ?? ((b) => b))(await read(req));
    const up = http.request(
      {
        host: to.hostname,
        port: Number(to.port),
        method: req.method,
        path: req.url,
        headers: { ...req.headers, 'content-length': String(body.length) },
      },
      async (r) => {
        statuses.push(r.statusCode ?? 0);
        const answer = (r.statusCode === 200 && o.answer ? o.answer : (b: Buffer) => b)(await read(r));
        res.writeHead(r.statusCode ?? 502, { ...r.headers, 'content-length': String(answer.length) });
        res.end(answer);
      },
    );
    up.on('error', () => res.destroy());
    up.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    statuses,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** The buffer with one byte near its end flipped: inside the last tensor's data, past the JSON header. */
export function flipNearEnd(b: Buffer): Buffer {
  const c = Buffer.from(b);
  if (c.length > 8) c[c.length - 5] ^= 0x40;
  return c;
}
