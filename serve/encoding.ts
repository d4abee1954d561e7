/**
 * Request bodies sent compressed: `Content-Encoding: gzip` or `deflate` (Triton's clients, with
 * `request_compression_algorithm`) are decompressed as they arrive, before any body parser reads
 * them; the body limit then holds for the decompressed bytes, so a small bomb is a 413 like any body
 * over the limit, and the binary extension's header length counts decompressed bytes, as Triton's
 * does. Responses are sent as they are: compressing a tensor costs more than loopback or a LAN saves.
 */
import type { Readable, Transform } from 'node:stream';
import { createGunzip, createInflate } from 'node:zlib';
import type { FastifyRequest } from 'fastify';
import { ServeError } from '../spec/errors.js';

const DECODERS: Record<string, () => Transform> = {
  gzip: createGunzip,
  'x-gzip': createGunzip,
  deflate: createInflate,
};

/** The request's body encoding (lower case), undefined for none or identity; 415 for one not taken. */
export function bodyEncoding(req: FastifyRequest): string | undefined {
  const raw = req.headers['content-encoding'];
  const enc = (Array.isArray(raw) ? raw.join(',') : (raw ?? '')).trim().toLowerCase();
  if (enc === '' || enc === 'identity') return undefined;
  if (!DECODERS[enc])
    throw new ServeError('E_SERVE_MEDIA_TYPE', `Content-Encoding ${enc} is not taken (gzip, deflate or none)`, {
      contentEncoding: enc,
    });
  return enc;
}

/**
 * The body as the parsers should read it (a fastify preParsing hook): decompressed when it is
 * encoded. `receivedEncodedLength` lets fastify check the compressed bytes against Content-Length.
 */
export function decodedBody(req: FastifyRequest, payload: Readable): Readable {
  const enc = bodyEncoding(req);
  if (!enc) return payload;
  const out: Transform & { receivedEncodedLength?: number } = DECODERS[enc]();
  out.receivedEncodedLength = 0;
  payload.on('data', (c: Buffer) => {
    out.receivedEncodedLength! += c.length;
  });
  payload.on('error', (e) => out.destroy(e));
  payload.pipe(out);
  return out;
}

/** zlib's errors for a corrupt or cut stream: the client's body, not the daemon. */
export function isDecodeError(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' && /^Z_/.test(code);
}
