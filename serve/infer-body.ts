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
  // (only INT64 data can hold them: a body without INT64 tensors is parsed as it is); so are the
  // NaN and ±Infinity of float data, which JSON has no number for
  const bigs = text.includes('"INT64"') && BIG_INTEGER.test(text);
  const marked = bigs || NON_FINITE.test(text) ? markTokens(text, bigs) : text;
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
  if (marked !== text) restoreTokens(body);
  return body;
}

/** A prefix no client can send by chance (a NUL, then a random id): a marked integer's digits follow it. */
const NONCE = `int:${randomUUID()}:`;
const MARK = `\u0000${NONCE}`;
/** The same for a non-finite float token (its spelling follows). */
const FLOAT_NONCE = `float:${randomUUID()}:`;
const FLOAT_MARK = `\u0000${FLOAT_NONCE}`;
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/**
 * An integer literal of 16 digits or more somewhere (a fraction's or an exponent's digits are not):
 * the cheap test that spares float data, whose doubles print 17 digits after the point.
 */
const BIG_INTEGER = /(?<![\d.eE+-])-?\d{16,}(?![\d.eE])/;
/**
 * NaN and ±Infinity as Triton's server reads them in float data (rapidjson's kParseNanAndInfFlag) and
 * Python's json and tritonclient's rapidjson write them: the cheap test, after a `[`, `,` or `:` (so
 * never inside base64, which holds none of them).
 */
const NON_FINITE = /[[,:]\s*-?(?:NaN|Inf)/;
const NON_FINITE_VALUE: Record<string, number> = {
  NaN: Number.NaN,
  Infinity: Number.POSITIVE_INFINITY,
  Inf: Number.POSITIVE_INFINITY,
  '-Infinity': Number.NEGATIVE_INFINITY,
  '-Inf': Number.NEGATIVE_INFINITY,
};
/** A JSON string literal (kept as it is; unrolled, so a long one is one loop), a non-finite float's spelling, or a number. */
const TOKEN = /"[^"\\]*(?:\\.[^"\\]*)*"|-?Inf(?:inity)?|NaN|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;

/**
 * Non-finite spellings, and (with `bigs`) integer literals beyond 2^53, as marked strings: JSON.parse
 * refuses the first and would round the second to a double.
 */
function markTokens(text: string, bigs: boolean): string {
  return text.replace(TOKEN, (t) => {
    if (t[0] === '"') return t;
    // the NUL escaped: a control character is not JSON in a string literal
    if (Object.hasOwn(NON_FINITE_VALUE, t)) return `"\\u0000${FLOAT_NONCE}${t}"`;
    if (!bigs || /[.eE]|^-?0\d/.test(t)) return t;
    const v = BigInt(t);
    return v > SAFE || v < -SAFE ? `"\\u0000${NONCE}${t}"` : t;
  });
}

/**
 * Marked tokens back: in an input's `data`, a bigint (tensors.ts reads it exactly as INT64) or the
 * non-finite number; elsewhere a big integer is the number JSON.parse would have given, and a
 * non-finite one is not JSON (Triton's parser takes it anywhere; only tensor data has a use for it).
 */
function restoreTokens(body: unknown): void {
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
      } else if (typeof v === 'string' && v.startsWith(FLOAT_MARK)) {
        const word = v.slice(FLOAT_MARK.length);
        if (!inData) throw new SyntaxError(`${word} is not JSON outside tensor data`);
        o[k] = NON_FINITE_VALUE[word];
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
