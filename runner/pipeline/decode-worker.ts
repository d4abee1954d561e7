/**
 * The image decoder's worker thread (image-decoder.ts): loads sharp as soon as it starts, then
 * decodes and probes on request with the same code as the main thread (decode-sharp.ts), and hashes
 * the main thread's large buffers (platform/hash-thread.ts). Asked to, it then starts onnxruntime
 * (image-decoder.ts says why).
 */
import { createRequire } from 'node:module';
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { serveHashes } from '../../platform/hash-thread.js';
import { XpkgError } from '../../spec/errors.js';
import { ortLogLevel } from '../backends/ort-env.js';
import { probeModel } from '../backends/probe-model.js';
import { decodeHere, probeHere } from './decode-sharp.js';
import type { DecodeReply, DecodeRequest } from './image-decoder.js';

// SHA-256 for the main thread (platform/hash-thread.ts), served from the start
const { hashes, onnxruntime } = (workerData ?? {}) as { hashes?: MessagePort; onnxruntime?: boolean };
if (hashes) serveHashes(hashes);

const require = createRequire(import.meta.url);
// the CJS build lazy-sharp.ts requires: loaded now, while the main thread does other work
require('sharp');

if (onnxruntime) {
  // One session of the smallest model, released at once: onnxruntime's library, its process-wide
  // environment and CPU kernel registries are set up here, once per process, instead of in the main
  // thread's first session. Any failure is the main thread's to meet and report when it loads.
  setImmediate(() => {
    try {
      const ort = require('onnxruntime-node') as typeof import('onnxruntime-node');
      ort.env.logLevel = ortLogLevel();
      ort.InferenceSession.create(probeModel(), { intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3 })
        .then((s) => s.release())
        .catch(() => {});
    } catch {
      // not installed or not loadable: nothing to start
    }
  });
}

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
