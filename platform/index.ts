/**
 * The few primitives the format layers (spec, pack, signing) take from their environment: hashing
 * and CRC of small in-memory data, raw inflate, the largest buffer, and the native ed25519 and
 * tweetnacl loaders. This file is the Node implementation; the browser bundle swaps in
 * browser/platform.ts (browser/build.ts lists every swap, browser/twins.ts type-checks that each
 * twin exports what the module it replaces does). A leaf: it imports no other layer.
 */
import { constants as bufferConstants } from 'node:buffer';
import { createHash, createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { closeSync, constants as fsConstants, fstatSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { inflateRawSync, crc32 as zlibCrc32 } from 'node:zlib';

/** The most bytes one buffer may hold here (4 GiB on 64-bit Node 20); larger files are streamed. */
export const MAX_BYTES: number = bufferConstants.MAX_LENGTH;

export { type Hashed, sha256Moving } from './hash-thread.js';

/** Lower-case hex SHA-256 of data in memory (manifests, keys, small payloads). */
export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The ZIP CRC-32 of `data`, continuing from `value` (unsigned). */
export function crc32(data: Uint8Array, value = 0): number {
  return zlibCrc32(data, value) >>> 0;
}

import { InflateFailure } from './inflate-failure.js';

export { InflateFailure };

/**
 * Inflates raw deflate data into at most `maxOutputLength` bytes; `consumed` is how many input
 * bytes the stream used (the reader refuses data after the stream's end).
 */
export async function inflateRaw(
  raw: Uint8Array,
  maxOutputLength: number,
): Promise<{ out: Uint8Array; consumed: number }> {
  try {
    const r = inflateRawSync(raw, { maxOutputLength: Math.max(1, maxOutputLength), info: true }) as unknown as {
      buffer: Buffer;
      engine: { bytesWritten: number };
    };
    return { out: r.buffer, consumed: r.engine.bytesWritten };
  } catch (err) {
    const tooBig = (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError;
    throw new InflateFailure(tooBig ? 'too-large' : 'corrupt', (err as Error).message);
  }
}

const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const nodeKeys = new Map<string, KeyObject>();

/**
 * OpenSSL's ed25519 equation (~0.1 ms against tweetnacl's ~6 ms on a slow core); null where the
 * environment has none. Key policy is signing/ed25519.ts's, applied before this is called.
 */
export const ed25519Native: ((message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array) => boolean) | null = (
  message,
  signature,
  publicKey,
) => {
  const id = Buffer.from(publicKey).toString('hex');
  let key = nodeKeys.get(id);
  try {
    if (!key) {
      key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]), format: 'der', type: 'spki' });
      if (nodeKeys.size > 1024) nodeKeys.clear();
      nodeKeys.set(id, key);
    }
    return cryptoVerify(null, message, key, signature);
  } catch {
    return false;
  }
};

/** ajv, for op schemas not compiled at build time (an op defined outside this build). */
export const ajvModule = (): typeof import('ajv') => createRequire(import.meta.url)('ajv') as typeof import('ajv');

let naclModule: typeof import('tweetnacl') | undefined;
/** tweetnacl, required on first use (not by every `xpkg run`: ~15 ms). */
export const tweetnacl = (): typeof import('tweetnacl') =>
  (naclModule ??= createRequire(import.meta.url)('tweetnacl') as typeof import('tweetnacl'));

/**
 * How this environment verifies payloads (spec/FORMAT.md §10): 'full' also computes each file's
 * whole SHA-256 and CRC-32 (one sequential pass beside the block digests, cheap with OpenSSL on
 * worker threads); 'blocks' relies on the signed block digests and sizes alone (§10.1).
 */
export const INTEGRITY: 'full' | 'blocks' = 'full';

/** An incremental SHA-256 (streamed payloads in 'full' mode). */
export function sha256Incremental(): { update(data: Uint8Array): void; digest(): string } {
  const h = createHash('sha256');
  return { update: (d) => void h.update(d), digest: () => h.digest('hex') };
}

/** The SHA-256 of each consecutive `blockSize` bytes of `data` (none for empty data). */
export async function sha256Blocks(data: Uint8Array, blockSize: number): Promise<string[]> {
  const out: string[] = [];
  for (let p = 0; p < data.length; p += blockSize) out.push(sha256Hex(data.subarray(p, p + blockSize)));
  return out;
}

/**
 * A small text file, synchronously (a host profile named by path): at most `maxBytes` (else
 * ERR_FS_FILE_TOO_LARGE, read no further), never a device (ERR_INPUT_DEVICE: /dev/zero never ends).
 * Opened non-blocking, as readFileBytes does: a named pipe that no process writes reads as empty.
 */
export function readTextFileSync(path: string, maxBytes = 1 << 20): string {
  const fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY);
  try {
    const st = fstatSync(fd);
    if (st.isCharacterDevice() || st.isBlockDevice())
      throw readError('ERR_INPUT_DEVICE', `${path} is a device, not a file`);
    if (st.isFile() && st.size > maxBytes)
      throw readError('ERR_FS_FILE_TOO_LARGE', `${path} is more than ${maxBytes} bytes`);
    const buf = Buffer.alloc(maxBytes + 1);
    let total = 0;
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, total, buf.length - total, null);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EAGAIN') break; // a pipe with nothing (more) written
        throw e;
      }
      if (n === 0) break;
      total += n;
      if (total > maxBytes) throw readError('ERR_FS_FILE_TOO_LARGE', `${path} is more than ${maxBytes} bytes`);
    }
    return buf.toString('utf8', 0, total);
  } finally {
    closeSync(fd);
  }
}

/** The most bytes readFileBytes reads: what Node reads into one buffer (2 GiB). */
const READ_MAX = 2 ** 31 - 1;

/** How long a named pipe with no writer is given for one to appear (see readFileBytes). */
const PIPE_WRITER_GRACE_MS = 300;

function readError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/**
 * A whole file's bytes (inputs named by path; the browser has no paths). A pipe is read to its end,
 * at most 2 GiB like a file (else ERR_FS_FILE_TOO_LARGE); a device, which may never end
 * (/dev/zero), is refused with ERR_INPUT_DEVICE.
 *
 * The file is opened non-blocking: opening a named pipe that no process writes would otherwise
 * wait for a writer forever (and a device's open may block too). Such a pipe reads as empty at
 * once, and a pipe that gives no bytes is refused with ERR_INPUT_EMPTY_PIPE. A pipe whose writer
 * is still at work is waited for (polled), as a blocking read would.
 */
export async function readFileBytes(path: string): Promise<Buffer> {
  const fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY);
  try {
    const st = await fh.stat();
    if (st.isCharacterDevice() || st.isBlockDevice())
      throw readError('ERR_INPUT_DEVICE', `${path} is a device, not a file`);
    if (st.isFile()) return await fh.readFile();
    const chunks: Buffer[] = [];
    let total = 0;
    let wait = 1;
    // A writer blocked in its own open (`cat x > pipe &`) is woken by ours, but may not have its end
    // open yet at our first read, which then sees no writer: that is waited out for a moment.
    let writerSeen = false;
    const lonely = Date.now() + PIPE_WRITER_GRACE_MS;
    for (;;) {
      const read = await fh.read(Buffer.alloc(1 << 20), 0, 1 << 20, null).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'EAGAIN' || e.code === 'EWOULDBLOCK') return null;
        throw e;
      });
      const noWriterYet = read?.bytesRead === 0 && !writerSeen && st.isFIFO() && Date.now() < lonely;
      if (!read || noWriterYet) {
        // nothing written yet: wait a little longer each time, up to 50 ms
        writerSeen ||= !read;
        await new Promise((r) => setTimeout(r, wait));
        wait = Math.min(50, wait * 2);
        continue;
      }
      wait = 1;
      writerSeen = true;
      const { bytesRead, buffer } = read;
      if (bytesRead === 0) {
        if (total === 0 && st.isFIFO())
          throw readError('ERR_INPUT_EMPTY_PIPE', `${path} is a pipe that gave no bytes (no process writes to it)`);
        return Buffer.concat(chunks, total);
      }
      total += bytesRead;
      if (total > READ_MAX) throw readError('ERR_FS_FILE_TOO_LARGE', `${path} is more than 2 GiB`);
      chunks.push(buffer.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
}
