/**
 * The peer side of split inference: `POST /v2/fabric/packages/{id}/models/{model}/tail/infer` runs
 * the tail of split model `model` of the package whose id (content address of the signed version)
 * is `id`, on cut tensors in the V2 binary tensor extension, and answers its outputs the same way.
 *
 * Only with a fabric token (`xpkg serve --fabric-token-file`): the caller must sign the call with
 * it (time, nonce, method, path; checked in constant time, fresh and never replayed; else 401
 * E_FABRIC_AUTH; a body other than the digest it signed is E_FABRIC_AUTH too) and the answer carries
 * the proof that this peer holds it and a MAC binding it to the call and its inputs (fabric/auth.ts).
 * The id must be one this daemon has loaded, exactly (no prefix, no
 * other version of the same name; else 404 E_FABRIC_PACKAGE_UNKNOWN): the tail then runs in that
 * version's workers, which opened and verified the package like every other request's. A request
 * still queued after the device's `parameters.deadline_ms` is dropped (E_SERVE_TIMEOUT): by then the
 * device has run the tail itself.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import {
  ANSWER_HEADER,
  answerMac,
  BODY_HEADER,
  CallVerifier,
  DIGEST,
  PROOF_HEADER,
  proofOf,
  sha256,
} from '../fabric/auth.js';
import { decodeV2, encodeV2, HEADER_LENGTH } from '../fabric/v2-binary.js';
import type { Tensor } from '../runner/types.js';
import { FabricError } from '../spec/errors.js';
import type { ServeContext } from './server.js';

type Params = { id: string; model: string };
/** What the auth check learnt of a call: its nonce, and the body digest it signed (if any). */
type Signed = FastifyRequest & { fabricCall?: { nonce: string; body: string | undefined } };

const params = {
  type: 'object',
  required: ['id', 'model'],
  properties: {
    id: { type: 'string', pattern: '^[0-9a-f]{64}$' },
    model: { type: 'string', pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' },
  },
} as const;

export function fabricRoutes(app: FastifyInstance, ctx: ServeContext, token: string): void {
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  // before the body is read or the params are checked: a caller without the token learns nothing
  const calls = new CallVerifier(token);
  app.addHook('onRequest', async (req) => {
    const declared = req.headers[BODY_HEADER];
    const body = typeof declared === 'string' && DIGEST.test(declared) ? declared : undefined;
    const nonce = calls.check(req.headers.authorization, req.method, req.url, Date.now(), body);
    if (!nonce) throw new FabricError('E_FABRIC_AUTH', 'this peer needs a fresh call signed with the fabric token');
    (req as Signed).fabricCall = { nonce, body };
  });
  app.post('/v2/fabric/packages/:id/models/:model/tail/infer', { schema: { params } }, async (req, reply) => {
    const { id, model } = (req as FastifyRequest<{ Params: Params }>).params;
    const entry = [...ctx.repository.models.values()].find((e) =>
      [...e.versions.values()].some((v) => v.id === id && v.state !== 'closed'),
    );
    if (!entry)
      throw new FabricError('E_FABRIC_PACKAGE_UNKNOWN', `this peer does not hold package ${id}`, { package: id });
    const version = entry.versions.get(id)!;
    if (!version.manifest.models.some((m) => m.id === model && m.split))
      throw new FabricError('E_FABRIC_SPLIT', `model ${JSON.stringify(model)} of package ${id} is not split`, {
        package: id,
        model,
      });
    if (!Buffer.isBuffer(req.body))
      throw new FabricError('E_FABRIC_MESSAGE', 'the body must be V2 binary tensors (application/octet-stream)');
    // the signed digest: a body changed on the way (a relay's inputs) is not run for the device's signature
    const call = (req as Signed).fabricCall!;
    const received = sha256(req.body);
    if (call.body && call.body !== received)
      throw new FabricError('E_FABRIC_AUTH', 'the body is not the one the call was signed for');
    const { header, tensors } = decodeV2(req.body, req.headers[HEADER_LENGTH], 'inputs');
    // the device's deadline: a request still queued after it is dropped (the device ran the tail itself)
    const left = (header.parameters as { deadline_ms?: unknown } | undefined)?.deadline_ms;
    const timeoutMs = typeof left === 'number' && left >= 1 ? Math.ceil(left) : undefined;
    (req as FastifyRequest & { xpkg?: object }).xpkg = { model: entry.name, version: id };
    const ran = await entry.scheduler.submit(tensors, { pinned: id, tail: model, ...(timeoutMs ? { timeoutMs } : {}) });
    const r = ran.result;
    const { body, headerLength } = encodeV2(
      {
        model_name: entry.name,
        model_version: id,
        parameters: {
          variant: r.variant[model] ?? '',
          provider: r.actualProvider[model] ?? '',
          queue_ms: ran.queueMs,
          run_ms: r.timings.total ?? 0,
        },
      },
      'outputs',
      r.outputs as Record<string, Tensor>,
    );
    // proofs for the signed call's nonce only (not one a caller names in another header), and a MAC
    // binding this answer to the call and the inputs it ran on
    const mac = answerMac(token, {
      nonce: call.nonce,
      method: req.method,
      path: req.url,
      request: received,
      headerLength: String(headerLength),
      answer: sha256(body),
    });
    return reply
      .header(PROOF_HEADER, proofOf(token, call.nonce))
      .header(ANSWER_HEADER, mac)
      .header(HEADER_LENGTH, String(headerLength))
      .type('application/octet-stream')
      .send(body);
  });
}
