/**
 * What the infer routes (routes-infer.ts) do to a body before it is a request: parse it, drop a
 * refused one, refuse parameters of extensions the server does not implement.
 */
import { randomUUID } from 'node:crypto';
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
  // integers a double cannot hold (INT64 data beyond 2^53) are marked before parsing, then restored
  // (only INT64 data can hold them: a body without INT64 tensors is parsed as it is)
  const marked = text.includes('"INT64"') && BIG_INTEGER.test(text) ? markBigIntegers(text) : text;
  const body =
    !marked.includes('__proto__') && !marked.includes('constructor')
      ? JSON.parse(marked)
      : JSON.parse(marked, (key, value) => {
          if (
            key === '__proto__' ||
            (key === 'constructor' && value && typeof value === 'object' && 'prototype' in value)
          )
            throw new SyntaxError(`the key ${key} is not taken`);
          return value;
        });
  if (marked !== text) restoreBigIntegers(body);
  return body;
}

/** A prefix no client can send by chance (a NUL, then a random id): a marked integer's digits follow it. */
const NONCE = `int:${randomUUID()}:`;
const MARK = `\u0000${NONCE}`;
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/**
 * An integer literal of 16 digits or more somewhere (a fraction's or an exponent's digits are not):
 * the cheap test that spares float data, whose doubles print 17 digits after the point.
 */
const BIG_INTEGER = /(?<![\d.eE+-])-?\d{16,}(?![\d.eE])/;
/** A JSON string literal (kept as it is) or a number. */
const TOKEN = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;

/** Integer literals beyond 2^53 as marked strings (JSON.parse would round them to a double). */
function markBigIntegers(text: string): string {
  return text.replace(TOKEN, (t) => {
    if (t[0] === '"' || /[.eE]|^-?0\d/.test(t)) return t;
    const v = BigInt(t);
    // the NUL escaped: a control character is not JSON in a string literal
    return v > SAFE || v < -SAFE ? `"\\u0000${NONCE}${t}"` : t;
  });
}

/**
 * Marked integers back: a bigint in an input's `data` (tensors.ts reads it exactly as INT64), a
 * number (as JSON.parse would have given) anywhere else.
 */
function restoreBigIntegers(body: unknown): void {
  const stack: [unknown, boolean][] = [[body, false]];
  while (stack.length) {
    const [node, inData] = stack.pop()!;
    if (!node || typeof node !== 'object') continue;
    const o = node as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      const v = o[k];
      if (typeof v === 'string' && v.startsWith(MARK)) {
        const digits = v.slice(MARK.length);
        o[k] = inData ? BigInt(digits) : Number(digits);
      } else if (v && typeof v === 'object') {
        // inputs[i].data, at any depth of nesting
        const data = inData || (k === 'data' && isInput(o));
        stack.push([v, data]);
      }
    }
  }
}

const isInput = (o: Record<string, unknown>) => typeof o.name === 'string' && typeof o.datatype === 'string';

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
