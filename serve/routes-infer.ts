/**
 * Inference routes: the Open Inference Protocol's infer (JSON tensors, or the binary tensor data
 * extension: a JSON header of `Inference-Header-Content-Length` bytes, then raw tensor bytes), and
 * the raw-image convenience route that answers with `xpkg run --json`'s result.
 */
import type { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { outputsToJson } from '../runner/outputs-json.js';
import { ServeError } from '../spec/errors.js';
import { classifyOutput } from './classification.js';
import { bodyEncoding, decodedBody } from './encoding.js';
import { drain, parseJson, unsupported } from './infer-body.js';
import type { Tagged } from './log.js';
import { readBody } from './pool.js';
import type { Ran } from './scheduler.js';
import type { ServeContext } from './server.js';
import { outputTensor } from './tensor-output.js';
import { type RequestTensor, type ResponseTensor, requestInputs } from './tensors.js';

const BINARY = Symbol('binary tensor data');
const round = (ms: number) => Math.round(ms * 1000) / 1000;
const HEADER_LENGTH = 'inference-header-content-length';

interface InferBody {
  id?: string;
  parameters?: { binary_data_output?: boolean } & Record<string, unknown>;
  inputs: RequestTensor[];
  outputs?: {
    name: string;
    parameters?: { binary_data?: boolean; classification?: number } & Record<string, unknown>;
  }[];
  [BINARY]?: Buffer;
}

/** The protocol's $parameters: names to a string, a number or a boolean. */
const PARAMETERS = {
  type: 'object',
  additionalProperties: { anyOf: [{ type: 'string' }, { type: 'number' }, { type: 'boolean' }] },
} as const;
const inferSchema = {
  type: 'object',
  required: ['inputs'],
  properties: {
    id: { type: 'string', maxLength: 256 },
    parameters: { ...PARAMETERS, properties: { binary_data_output: { type: 'boolean' } } },
    inputs: {
      type: 'array',
      minItems: 1,
      maxItems: 64,
      items: {
        type: 'object',
        required: ['name', 'shape', 'datatype'],
        properties: {
          name: { type: 'string', maxLength: 64 },
          shape: { type: 'array', maxItems: 8, items: { type: 'integer', minimum: 0 } },
          datatype: {
            enum: [
              'BOOL',
              'UINT8',
              'UINT16',
              'UINT32',
              'UINT64',
              'INT8',
              'INT16',
              'INT32',
              'INT64',
              'FP16',
              'FP32',
              'FP64',
              'BYTES',
            ],
          },
          parameters: { ...PARAMETERS, properties: { binary_data_size: { type: 'integer', minimum: 0 } } },
          data: { type: 'array' },
        },
      },
    },
    outputs: {
      type: 'array',
      maxItems: 64,
      items: {
        type: 'object',
        required: ['name'],
        properties: {
          name: { type: 'string', maxLength: 64 },
          parameters: {
            ...PARAMETERS,
            properties: { binary_data: { type: 'boolean' }, classification: { type: 'integer', minimum: 1 } },
          },
        },
      },
    },
  },
} as const;

const NAME = '[A-Za-z0-9][A-Za-z0-9._-]{0,127}';
const VERSION = { type: 'string', pattern: '^[0-9a-f]{8,64}$' } as const;

/**
 * A served model's name and version. Any string: a name or version the server does not hold is 404
 * (E_SERVE_MODEL_UNKNOWN, E_SERVE_VERSION_UNKNOWN) whatever its form, as the protocol's clients
 * expect (a Triton client names versions "1", "2"…); they are only looked up, never used as paths.
 */
export const modelParams = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string', minLength: 1 }, version: { type: 'string', minLength: 1 } },
} as const;

/** The repository API's names: no scope (a name it does not know is the file `<name>.xpkg` of the folder). */
export const repositoryParams = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string', pattern: `^${NAME}$` }, version: VERSION },
} as const;

export type ModelParams = { name: string; version?: string };

/** An output whose data are bigints: INT64 values beyond 2^53, which no JSON number of JavaScript's holds. */
const exact = (t: ResponseTensor) => typeof t.data?.[0] === 'bigint';

/**
 * The response as JSON, INT64 data beyond 2^53 written digit for digit (JSON.stringify refuses a
 * bigint). NaN and ±Infinity in float data are written as null, as JSON.stringify writes them: the
 * response stays JSON that every parser reads (JSON.parse, a browser's response.json(), orjson);
 * Triton writes the bare words, which those refuse along with the whole response. The binary
 * extension carries them exactly.
 */
function json(r: { outputs: ResponseTensor[] }): string {
  if (!r.outputs.some(exact)) return JSON.stringify(r);
  const outputs = r.outputs.map((t) => {
    if (!exact(t)) return JSON.stringify(t);
    const { data, ...rest } = t;
    return `${JSON.stringify(rest).slice(0, -1)},"data":[${data!.join(',')}]}`;
  });
  const { outputs: _, ...head } = r;
  return `${JSON.stringify(head).slice(0, -1)},"outputs":[${outputs.join(',')}]}`;
}

/**
 * Each requested output once: a name given twice alike is answered once, as Triton's server does (a
 * response holds one tensor per name, which is how clients look them up); given twice with other
 * parameters (JSON and binary, or a classification) it is refused, since one answer cannot be both.
 */
function onceEach(outputs: NonNullable<InferBody['outputs']>): NonNullable<InferBody['outputs']> {
  const seen = new Map<string, string>();
  const once: NonNullable<InferBody['outputs']> = [];
  for (const o of outputs) {
    const how = JSON.stringify(Object.entries(o.parameters ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    const before = seen.get(o.name);
    if (before === undefined) {
      seen.set(o.name, how);
      once.push(o);
    } else if (before !== how)
      throw new ServeError(
        'E_SERVE_REQUEST',
        `output ${JSON.stringify(o.name)} is requested twice, with other parameters`,
        {
          output: o.name,
          reason: 'duplicate',
        },
      );
  }
  return once;
}

/** Stage times of one inference into the histograms. */
function observe(ctx: ServeContext, name: string, ran: Ran, workerMs: number): void {
  const h = ctx.metrics.stages;
  h.observe({ model: name, stage: 'queue' }, ran.queueMs / 1000);
  h.observe({ model: name, stage: 'worker' }, workerMs / 1000);
  for (const [stage, ms] of Object.entries(ran.result.timings))
    if (stage !== 'total') h.observe({ model: name, stage }, ms / 1000);
}

async function submit(
  ctx: ServeContext,
  req: FastifyRequest,
  name: string,
  pinned: string | undefined,
  inputs: Record<string, unknown>,
  transfer: ArrayBuffer[] = [],
): Promise<Ran> {
  const entry = ctx.repository.models.get(name);
  if (!entry) ctx.repository.pick(name); // throws the right 404
  const t0 = performance.now();
  const ran = await entry!.scheduler.submit(inputs, { ...(pinned ? { pinned } : {}), transfer });
  observe(ctx, name, ran, performance.now() - t0 - ran.queueMs);
  const tag = (req as Tagged).xpkg;
  // the body's receive time is observed only now: a label is a model the repository holds, never a
  // name from the client's URL
  if (tag?.receiveMs !== undefined) ctx.metrics.stages.observe({ model: name, stage: 'receive' }, tag.receiveMs / 1000);
  (req as Tagged).xpkg = { ...tag, model: name, version: ran.version.id };
  return ran;
}

/**
 * The body decoded as it arrives (encoding.ts), and the time from its first byte read to its last
 * parsed: the request log's `receiveMs` and the `receive` stage (a slow client shows there, not in
 * the run).
 */
function receiveTimer(app: FastifyInstance): void {
  app.addHook('preParsing', async (req: Tagged, _reply, payload) => {
    req.receiving = performance.now();
    return decodedBody(req, payload);
  });
  app.addHook('preValidation', async (req: Tagged) => {
    if (req.receiving !== undefined)
      req.xpkg = { ...req.xpkg, receiveMs: Number((performance.now() - req.receiving).toFixed(3)) };
  });
}

export function inferRoutes(app: FastifyInstance, ctx: ServeContext): void {
  // infer takes JSON or the binary extension only: anything else is 415, not a schema error
  app.removeContentTypeParser('text/plain');
  receiveTimer(app);
  // The binary tensor data extension: the JSON header's length in a header, then the tensor bytes.
  // Without that header the whole body is the JSON request (the extension's header is optional when
  // no tensor is binary). The body is read into pooled memory (pool.ts), padded so that the tensor
  // bytes after the JSON header start 8-aligned: FP32/INT64 tensors are then views, never copies.
  const binaryBody = async (req: FastifyRequest, payload: Readable) => {
    const raw = req.headers[HEADER_LENGTH];
    // digits only: Number() would also read 0x1A, 1e2 and " 12 " as lengths
    const n = raw === undefined ? undefined : /^\d{1,15}$/.test(raw as string) ? Number(raw) : Number.NaN;
    // a compressed body's Content-Length counts what came over the wire, not what is read here
    const length = bodyEncoding(req) === undefined ? req.headers['content-length'] : undefined;
    const declared = length === undefined ? Number.POSITIVE_INFINITY : Number(length);
    if (n !== undefined && (!Number.isSafeInteger(n) || n < 2 || n > declared)) {
      await drain(req, payload);
      throw new ServeError(
        'E_SERVE_REQUEST',
        `a binary request needs an ${HEADER_LENGTH} header between 2 and the body's ${length ?? 'unknown'} bytes`,
        { header: raw ?? null },
      );
    }
    const buf = await readBody(payload, {
      limit: req.routeOptions.bodyLimit ?? Number.POSITIVE_INFINITY,
      ...(length !== undefined ? { length } : {}),
      pool: ctx.pool,
      pad: n === undefined ? 0 : (8 - (n % 8)) % 8,
    });
    const end = n ?? buf.length;
    if (end > buf.length)
      throw new ServeError('E_SERVE_REQUEST', `the ${HEADER_LENGTH} ${n} runs past the body's ${buf.length} bytes`, {
        header: raw,
      });
    let header: InferBody;
    try {
      header = parseJson(buf.subarray(0, end).toString('utf8')) as InferBody;
    } catch (e) {
      throw new ServeError(
        'E_SERVE_REQUEST',
        `${n === undefined ? 'the request body' : 'the JSON header of the binary request'} is not JSON: ${(e as Error).message}`,
      );
    }
    if (header && typeof header === 'object' && !Array.isArray(header))
      Object.defineProperty(header, BINARY, { value: buf.subarray(end), enumerable: false });
    return header;
  };
  app.addContentTypeParser('application/octet-stream', binaryBody);
  // The extension is signalled by its header, not by the content type: a client may send the JSON
  // header and the tensor bytes as application/json (Triton's server reads them so as well).
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', binaryBody);
  // curl's -d sends this type: Triton's server reads the body whatever its type, and its docs' curl
  // lines give no other, so a user pasting one must not get a 415
  app.addContentTypeParser('application/x-www-form-urlencoded', binaryBody);
  // No content type at all (Triton's and KServe's Python clients send none): JSON, or binary when the
  // header length is given. Any other type not parsed above is 415.
  app.addContentTypeParser('*', async (req: FastifyRequest, payload: Readable) => {
    if (req.headers['content-type'] !== undefined) {
      await drain(req, payload);
      throw new ServeError('E_SERVE_MEDIA_TYPE', `infer takes application/json or application/octet-stream`, {
        contentType: req.headers['content-type'],
      });
    }
    return binaryBody(req, payload);
  });

  const infer = async (
    req: FastifyRequest<{ Params: ModelParams; Body: InferBody }>,
    reply: import('fastify').FastifyReply,
  ) => {
    const { name, version } = req.params;
    const body = req.body;
    const manifest = ctx.repository.pick(name, version).manifest;
    const binary = body[BINARY];
    let off = 0;
    unsupported(body);
    const parts = body.inputs.map((t) => {
      const size = (t.parameters as { binary_data_size?: number } | undefined)?.binary_data_size;
      if (size !== undefined && t.data !== undefined)
        throw new ServeError('E_SERVE_REQUEST', `input ${t.name} has both data and parameters.binary_data_size`, {
          input: t.name,
        });
      if (size === undefined) {
        if (t.data === undefined)
          throw new ServeError('E_SERVE_REQUEST', `input ${t.name} has neither data nor parameters.binary_data_size`, {
            input: t.name,
          });
        return undefined;
      }
      if (!binary || off + size > binary.length)
        throw new ServeError('E_SERVE_REQUEST', `input ${t.name}: binary_data_size ${size} runs past the binary data`, {
          input: t.name,
          binaryBytes: binary?.length ?? 0,
        });
      const part = binary.subarray(off, off + size);
      off += size;
      return part;
    });
    if (binary && off !== binary.length)
      throw new ServeError('E_SERVE_REQUEST', `the binary data is ${binary.length} bytes; the inputs declare ${off}`, {
        binaryBytes: binary.length,
        declared: off,
      });
    const inputs = requestInputs(manifest, body.inputs, parts);
    // no outputs named, or an empty list, is every output (the protocol's default; Triton's too)
    const wanted: NonNullable<InferBody['outputs']> = body.outputs?.length
      ? onceEach(body.outputs)
      : manifest.outputs.map((o) => ({ name: o.name }));
    for (const o of wanted)
      if (!manifest.outputs.some((s) => s.name === o.name))
        throw new ServeError('E_SERVE_REQUEST', `the model has no output ${JSON.stringify(o.name)}`, {
          output: o.name,
          expected: manifest.outputs.map((s) => s.name),
        });
    // A thread worker takes the body's memory as it is (no copy) when the memory is the body's alone.
    const own = binary && ctx.pool.owns(binary.buffer);
    const transfer = ctx.isolation === 'thread' && own ? [binary.buffer as ArrayBuffer] : [];
    const ran = await submit(ctx, req, name, version, inputs, transfer);
    // done with the body: a process worker has read all of it; a thread worker handed it back
    if (own) ctx.pool.give(binary.buffer);
    for (const b of ran.result.recycle ?? []) ctx.pool.give(b, true);
    const spec = ran.version.manifest.outputs;
    // an optional output the run did not produce is left out, as Triton leaves out what a model did
    // not write (own keys only: `constructor` is no output of any run)
    const produced = wanted.filter((o) => Object.hasOwn(ran.result.outputs, o.name));
    const enc = produced.map((o) => {
      const bin = o.parameters?.binary_data ?? body.parameters?.binary_data_output ?? false;
      const value = ran.result.outputs[o.name];
      const n = o.parameters?.classification;
      if (n !== undefined) return classifyOutput(o.name, value, n, bin);
      return outputTensor(
        spec.find((s) => s.name === o.name),
        o.name,
        value,
        bin,
      );
    });
    const response = {
      model_name: name,
      model_version: ran.version.id,
      ...(body.id !== undefined ? { id: body.id } : {}),
      // where the time went: waiting for a run slot, and the run itself in the worker
      parameters: {
        sequence: ran.version.sequence,
        batched: ran.batched,
        queue_ms: round(ran.queueMs),
        run_ms: round(ran.result.timings.total ?? 0),
      },
      outputs: enc.map((e) => e.tensor),
    };
    reply.header('xpkg-model-version', ran.version.id);
    const bins = enc.filter((e) => e.binary).map((e) => e.binary!);
    if (bins.length === 0)
      return response.outputs.some(exact)
        ? reply.type('application/json; charset=utf-8').send(json(response))
        : response;
    const text = Buffer.from(json(response));
    return reply
      .header(HEADER_LENGTH, String(text.length))
      .type('application/octet-stream')
      .send(Buffer.concat([text, ...bins]));
  };
  const opts = { schema: { params: modelParams, body: inferSchema } };
  app.post('/v2/models/:name/infer', opts, infer);
  app.post('/v2/models/:name/versions/:version/infer', opts, infer);
}

/** POST /xpkg/models/{name}[/versions/{v}]/run: an image as the body, `xpkg run --json`'s result back. */
export function runRoutes(app: FastifyInstance, ctx: ServeContext): void {
  // A form (curl -F, an HTML form, requests' files=) wraps the image in multipart parts, and curl -d
  // sends it form-encoded with its line breaks dropped: decoded as the image, either was a puzzling
  // "cannot decode image". Said as what it is, with the way to send the image itself.
  for (const form of ['multipart/form-data', 'application/x-www-form-urlencoded'])
    app.addContentTypeParser(form, async (req: FastifyRequest, payload: Readable) => {
      await drain(req, payload);
      throw new ServeError(
        'E_SERVE_MEDIA_TYPE',
        `the run route takes the image itself as the body, not a form (${form}): curl --data-binary @image.png -H 'content-type: image/png'`,
        { contentType: req.headers['content-type'] },
      );
    });
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  receiveTimer(app);
  const run = async (
    req: FastifyRequest<{ Params: ModelParams; Querystring: { input?: string } }>,
    reply: import('fastify').FastifyReply,
  ) => {
    const { name, version } = req.params;
    const manifest = ctx.repository.pick(name, version).manifest;
    if (!Buffer.isBuffer(req.body))
      throw new ServeError(
        'E_SERVE_MEDIA_TYPE',
        'the run route takes the image itself as the body (image/*, application/octet-stream)',
      );
    const input = req.query.input ?? manifest.inputs.find((i) => i.type === 'image')?.name;
    const spec = manifest.inputs.find((i) => i.name === input);
    const others = manifest.inputs.filter((i) => i.name !== input && !i.optional);
    if (spec?.type !== 'image' || others.length > 0)
      throw new ServeError(
        'E_SERVE_INPUT',
        `model ${name} does not take one image${input ? ` as ${input}` : ''}; use the infer route`,
        {
          input: input ?? null,
          inputs: manifest.inputs.map((i) => ({ name: i.name, type: i.type })),
        },
      );
    if (req.body.length === 0)
      throw new ServeError('E_SERVE_INPUT', 'the body is empty, not an image', { input: spec.name });
    const ran = await submit(ctx, req, name, version, { [spec.name]: req.body });
    const r = ran.result;
    reply.header('xpkg-model-version', ran.version.id);
    return {
      result: {
        outputs: outputsToJson(r.outputs),
        variant: r.variant,
        actualProvider: r.actualProvider,
        ...(Object.keys(r.fallbacks).length ? { fallbacks: r.fallbacks } : {}),
        ...(Object.keys(r.nodes).length ? { nodes: r.nodes } : {}),
        timings: r.timings,
        model: { name, version: ran.version.id, sequence: ran.version.sequence },
      },
    };
  };
  const opts = {
    schema: {
      params: modelParams,
      querystring: { type: 'object', properties: { input: { type: 'string', maxLength: 64 } } },
    },
  };
  app.post('/xpkg/models/:name/run', opts, run);
  app.post('/xpkg/models/:name/versions/:version/run', opts, run);
}
