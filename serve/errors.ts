/**
 * Every error the daemon answers with, as one XpkgError with a stable code, and the HTTP status of
 * each code. Fastify's own failures (body too large, bad JSON, schema, media type) become E_SERVE_*
 * codes here too, so a client always gets a code.
 */
import { type ErrorCode, ServeError, toXpkgError, type XpkgError } from '../spec/errors.js';
import { isDecodeError } from './encoding.js';

const STATUS: Partial<Record<ErrorCode, number>> = {
  E_SERVE_NOT_FOUND: 404,
  E_SERVE_MODEL_UNKNOWN: 404,
  E_SERVE_VERSION_UNKNOWN: 404,
  E_SERVE_UNAVAILABLE: 503,
  E_SERVE_REQUEST: 400,
  E_SERVE_INPUT: 400,
  E_SERVE_BODY_TOO_LARGE: 413,
  E_SERVE_MEDIA_TYPE: 415,
  E_SERVE_QUEUE_FULL: 429,
  E_SERVE_TIMEOUT: 504,
  E_SERVE_WORKER_CRASHED: 503,
  E_SERVE_DRAINED: 503,
  // the daemon tried to send a request's memory twice: its own fault, never the client's
  E_SERVE_DETACHED: 500,
  E_SERVE_MEMORY: 507,
  E_SERVE_ROLLBACK: 409,
  E_SERVE_UNSIGNED: 403,
  E_SERVE_UNAUTHORIZED: 401,
  E_SERVE_METHOD: 405,
  E_SERVE_SLOW_CLIENT: 408,
  E_SERVE_HEADERS_TOO_LARGE: 431,
  E_SERVE_REPO: 500,
  // the caller's input, read by the pipeline
  E_RUN_INPUT: 400,
  E_RUN_INPUT_FORMAT: 400,
  E_RUN_BUDGET: 413,
  // the peer side of split inference (routes-fabric.ts)
  E_FABRIC_AUTH: 401,
  E_FABRIC_PACKAGE_UNKNOWN: 404,
  E_FABRIC_MESSAGE: 400,
  E_FABRIC_SPLIT: 400,
};

export function httpStatusOf(code: ErrorCode): number {
  return STATUS[code] ?? 500;
}

/** Fastify's and Node's HTTP errors as daemon codes; anything else through toXpkgError. */
export function asServeError(e: unknown): XpkgError {
  const err = e as { code?: string; statusCode?: number; message?: string; validation?: unknown[] };
  if (err?.validation)
    return new ServeError('E_SERVE_REQUEST', `the request does not match the protocol: ${err.message}`, {
      problems: err.validation,
    });
  switch (err?.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ServeError('E_SERVE_BODY_TOO_LARGE', 'the request body is larger than the server accepts');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ServeError('E_SERVE_MEDIA_TYPE', err.message ?? 'unsupported media type');
    case 'FST_ERR_MAX_PARAM_LENGTH':
      // longer than any name or version the server can hold
      return new ServeError('E_SERVE_NOT_FOUND', err.message ?? 'no such route');
    case 'FST_ERR_BAD_URL':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
    case 'FST_ERR_CTP_EMPTY_TYPE':
    case 'FST_ERR_CTP_INVALID_TYPE':
      return new ServeError('E_SERVE_REQUEST', err.message ?? 'malformed request body');
  }
  if (isDecodeError(e))
    return new ServeError('E_SERVE_REQUEST', `the compressed request body cannot be decompressed: ${err.message}`, {
      zlib: err.code,
    });
  if (e instanceof SyntaxError || (err?.statusCode === 400 && !(typeof err?.code === 'string' && /^E_/.test(err.code))))
    return new ServeError('E_SERVE_REQUEST', `malformed request: ${err?.message ?? String(e)}`);
  return toXpkgError(e);
}

/** Node's errors for a client's bytes that are not HTTP, or that do not come in time, as codes. */
const CLIENT_ERRORS: Record<string, [ErrorCode, string]> = {
  ERR_HTTP_REQUEST_TIMEOUT: ['E_SERVE_SLOW_CLIENT', 'the request did not arrive within the request timeout'],
  HPE_HEADER_OVERFLOW: ['E_SERVE_HEADERS_TOO_LARGE', 'the request headers are larger than the server accepts'],
};

/**
 * The raw HTTP answer to a connection-level client error (Node's `clientError`: malformed HTTP, a body
 * cut short, a slow client), in the V2 error shape with a code like every other error; fastify's
 * default answers these with a body of its own, without a code. The connection is closed after it.
 * `reqId`: the daemon's own (the client's header was never read), for the log line and the answer.
 */
export function clientErrorResponse(
  err: { code?: string; message?: string },
  reqId: string,
): { response: string; status: number; code: ErrorCode } {
  const [code, summary] = CLIENT_ERRORS[err.code ?? ''] ?? [
    'E_SERVE_REQUEST',
    `malformed HTTP request${err.code ? ` (${err.code})` : ''}`,
  ];
  return rawErrorResponse(code, summary, reqId);
}

/** An error as raw HTTP bytes, for a socket no response object writes to; the connection closes after it. */
export function rawErrorResponse(
  code: ErrorCode,
  summary: string,
  reqId: string,
  headers: Record<string, string> = {},
  detail?: unknown,
): { response: string; status: number; code: ErrorCode } {
  const status = httpStatusOf(code);
  const body = JSON.stringify({ error: summary, code, ...(detail !== undefined ? { detail } : {}) });
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  const response =
    `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${reqId}\r\n${extra}Connection: close\r\n\r\n${body}`;
  return { response, status, code };
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
};
