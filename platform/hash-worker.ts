/** The hashing thread (hash-thread.ts): SHA-256 of each buffer it is given, which it hands back. */
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';

const port = parentPort!;

port.on('message', (m: { id: number; buffer: ArrayBuffer; offset: number; length: number }) => {
  const hex = createHash('sha256')
    .update(new Uint8Array(m.buffer, m.offset, m.length))
    .digest('hex');
  port.postMessage({ ...m, hex }, [m.buffer]);
});
port.postMessage('ready');
