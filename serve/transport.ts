/**
 * The daemon's HTTP transport beside fastify's routes: request targets as the routes read them, the
 * requests refused before their body (`Expect: 100-continue`), the answers a connection is owed
 * before a parse error's, and CONNECT.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { ServeError } from '../spec/errors.js';
import { asServeError, rawErrorResponse } from './errors.js';
import type { RouteMethods } from './methods.js';
import type { Repository } from './repository.js';

/** `/v2/models/@scope/…`: a bare `@scope` is never a model name (spec/schema.ts), so this is a scoped one. */
const SCOPED = /^\/(v2|xpkg)\/models\/(?:@|%40)([a-z0-9][a-z0-9._-]{0,63})\//;
/** A request target in absolute form (`http://host/path`, RFC 9112 §3.2.2): its scheme and authority. */
const ABSOLUTE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;
/** A route that takes a body for one model (after the scoped rewrite, no query): its name and version. */
const MODEL_BODY_PATH = /^\/(?:v2|xpkg)\/models\/([^/]+)(?:\/versions\/([^/]+))?\/(?:infer|run)$/;

/**
 * A request target as the routes read it: absolute form as the path it names, and a scoped name's
 * slash as Triton's and KServe's clients put it in a path (they quote everything else) routed as the
 * one name it is, `%40scope%2Fname`.
 */
export function routedUrl(url: string): string {
  const rest = url.replace(ABSOLUTE, '');
  const path = rest === url || rest[0] === '/' ? rest : `/${rest}`;
  return path.replace(SCOPED, '/$1/models/%40$2%2F');
}

/**
 * Why a request is refused whatever its body: no route takes it, or its model or version is not
 * served (a URL that cannot decode: left to the router).
 */
export function refusalBeforeBody(
  methods: RouteMethods,
  repository: Repository,
  method: string,
  url: string,
): ServeError | undefined {
  const path = routedUrl(url).split(/[?#]/)[0];
  if (!methods.allowed(path).includes(method)) return methods.noRoute(method, path);
  const m = MODEL_BODY_PATH.exec(path);
  if (!m) return undefined;
  let name: string;
  let version: string | undefined;
  try {
    name = decodeURIComponent(m[1]);
    version = m[2] === undefined ? undefined : decodeURIComponent(m[2]);
  } catch {
    return undefined;
  }
  try {
    repository.pick(name, version);
    return undefined;
  } catch (e) {
    return asServeError(e) as ServeError;
  }
}

/**
 * The requests of each connection whose answers are not finished: a connection-level error (bytes
 * that are not HTTP after pipelined requests) is answered after those requests' answers, in order,
 * not instead of them.
 */
export class Connections {
  private readonly open = new WeakMap<Socket, Set<IncomingMessage>>();
  private readonly waiting = new WeakMap<Socket, () => void>();
  private readonly refusing = new WeakSet<Socket>();

  /** `handler`, counting each request until its response is finished or its connection gone. */
  track(handler: (req: IncomingMessage, res: ServerResponse) => void) {
    return (req: IncomingMessage, res: ServerResponse) => {
      const socket = req.socket;
      let open = this.open.get(socket);
      if (!open) this.open.set(socket, (open = new Set()));
      open.add(req);
      res.once('close', () => {
        open.delete(req);
        if (!this.owed(socket)) this.waiting.get(socket)?.();
      });
      handler(req, res);
    };
  }

  /** Requests read whole that wait for their answers (not the one whose body the bad bytes are in). */
  private owed(socket: Socket): boolean {
    for (const r of this.open.get(socket) ?? []) if (r.complete) return true;
    return false;
  }

  /** Node's `clientError` with code `code` on `socket`: `answer` (which closes it) now, or once it owes none. */
  clientError(socket: Socket, code: string | undefined, answer: () => void): void {
    // the parser repeats its error for every later chunk: the first one is answered
    if (this.refusing.has(socket)) return;
    this.refusing.add(socket);
    const owed = this.owed(socket);
    // bytes after a request that asked to close the connection are no request (RFC 9112 §9.6): its
    // answer is the last, and Node closes the connection after it
    if (code === 'HPE_CLOSED_CONNECTION' && owed) return;
    if (owed) this.waiting.set(socket, () => !socket.destroyed && answer());
    else answer();
  }
}

/** CONNECT (Node hands the socket over, and would close it with no answer): 405, then the close. */
export function refuseConnect(methods: RouteMethods, url: string, socket: Socket) {
  const reqId = randomUUID();
  const path = routedUrl(url).split(/[?#]/)[0];
  const allowed = path.startsWith('/') ? methods.allowed(path) : [];
  const r = rawErrorResponse(
    'E_SERVE_METHOD',
    'the server takes no CONNECT (it is no proxy)',
    reqId,
    { Allow: allowed.join(', ') },
    { allowed },
  );
  socket.on('error', () => {});
  if (socket.writable) socket.write(r.response);
  socket.destroy();
  return { reqId, status: r.status, code: r.code };
}
