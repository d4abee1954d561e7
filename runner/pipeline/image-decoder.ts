/**
 * Image decoding for the pipeline (decode-image) and for input files (is it an image?), in this
 * thread or, once `startImageDecoder()` was called, in one worker thread that loads sharp.
 *
 * Why a worker: loading sharp (libvips and its JS) is ~60–90 ms of main-thread CPU in a cold
 * process, and onnxruntime creates sessions and runs models on the main thread too. `xpkg run`
 * starts the worker first thing, so sharp loads and the image decodes on the second core while the
 * main thread verifies the package and creates sessions. The worker runs the same code as this
 * thread (decode-sharp.ts): the pixels and the errors (code, message, detail) are the same. If the
 * worker cannot start or dies, requests are served here instead.
 *
 * The same worker computes SHA-256 of large buffers for platform/hash-thread.ts (the package's
 * model files, the cached optimised models), so `xpkg run` starts one thread, not two.
 *
 * Asked to (`startImageDecoder({ onnxruntime: true })`, as `xpkg run` does), the worker also starts
 * onnxruntime once sharp is loaded: one session of a one-node model, released at once. Loading the
 * library and setting up its process-wide environment and CPU kernels happens once per process, in
 * whichever thread comes first; done here, the main thread's first session took 11–14 ms instead
 * of 36–48 (a CPU-only host, 2 cores).
 *
 * The worker is never terminated (sharp's libraries must stay loaded while a thread may use them);
 * it is unreferenced while idle, so it never keeps a process alive.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { MessageChannel, Worker } from 'node:worker_threads';
import { hashOn } from '../../platform/hash-thread.js';
import { RunnerError, type RunnerErrorCode } from '../../spec/errors.js';
import type { Manifest } from '../../spec/schema.js';
import { quietOnnxruntime } from '../backends/ort-env.js';
import type { RunnerBudget } from '../types.js';
import { decodeHere, probeHere } from './decode-sharp.js';
import type { ImageValue } from './values.js';

type Ask =
  | { op: 'decode'; value: string | Uint8Array; channels: 1 | 3; background: number[]; budget: Required<RunnerBudget> }
  | { op: 'probe'; bytes: Uint8Array };
/** What the worker is asked (decode-worker.ts). */
export type DecodeRequest = Ask & { id: number };

/** What it answers: the pixels, or the error as it would have been thrown here. */
export type DecodeReply =
  | { id: number; image?: ImageValue }
  | { id: number; error: { code?: RunnerErrorCode; message: string; detail?: unknown } };

interface Pending {
  resolve: (image: ImageValue | undefined) => void;
  reject: (e: unknown) => void;
  /** The same request served in this thread (when the worker died before answering). */
  here: () => Promise<ImageValue | undefined>;
}

let worker: Worker | null = null;
let nextId = 0;
const pending = new Map<number, Pending>();

function entry(): { file: string | URL; eval: boolean } {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return { file: new URL('./decode-worker.js', here), eval: false };
  // From the TypeScript sources (tests, tsx): the worker registers tsx's loader first (as sandbox/thread.ts)
  const api = pathToFileURL(
    createRequire(here)
      .resolve('tsx/esm/api')
      .replace(/\.cjs$/, '.mjs'),
  ).href;
  const file = new URL('./decode-worker.ts', here).href;
  return {
    file: `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(file)}); });`,
    eval: true,
  };
}

/** The worker died or failed: what it still owed is served here; later requests too. */
function lost(w: Worker): void {
  if (worker !== w) return;
  worker = null;
  const owed = [...pending.values()];
  pending.clear();
  for (const p of owed) p.here().then(p.resolve, p.reject);
}

/**
 * Starts the decoder's worker (once per process), which loads sharp at once, and with `onnxruntime`
 * then starts onnxruntime-node there. Returns false where it cannot start; decoding then happens in
 * this thread.
 */
export function startImageDecoder(options: { onnxruntime?: boolean } = {}): boolean {
  if (worker) return true;
  try {
    const { file, eval: isEval } = entry();
    // the worker also hashes this thread's large buffers (platform/hash-thread.ts): one thread's start, not two
    const hashes = new MessageChannel();
    if (options.onnxruntime) quietOnnxruntime();
    const w = new Worker(file, {
      eval: isEval,
      workerData: { hashes: hashes.port2, onnxruntime: Boolean(options.onnxruntime) },
      transferList: [hashes.port2],
    });
    hashOn(hashes.port1);
    w.on('message', (m: DecodeReply) => {
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      if (!pending.size) w.unref();
      if ('error' in m) {
        const { code, message, detail } = m.error;
        p.reject(code ? new RunnerError(code, message, detail) : new Error(message));
      } else p.resolve(m.image);
    });
    w.on('error', () => lost(w));
    w.on('exit', () => lost(w));
    // after the listeners: adding a 'message' listener refs the worker again, and an idle worker must
    // not keep the process alive
    w.unref();
    worker = w;
    return true;
  } catch {
    return false;
  }
}

function ask<T extends ImageValue | undefined>(request: Ask, here: () => Promise<T>): Promise<T> {
  const w = worker;
  if (!w) return here();
  const id = nextId++;
  return new Promise<T>((resolve, reject) => {
    pending.set(id, { resolve: resolve as Pending['resolve'], reject, here });
    if (pending.size === 1) w.ref();
    w.postMessage({ ...request, id });
  });
}

/**
 * Bytes to post: a view over part of a larger buffer (a pooled Buffer, a slice) would send the
 * whole buffer, so such a view goes as a copy of its own bytes.
 */
const own = (b: Uint8Array): Uint8Array =>
  b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b : Uint8Array.prototype.slice.call(b);

/** Decodes started before the pipeline asked (decodeInputsAhead), by input bytes and decode options. */
const ahead = new WeakMap<Uint8Array, Map<string, Promise<ImageValue>>>();
const aheadKey = (channels: number, background: number[], budget: Required<RunnerBudget>) =>
  JSON.stringify([channels, background, budget]);

/**
 * Starts, in the worker, the decodes that the pipeline's decode-image steps of `manifest` will ask
 * for these inputs (encoded bytes only), so the image decodes while the models load; each
 * decodeImage call with the same bytes and options then takes its result (once). Nothing when the
 * worker is not running: decoding here early would only move the work.
 */
export function decodeInputsAhead(
  manifest: Pick<Manifest, 'pipeline'>,
  inputs: Record<string, unknown>,
  budget: Required<RunnerBudget>,
): void {
  if (!worker) return;
  for (const step of manifest.pipeline.steps) {
    if (step.op !== 'decode-image') continue;
    const p = step.params as { input?: string; channels?: 1 | 3; background?: number[] };
    const value = p.input !== undefined ? inputs[p.input] : undefined;
    if (!(value instanceof Uint8Array)) continue;
    const channels = p.channels ?? 3;
    const background = p.background ?? [255];
    const key = aheadKey(channels, background, budget);
    let early = ahead.get(value);
    if (!early) ahead.set(value, (early = new Map()));
    if (early.has(key)) continue;
    const decoding = decodeImage(value, channels, background, budget);
    // the failure is the decode-image step's to report, when it takes this
    decoding.catch(() => {});
    early.set(key, decoding);
  }
}

/** Throws unless sharp can read the header of `bytes` (sharp's own message). */
export function probeImage(bytes: Uint8Array): Promise<void> {
  return ask({ op: 'probe', bytes: own(bytes) }, async () => {
    await probeHere(bytes);
    return undefined;
  }).then(() => undefined);
}

/**
 * The decode-image op's work: an image already decoded, raw pixels, a file path or encoded bytes
 * to `channels` 8-bit channels, alpha flattened onto `background`, within `budget`.
 */
export function decodeImage(
  value: unknown,
  channels: 1 | 3,
  background: number[],
  budget: Required<RunnerBudget>,
): Promise<ImageValue> {
  const early = value instanceof Uint8Array ? ahead.get(value) : undefined;
  const key = aheadKey(channels, background, budget);
  const p = early?.get(key);
  if (p) {
    early!.delete(key);
    return p;
  }
  const here = () => decodeHere(value, channels, background, budget);
  // only encoded images go to the worker: raw pixels are mostly a no-copy pass-through here
  if (typeof value === 'string' || value instanceof Uint8Array)
    return ask(
      { op: 'decode', value: typeof value === 'string' ? value : own(value), channels, background, budget },
      here,
    );
  return here();
}
