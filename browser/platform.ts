/**
 * The browser twin of platform/index.ts (swapped in by browser/build.ts): the same primitives
 * without Node. SHA-256 of small data is synchronous here (@noble/hashes) because the manifest id
 * and key ids are computed inside synchronous checks; bulk payload hashing goes through WebCrypto
 * in browser/sources.ts instead. Raw inflate is the browser's own DecompressionStream.
 */

import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { buf as crc32Of } from 'crc-32';
import nacl from 'tweetnacl';
import { RunnerError, UsageError } from '../spec/errors.js';

/** ArrayBuffers above 2 GiB are not allocatable everywhere (and the WASM runtime's memory is 4 GiB). */
export const MAX_BYTES: number = 2 ** 31 - 1;

export function sha256Hex(data: Uint8Array): string {
  return bytesToHex(sha256(data));
}

export function crc32(data: Uint8Array, value = 0): number {
  return crc32Of(data, value) >>> 0;
}

import { InflateFailure } from '../platform/inflate-failure.js';

export { InflateFailure };

/**
 * DecompressionStream refuses data after the end of the stream (Compression Streams spec), so a
 * stream that inflates without error consumed all of `raw`; the output is counted as it comes
 * and the stream cancelled past the cap.
 */
export async function inflateRaw(
  raw: Uint8Array,
  maxOutputLength: number,
): Promise<{ out: Uint8Array; consumed: number }> {
  const cap = Math.max(1, maxOutputLength);
  const stream = new Blob([raw as Uint8Array<ArrayBuffer>])
    .stream()
    .pipeThrough(new DecompressionStream('deflate-raw'));
  const reader = stream.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > cap) {
        await reader.cancel().catch(() => {});
        throw new InflateFailure('too-large', `output passes ${cap} bytes`);
      }
      parts.push(value);
    }
  } catch (e) {
    if (e instanceof InflateFailure) throw e;
    throw new InflateFailure('corrupt', e instanceof Error ? e.message : String(e));
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return { out, consumed: raw.byteLength };
}

/**
 * No synchronous native ed25519 here: WebCrypto's is asynchronous (the checks that call it are
 * not), so tweetnacl computes the equation after the strict key and scalar checks in
 * signing/ed25519.ts, which is what makes every code match Node's.
 */
export const ed25519Native: ((message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array) => boolean) | null =
  null;

export const tweetnacl = (): typeof import('tweetnacl') => nacl;

/** Block digests only (spec/FORMAT.md §10.1): WebCrypto has no incremental SHA-256. */
export const INTEGRITY: 'full' | 'blocks' = 'blocks';

export function sha256Incremental(): { update(data: Uint8Array): void; digest(): string } {
  const h = sha256.create();
  return { update: (d) => void h.update(d), digest: () => bytesToHex(h.digest()) };
}

/** WebCrypto's SHA-256 of each block (native, ~1 GiB/s), all blocks at once. */
export async function sha256Blocks(data: Uint8Array, blockSize: number): Promise<string[]> {
  const jobs: Promise<ArrayBuffer>[] = [];
  for (let p = 0; p < data.length; p += blockSize)
    jobs.push(crypto.subtle.digest('SHA-256', data.subarray(p, p + blockSize) as Uint8Array<ArrayBuffer>));
  return (await Promise.all(jobs)).map((d) => bytesToHex(new Uint8Array(d)));
}

/** No hashing thread here: whole files are hashed in place (bulk payloads go through browser/sources.ts). */
export interface Hashed {
  bytes: Buffer;
  hex: string;
}

export async function sha256Moving(data: Buffer): Promise<Hashed> {
  return { bytes: data, hex: sha256Hex(data) };
}

export function readFileBytes(path: string): Promise<Buffer> {
  return Promise.reject(
    new UsageError(
      'E_USAGE',
      `no file system in the browser: pass the bytes of ${JSON.stringify(path)} instead of a path`,
    ),
  );
}

export function readTextFileSync(path: string, _maxBytes?: number): string {
  throw new UsageError('E_USAGE', `no file system in the browser: pass the text of ${JSON.stringify(path)}`);
}

/** Every built-in op's schema is compiled into this bundle (spec/generated/ops.ts); nothing compiles at run time. */
export const ajvModule = (): typeof import('ajv') => {
  throw new RunnerError('E_RUN_PIPELINE', 'an op schema that is not compiled into the browser build');
};
