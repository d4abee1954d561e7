/**
 * Health, metadata, metrics and the model repository API (Open Inference Protocol / Triton's
 * model_repository extension). The repository API is registered only when enabled; it needs a
 * bearer token, or else the server is bound to loopback and the caller must be on loopback too. It
 * loads only signed packages from the repository folder: there is no parameter that names a file.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ServeError } from '../spec/errors.js';
import { parseJson } from './infer-body.js';
import { type ModelParams, modelParams, repositoryParams } from './routes-infer.js';
import type { ServeContext } from './server.js';
import { metadataTensor } from './tensors.js';

/**
 * A health or readiness answer that is false: the protocol's "a 4xx status code indicates false"
 * (KServe's required API; Triton answers 400). Probes treat any status from 400 as failed.
 */
const NOT_READY = 400;

export function healthRoutes(app: FastifyInstance, ctx: ServeContext): void {
  app.get('/v2/health/live', async () => ({ live: true }));
  app.get('/v2/health/ready', async (_req, reply) => {
    const ready = ctx.repository.ready && !ctx.closing;
    return reply.code(ready ? 200 : NOT_READY).send({ ready });
  });
  const extensions = ['binary_tensor_data', 'classification', ...(ctx.repositoryApi ? ['model_repository'] : [])];
  app.get('/v2', async () => ({ name: 'xpkg', version: ctx.serverVersion, extensions }));

  const metadata = async (req: FastifyRequest<{ Params: ModelParams }>) => {
    const { name, version } = req.params;
    const v = ctx.repository.pick(name, version);
    const e = ctx.repository.models.get(name)!;
    return {
      name,
      versions: [...e.versions.values()].filter((x) => x.state !== 'closed').map((x) => x.id),
      platform: 'xpkg',
      inputs: v.manifest.inputs.map(metadataTensor),
      outputs: v.manifest.outputs.map(metadataTensor),
      parameters: {
        version: v.id,
        sequence: v.sequence,
        package_version: v.manifest.version,
        task: v.manifest.task,
        signed: v.signed,
      },
    };
  };
  const ready = async (req: FastifyRequest<{ Params: ModelParams }>, reply: import('fastify').FastifyReply) => {
    const { name, version } = req.params;
    const e = ctx.repository.models.get(name);
    if (!e) ctx.repository.pick(name); // 404 with its code
    // a model that was loaded and is not now (unloaded, between versions) is known but not ready
    let ok = false;
    if (e?.current || version !== undefined)
      try {
        ok = ctx.repository.pick(name, version).state === 'ready';
      } catch (err) {
        if ((err as { code?: string }).code !== 'E_SERVE_UNAVAILABLE') throw err;
      }
    return reply.code(ok ? 200 : NOT_READY).send({ name, ready: ok });
  };
  const opts = { schema: { params: modelParams } };
  app.get('/v2/models/:name', opts, metadata);
  app.get('/v2/models/:name/versions/:version', opts, metadata);
  app.get('/v2/models/:name/ready', opts, ready);
  app.get('/v2/models/:name/versions/:version/ready', opts, ready);

  app.get('/metrics', async (_req, reply) =>
    reply.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics()),
  );
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|::ffff:127\.\d+\.\d+\.\d+)$/;

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || LOOPBACK.test(host);
}

export function repositoryRoutes(app: FastifyInstance, ctx: ServeContext): void {
  const token = ctx.repositoryToken ? Buffer.from(`Bearer ${ctx.repositoryToken}`) : undefined;
  app.addHook('onRequest', async (req) => {
    if (token) {
      const given = Buffer.from(req.headers.authorization ?? '');
      if (given.length !== token.length || !timingSafeEqual(given, token))
        throw new ServeError('E_SERVE_UNAUTHORIZED', 'the repository API needs Authorization: Bearer <token>');
    } else if (!LOOPBACK.test(req.socket.remoteAddress ?? ''))
      throw new ServeError('E_SERVE_UNAUTHORIZED', 'the repository API without a token answers loopback callers only');
  });
  // Triton's server reads these bodies whatever their content type, and an empty one as no options:
  // clients post an empty body as application/json (Go's and generic clients) or as a form (`curl -d ''`)
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => {
    const text = body as string;
    if (text.trim() === '') return done(null, null);
    try {
      done(null, parseJson(text));
    } catch (e) {
      done(new ServeError('E_SERVE_REQUEST', `the request body is not JSON: ${(e as Error).message}`));
    }
  });
  const index = {
    anyOf: [
      { type: 'null' },
      { type: 'object', properties: { ready: { type: 'boolean' } }, additionalProperties: false },
    ],
  };
  app.post('/v2/repository/index', { schema: { body: index } }, async (req) => {
    const only = (req.body as { ready?: boolean } | null)?.ready;
    return ctx.repository.index().filter((x) => !only || x.state === 'READY');
  });
  // Load and unload take an empty body or {"parameters": {…}} (Triton's clients send unload_dependents
  // on every unload). Triton's load may also take a config or file contents in parameters; here a
  // package comes only from the folder, so those are refused rather than ignored.
  const body = (allowed: Record<string, unknown>) => ({
    anyOf: [
      { type: 'null' },
      {
        type: 'object',
        properties: { parameters: { type: 'object', properties: allowed, additionalProperties: false } },
        additionalProperties: false,
      },
    ],
  });
  const opts = (allowed: Record<string, unknown>) => ({ schema: { params: repositoryParams, body: body(allowed) } });
  app.post('/v2/repository/models/:name/load', opts({}), async (req: FastifyRequest<{ Params: ModelParams }>) => {
    const v = await ctx.repository.loadModel(req.params.name);
    return { name: v.name, version: v.id, sequence: v.sequence };
  });
  // a package has no dependent models to unload with it: the parameter changes nothing
  const unload = opts({ unload_dependents: { type: 'boolean' } });
  app.post('/v2/repository/models/:name/unload', unload, async (req: FastifyRequest<{ Params: ModelParams }>) => {
    await ctx.repository.unloadModel(req.params.name);
    return {};
  });
}
