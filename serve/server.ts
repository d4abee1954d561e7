/**
 * `startServer(options)`: the inference daemon behind `xpkg serve`. Fastify serves the routes (JSON
 * schemas on every route, one error handler that maps codes to HTTP statuses), pino logs one line
 * per request with its id, prom-client counts. The server listens at once (live) and is ready when
 * the repository's first load has finished (every model warmed up).
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, LogController } from 'fastify';
import type { Logger } from 'pino';
import { checkToken } from '../fabric/auth.js';
import type { DirectoryOptions, MdnsPeerDirectory } from '../fabric/discovery/directory.js';
import type { RunnerOptions } from '../runner/runner.js';
import { ServeError } from '../spec/errors.js';
import { asServeError, clientErrorResponse, httpStatusOf } from './errors.js';
import { createLogger, type LogFormat, requestLog, type Tagged } from './log.js';
import { RouteMethods } from './methods.js';
import { ServeMetrics } from './metrics.js';
import {
  type AnnounceOptions,
  type Announcing,
  defaultPeerName,
  discoverPeers,
  type PeerState,
  peerRoute,
  peerState,
  startAnnouncing,
} from './peer.js';
import { BufferPool } from './pool.js';
import { loadNiceFor } from './priority.js';
import { ReferenceSync, type ServeReference } from './references.js';
import { Repository } from './repository.js';
import { healthRoutes, isLoopbackHost, repositoryRoutes } from './routes-admin.js';
import { fabricRoutes } from './routes-fabric.js';
import { inferRoutes, runRoutes } from './routes-infer.js';
import { Connections, refusalBeforeBody, refuseConnect, routedUrl } from './transport.js';
import type { Isolation } from './worker-handle.js';

export interface ServeOptions {
  /** The model repository: a folder of .xpkg files. */
  repo: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Trust and budget, as for Runner.open (each worker opens its package with these). */
  runner?: RunnerOptions;
  /** Model workers are child processes (default: a crash takes down only that worker) or worker threads (cheaper hand-off). */
  isolation?: Isolation;
  /** Workers per loaded version (default 1). */
  workers?: number;
  /**
   * Niceness of the model workers, 0-19 (default 0). Above 0 the event loop gets a contended core
   * before inference does: its lag stays low when the workers saturate the machine, at the cost of
   * the workers' share against other processes.
   */
  workerNice?: number;
  /**
   * Niceness of a worker while it verifies, loads and warms up a version (default 19 where it can be
   * undone at the switch: process workers, Linux, CAP_SYS_NICE or RLIMIT_NICE; else `workerNice`).
   */
  loadNice?: number;
  /** A load still running after this long goes on at `workerNice` (default 5000 ms; serve/version.ts says why). */
  loadPatienceMs?: number;
  /** Runs in flight per model (default 4) and requests waiting beyond them (default 64). */
  concurrency?: number;
  queue?: number;
  /** A request queued or running longer fails with E_SERVE_TIMEOUT (default 30 s). */
  inferTimeoutMs?: number;
  /** Largest request body (default 64 MiB). */
  bodyLimit?: number;
  /** Time to receive a request's headers (default 10 s) and the whole request (default 30 s): slow clients get 408. */
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  keepAliveTimeoutMs?: number;
  /** How long an old version may finish its runs after a swap or removal (default 30 s); loads do not wait for it. */
  drainMs?: number;
  /**
   * How long one load (verify, load, warm up) may take before it is abandoned: its workers are killed
   * and the file refused with E_SERVE_TIMEOUT, so a stuck load never holds up the next (default 5 min).
   */
  loadTimeoutMs?: number;
  /** Repository poll period (default 1 s) and how long a file must stay unchanged before it loads (default 500 ms). */
  pollMs?: number;
  settleMs?: number;
  /** Memory all loaded versions may hold together, in bytes (two copies during a swap included). */
  memoryBudget?: number;
  /** Dynamic batching for models whose inputs and outputs share a named first dimension. */
  batch?: { max: number; delayMs: number };
  /** The repository API (load, unload, index): off unless enabled; loopback-only without a token. */
  repositoryApi?: boolean;
  repositoryToken?: string;
  log?: Logger;
  logFormat?: LogFormat;
  logLevel?: string;
  /** What server metadata reports as the version. */
  serverVersion?: string;
  /** Registry references served as `<name>.xpkg` in the repository (serve/references.ts), re-resolved every `refPollMs` (default 60 s). */
  references?: readonly ServeReference[];
  refPollMs?: number;
  /** Announce the daemon on the local network for split inference (DNS-SD `_xpkg._tcp`, serve/peer.ts). */
  announce?: AnnounceOptions;
  /** Find peers to offload to (mDNS and/or static URLs): `XpkgServer.peers` lists them. */
  discover?: DirectoryOptions;
  /** Serve the tails of split models to peers that present this token (serve/routes-fabric.ts); off without one. */
  fabricToken?: string;
}

/** What the routes share. */
export interface ServeContext {
  repository: Repository;
  /** Memory for big request bodies, reused (pool.ts). */
  pool: BufferPool;
  metrics: ServeMetrics;
  isolation: Isolation;
  repositoryApi: boolean;
  repositoryToken?: string;
  serverVersion: string;
  closing: boolean;
}

export interface XpkgServer {
  url: string;
  app: FastifyInstance;
  repository: Repository;
  metrics: ServeMetrics;
  log: Logger;
  /** Resolves when the first load of the repository has finished (the server is ready). */
  ready: Promise<void>;
  /** Stops accepting, finishes the requests in flight, unloads every model. */
  close(): Promise<void>;
  /** The peers found with `discover` (fabric/discovery), for the offload step. */
  peers?: MdnsPeerDirectory;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
export async function startServer(o: ServeOptions): Promise<XpkgServer> {
  const host = o.host ?? '127.0.0.1';
  if (o.repositoryApi && !o.repositoryToken && !isLoopbackHost(host))
    throw new ServeError(
      'E_SERVE_CONFIG',
      `the repository API on ${host} needs a token (it is open without one only on loopback)`,
      {
        host,
      },
    );
  const log = o.log ?? createLogger({ format: o.logFormat ?? 'text', level: o.logLevel ?? 'info' });
  const metrics = new ServeMetrics();
  const isolation = o.isolation ?? 'process';
  const repository = new Repository({
    dir: o.repo,
    pollMs: o.pollMs ?? 1000,
    settleMs: o.settleMs ?? 500,
    drainMs: o.drainMs ?? 30_000,
    loadTimeoutMs: o.loadTimeoutMs ?? 300_000,
    ...(o.memoryBudget !== undefined ? { memoryBudget: o.memoryBudget } : {}),
    version: {
      isolation,
      workers: o.workers ?? 1,
      runner: o.runner ?? {},
      log,
      nice: o.workerNice ?? 0,
      loadNice: o.loadNice ?? loadNiceFor(isolation, o.workerNice ?? 0),
      ...(o.loadPatienceMs !== undefined ? { loadPatienceMs: o.loadPatienceMs } : {}),
    },
    scheduler: {
      concurrency: o.concurrency ?? 4,
      queue: o.queue ?? 64,
      timeoutMs: o.inferTimeoutMs ?? 30_000,
      ...(o.batch ? { batch: o.batch } : {}),
    },
    metrics,
    log,
  });
  const ctx: ServeContext = {
    repository,
    pool: new BufferPool(),
    metrics,
    isolation,
    repositoryApi: Boolean(o.repositoryApi),
    ...(o.repositoryToken ? { repositoryToken: o.repositoryToken } : {}),
    serverVersion: o.serverVersion ?? 'dev',
    closing: false,
  };

  const requests = requestLog(log, metrics);
  /** One error as the response: its code's status, V2's shape under /v2, the run route's elsewhere. */
  function sendError(err: unknown, req: Tagged, reply: FastifyReply) {
    const e = asServeError(err);
    const status = httpStatusOf(e.code);
    req.xpkg = { ...req.xpkg, code: e.code };
    const retry = (e.detail as { retryAfter?: number } | undefined)?.retryAfter;
    if (status === 429 || status === 503) reply.header('retry-after', String(retry ?? 1));
    if (e.code === 'E_INTERNAL') requests.internal(err, req);
    const v2 = req.url.startsWith('/v2');
    // an internal error's detail is its stack: for the log above, not for the client
    const json = e.toJSON();
    if (e.code === 'E_INTERNAL') delete json.detail;
    const { summary, ...rest } = json;
    return reply.code(status).send(v2 ? { error: summary, ...rest } : { error: json });
  }

  const requestTimeout = o.requestTimeoutMs ?? 30_000;
  const bodyLimit = o.bodyLimit ?? 64 * 1024 * 1024;
  const methods = new RouteMethods();
  const connections = new Connections();
  /** Requests with `Expect: 100-continue` refused instead of a 100: answered so in the onRequest hook. */
  const refusedAtContinue = new WeakMap<IncomingMessage, ServeError>();
  const app: FastifyInstance = Fastify({
    // pino's Logger is what fastify logs with; its types name a narrower interface
    loggerInstance: log as unknown as FastifyBaseLogger,
    // one line per request comes from the onResponse hook below, with the model and version
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit,
    // a model name may be 128 characters (spec/schema.ts); the router's default stops at 100
    routerOptions: { maxParamLength: 256 },
    // a scoped model's name with its slash as it is, and an absolute-form target (transport.ts)
    rewriteUrl: (req) => routedUrl(req.url ?? '/'),
    // a URL the router cannot decode, or a longer parameter: answered as any other error (the error
    // handler set below does not reach the router's own context); no hook runs there either, so the
    // request id, log line and counts are added here
    frameworkErrors: (err, req, reply) => {
      reply.header('x-request-id', req.id);
      reply.raw.once('close', () => requests.record(req as Tagged, reply as FastifyReply));
      return sendError(err, req as Tagged, reply as FastifyReply);
    },
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    forceCloseConnections: 'idle',
    // a request that is not HTTP, cut short or too slow: answered with a code, as every other error
    // counted and logged as a request (route "none"), with an id of its own: never the client's bytes
    clientErrorHandler: (err, socket) => {
      const code = (err as { code?: string }).code;
      if (code === 'ECONNRESET' || socket.destroyed) return;
      // after the answers to the requests read before the bad bytes (pipelined), in order
      connections.clientError(socket as Socket, code, () => {
        const reqId = randomUUID();
        const r = clientErrorResponse(err as { code?: string }, reqId);
        if (socket.writable) socket.write(r.response);
        socket.destroy(err);
        requests.refused(reqId, r.status, r.code, code);
      });
    },
    // the daemon answers requests that arrive while it stops itself (the onRequest hook below)
    return503OnClosing: false,
    // validate as written: no coercion, and no property removed (one a schema does not allow is an error)
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    // Node's own guards against slow clients: a request (headers, then everything) must arrive in time.
    serverFactory: (handler) => {
      const tracked = connections.track(handler);
      const server = createServer(
        {
          // Node requires headers to arrive no later than the whole request
          headersTimeout: Math.min(o.headersTimeoutMs ?? 10_000, requestTimeout),
          requestTimeout,
          keepAliveTimeout: o.keepAliveTimeoutMs ?? 5_000,
          connectionsCheckingInterval: 500,
          // checked in the onRequest hook instead: Node's own 400 has no body and no code
          requireHostHeader: false,
        },
        tracked,
      );
      // Expect: 100-continue: a body declared over the limit is refused (413) before the client sends
      // it, not after (RFC 9110 §10.1.1); Node would say 100 to any. A compressed body's length is not
      // what the limit counts (encoding.ts), so it is let through.
      // So is a request that is refused whatever its body: no route for it, or a model or version not
      // served (404 or 405 at once, no upload).
      server.on('checkContinue', (req, res) => {
        const declared = Number(req.headers['content-length']);
        const tooLarge = declared > bodyLimit && req.headers['content-encoding'] === undefined;
        const refused = tooLarge ? undefined : refusalBeforeBody(methods, repository, req.method ?? '', req.url ?? '/');
        if (refused) refusedAtContinue.set(req, refused);
        else if (!tooLarge) res.writeContinue();
        tracked(req, res);
      });
      // CONNECT: Node hands its socket over, and without a listener closes it with no answer at all
      server.on('connect', (req: IncomingMessage, socket: Socket) => {
        const r = refuseConnect(methods, req.url ?? '', socket);
        requests.refused(r.reqId, r.status, r.code, 'CONNECT');
      });
      return server;
    },
  });

  // callback hooks, not async ones: no promise per hook per request on the event loop
  app.addHook('onRequest', (req, reply, done) => {
    // stopping: a request that still reaches the daemon (pipelined, or on a connection busy when the
    // stop began) gets the daemon's 503 with a code and Retry-After, then its connection closes;
    // fastify's own answer (return503OnClosing) has neither
    if (ctx.closing) {
      reply.header('connection', 'close');
      return done(new ServeError('E_SERVE_UNAVAILABLE', 'the server is stopping', { reason: 'stopping' }));
    }
    // an HTTP/1.1 request without Host is 400 (RFC 9112 §3.2)
    if (req.raw.httpVersion === '1.1' && req.headers.host === undefined)
      return done(new ServeError('E_SERVE_REQUEST', 'an HTTP/1.1 request needs a Host header'));
    // Expect: 100-continue refused at once (checkContinue): no 100 was sent, so its 404 or 405 comes
    // now instead of after waiting for a body the client holds back
    const refused = refusedAtContinue.get(req.raw);
    if (refused?.code === 'E_SERVE_METHOD')
      reply.header('allow', (refused.detail as { allowed: string[] }).allowed.join(', '));
    done(refused);
  });
  app.addHook('onSend', (req, reply, payload, done) => {
    reply.header('x-request-id', req.id);
    // fastify closes the connection after any body parser error, in case the client is still sending;
    // a body read to its end leaves nothing behind, so the connection (and the requests pipelined on
    // it) goes on
    if (reply.getHeader('connection') === 'close' && req.raw.complete && !ctx.closing) reply.removeHeader('connection');
    done(null, payload);
  });
  app.addHook('onResponse', (req: Tagged, reply, done) => {
    requests.record(req, reply);
    done();
  });
  app.addHook('onRequestAbort', (req: Tagged, done) => {
    requests.aborted(req);
    done();
  });
  app.setErrorHandler(async (err, req: Tagged, reply) => sendError(err, req, reply));
  methods.watch(app);
  app.setNotFoundHandler(async (req, reply) => {
    const path = req.url.split('?')[0];
    // OPTIONS * asks what the server as a whole takes (RFC 9110 §9.3.7)
    const allowed = path === '*' && req.method === 'OPTIONS' ? methods.all() : methods.allowed(path);
    if (allowed.length === 0) throw methods.noRoute(req.method, path);
    reply.header('allow', allowed.join(', '));
    if (req.method === 'OPTIONS') return reply.code(204).send();
    throw methods.noRoute(req.method, path);
  });

  healthRoutes(app, ctx);
  let peer: Promise<PeerState> | undefined;
  const port = () => (app.server.address() as { port: number }).port;
  const state = () =>
    (peer ??= peerState(repository, o.runner?.host, o.concurrency ?? 4, o.announce?.name ?? defaultPeerName(port())));
  peerRoute(app, state);
  await app.register(async (scope) => inferRoutes(scope, ctx));
  await app.register(async (scope) => runRoutes(scope, ctx));
  if (o.fabricToken) {
    const token = checkToken(o.fabricToken);
    await app.register(async (scope) => fabricRoutes(scope, ctx, token));
  }
  if (o.repositoryApi) await app.register(async (scope) => repositoryRoutes(scope, ctx));

  await repository.check();
  try {
    await app.listen({ host, port: o.port ?? 8000 });
  } catch (e) {
    throw new ServeError('E_SERVE_LISTEN', `cannot listen on ${host}:${o.port ?? 8000}: ${(e as Error).message}`, {
      host,
      port: o.port ?? 8000,
    });
  }
  const addr = app.server.address();
  const url =
    typeof addr === 'object' && addr
      ? `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`
      : String(addr);
  // the pid: the process to watch (a launcher may have started this one, cli/relaunch.ts)
  log.info({ url, repo: o.repo, isolation, pid: process.pid }, 'listening');
  const refs = o.references?.length
    ? new ReferenceSync(o.references, o.repo, o.runner ?? {}, log, o.refPollMs ?? 60_000)
    : undefined;
  const ready = (refs ? refs.start() : Promise.resolve())
    .then(() => repository.start())
    .then(() => log.info({ models: [...repository.models.keys()] }, 'ready'));
  ready.catch((e: unknown) => log.error({ err: (e as Error).message }, 'the first load of the repository failed'));
  let announcing: Announcing | undefined;
  let peers: MdnsPeerDirectory | undefined;
  if (o.announce || o.discover)
    try {
      if (o.announce) announcing = await startAnnouncing(o.announce, await state(), { host, port: port() }, log);
      if (o.discover) peers = await discoverPeers(o.discover, log);
    } catch (e) {
      ctx.closing = true;
      await announcing?.close();
      await app.close();
      await ready.catch(() => {});
      await refs?.close();
      await repository.close();
      throw e;
    }

  let closing: Promise<void> | undefined;
  return {
    url,
    app,
    repository,
    metrics,
    log,
    ready,
    ...(peers ? { peers } : {}),
    close: () =>
      (closing ??= (async () => {
        ctx.closing = true;
        await announcing?.close(); // the goodbye first: devices stop choosing this peer while it drains
        await peers?.close();
        await app.close(); // stops accepting; requests in flight finish (their workers are still up)
        await ready.catch(() => {});
        await refs?.close();
        await repository.close();
        metrics.close();
        log.info('stopped');
        log.flush(); // a batched destination (log.ts): out before whatever the caller prints next
      })()),
  };
}
