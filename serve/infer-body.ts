/**
 * What the infer routes (routes-infer.ts) do to a body before it is a request: parse it, drop a
 * refused one, refuse parameters of extensions the server does not implement.
 */
import type { Readable } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { ServeError } from '../spec/errors.js';

type Tensorish = { name: string; parameters?: Record<string, unknown> };

/**
 * JSON.parse, refusing the keys of prototype poisoning as fastify's own JSON parser does (a body
 * with `__proto__`, or `constructor.prototype`, is 400): the infer routes parse their bodies here.
 * The reviver, which slows a large body down, runs only when such a key may be there.
 */
export function parseJson(text: string): unknown {
  if (!text.includes('__proto__') && !text.includes('constructor')) return JSON.parse(text);
  return JSON.parse(text, (key, value) => {
    if (key === '__proto__' || (key === 'constructor' && value && typeof value === 'object' && 'prototype' in value))
      throw new SyntaxError(`the key ${key} is not taken`);
    return value;
  });
}

/**
 * Reads the rest of a refused body and drops it (up to the body limit), so that the keep-alive
 * connection, and the requests pipelined on it, go on after the error (server.ts).
 */
export async function drain(req: FastifyRequest, payload: Readable): Promise<void> {
  const limit = req.routeOptions.bodyLimit ?? Number.POSITIVE_INFINITY;
  let n = 0;
  for await (const chunk of payload) {
    n += (chunk as Buffer).length;
    if (n > limit) return; // too much to read: the connection closes instead
  }
}

/** Parameters of extensions this server does not implement: refused, never silently ignored. */
const SHARED_MEMORY = ['shared_memory_region', 'shared_memory_byte_size', 'shared_memory_offset'];
export function unsupported(body: { inputs: Tensorish[]; outputs?: Tensorish[] }): void {
  for (const t of [...body.inputs, ...(body.outputs ?? [])])
    for (const key of SHARED_MEMORY)
      if (t.parameters && key in t.parameters)
        throw new ServeError('E_SERVE_REQUEST', `${t.name}: the shared-memory extension is not supported (${key})`, {
          tensor: t.name,
          parameter: key,
        });
}
