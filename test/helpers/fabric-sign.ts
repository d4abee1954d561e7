/**
 * What a real peer puts on a successful answer (serve/routes-fabric.ts), for hostile test peers that
 * hold the token: the proof for the call's nonce and the answer MAC over the call and both bodies.
 * The request digest is the one the device declared (these peers never change the inputs).
 */
import type { IncomingMessage } from 'node:http';
import {
  ANSWER_HEADER,
  answerMac,
  BODY_HEADER,
  NONCE_HEADER,
  PROOF_HEADER,
  proofOf,
  sha256,
} from '../../fabric/auth.js';
import { HEADER_LENGTH } from '../../fabric/v2-binary.js';

export function answerHeaders(req: IncomingMessage, token: string, headerLength: number, body: Buffer) {
  const nonce = String(req.headers[NONCE_HEADER]);
  return {
    [HEADER_LENGTH]: String(headerLength),
    [PROOF_HEADER]: proofOf(token, nonce),
    [ANSWER_HEADER]: answerMac(token, {
      nonce,
      method: req.method ?? 'POST',
      path: req.url ?? '',
      request: String(req.headers[BODY_HEADER]),
      headerLength: String(headerLength),
      answer: sha256(body),
    }),
  };
}
