/**
 * An HTTP proxy in front of a real registry that lets a test answer chosen requests itself (a
 * registry misbehaving: errors, rate limits, wrong bytes, redirects) and forwards every other one
 * unchanged. The Host header is forwarded as sent, so the registry's Location headers name the proxy.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type net from 'node:net';

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

/** Answers the request itself (true), or leaves it to be forwarded (false). */
export type Hook = (req: IncomingMessage, res: ServerResponse, seen: SeenRequest[]) => boolean | Promise<boolean>;

export interface FaultProxy {
  host: string;
  /** Every request received, in order. */
  seen: SeenRequest[];
  hook: Hook;
  close(): Promise<void>;
}

/** Forwards one request to the registry on `port` and copies its answer back. */
export function forward(port: number, req: IncomingMessage, res: ServerResponse): void {
  const up = http.request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (r) => {
    res.writeHead(r.statusCode ?? 502, r.headers);
    r.pipe(res);
  });
  up.on('error', () => res.destroy());
  req.pipe(up);
}

export async function startFaultProxy(port: number, hook: Hook = () => false): Promise<FaultProxy> {
  const sockets = new Set<net.Socket>();
  const proxy: FaultProxy = {
    host: '',
    seen: [],
    hook,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
  const server = http.createServer(async (req, res) => {
    proxy.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    if (await proxy.hook(req, res, proxy.seen)) return;
    forward(port, req, res);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  proxy.host = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return proxy;
}
