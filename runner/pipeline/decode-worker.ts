/**
 * The image decoder's worker thread (image-decoder.ts): loads sharp as soon as it starts, then
 * decodes and probes on request with the same code as the main thread (decode-sharp.ts), and hashes
 * the main thread's large buffers (platform/hash-thread.ts).
 */
import { createRequire } from 'node:module';
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { serveHashes } from '../../platform/hash-thread.js';
import { XpkgError } from '../../spec/errors.js';
import { decodeHere, probeHere } from './decode-sharp.js';
import type { DecodeReply, DecodeRequest } from './image-decoder.js';

// SHA-256 for the main thread (platform/hash-thread.ts), served from the start
const { hashes } = (workerData ?? {}) as { hashes?: MessagePort };
if (hashes) serveHashes(hashes);

// the CJS build lazy-sharp.ts requires: loaded now, while the main thread does other work
createRequire(import.meta.url)('sharp');

const port = parentPort!;

port.on('message', async (m: DecodeRequest) => {
  let reply: DecodeReply;
  try {
    if (m.op === 'probe') {
      await probeHere(m.bytes);
      reply = { id: m.id };
    } else reply = { id: m.id, image: await decodeHere(m.value, m.channels, m.background, m.budget) };
  } catch (e) {
    reply = {
      id: m.id,
      error:
        e instanceof XpkgError
          ? { code: e.code as never, message: e.message, ...(e.detail !== undefined ? { detail: e.detail } : {}) }
          : { message: (e as Error)?.message ?? String(e) },
    };
  }
  const data = 'image' in reply ? reply.image?.data : undefined;
  try {
    // the pixels move to the main thread without a copy where their memory can be handed over
    port.postMessage(reply, data ? [data.buffer as ArrayBuffer] : []);
  } catch {
    port.postMessage(reply);
  }
});
