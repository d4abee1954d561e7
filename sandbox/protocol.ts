/**
 * Messages between the host thread and the sandbox worker.
 *
 * Why not plain postMessage: a worker's 'message' event costs ~90 µs a round trip here, too much
 * for a 50 µs hook call, and the worker must block while the host runs a kernel for it. Each side
 * posts on its port without listening on it, then bumps a counter in shared memory; the
 * receiver sleeps on that counter (Atomics.wait in the worker, Atomics.waitAsync on the host, so
 * the host's event loop keeps running) and takes the message synchronously (transport.ts).
 */
import type { SandboxErrorCode } from '../spec/errors.js';
import { type Port, postTo, take } from './transport.js';
import type { SandboxDType } from './types.js';

/** Counter slots in the shared Int32Array. */
export const TO_WORKER = 0;
export const TO_HOST = 1;

export interface WorkerConfig {
  memoryBytes: number;
  stackBytes: number;
  /** Deadline for evaluating the prelude in a fresh runtime. */
  timeMs: number;
  wasmMaxPages: number;
  outputChars: number;
  copyBytes: number;
  sourceBytes: number;
  clock: boolean;
  /** Kernel names, with the declared results of queued kernels (null: called synchronously). */
  kernels: [string, 'tensor' | string[] | null][];
}

export interface WorkerData {
  ctl: Int32Array;
  port: Port;
  config: WorkerConfig;
  /** QuickJS's compiled WebAssembly.Module, shared between workers; null: compile in the worker. */
  wasmModule: object | null;
}

/** What to rebuild after a failure: nothing, the QuickJS runtime (in the worker), or the whole worker. */
export type Reset = 'none' | 'runtime' | 'worker';

export interface FailureInfo {
  code: SandboxErrorCode;
  message: string;
  detail?: Record<string, unknown>;
}

export type HostMessage =
  | { t: 'load'; name: string; source: string; timeMs: number; hooks: string[] | null }
  | { t: 'call'; script: string | null; hook: string; args: string; timeMs: number }
  | { t: 'reply'; ok: true; value: unknown }
  | { t: 'reply'; ok: false; message: string; sticky?: FailureInfo }
  | { t: 'stats' };

export type WorkerMessage =
  | { t: 'ready' }
  | { t: 'fatal'; message: string }
  | { t: 'done'; ok: true; value: unknown; recycle?: boolean }
  | { t: 'done'; ok: false; failure: FailureInfo; reset: Reset; unrun?: boolean }
  | { t: 'kernel'; name: string; args: string }
  | { t: 'op'; op: string }
  | { t: 'sync' }
  | { t: 'read'; id: number }
  | { t: 'tensor'; dtype: SandboxDType; shape: number[]; bytes: Uint8Array }
  | { t: 'dispose'; id: number }
  | { t: 'asset'; id: string; text: boolean };

/** Posts a message and wakes the other side. */
export function send(
  port: Port,
  ctl: Int32Array,
  slot: number,
  msg: HostMessage | WorkerMessage,
  transfer?: ArrayBuffer[],
): void {
  postTo(port, msg, transfer);
  Atomics.add(ctl, slot, 1);
  Atomics.notify(ctl, slot);
}

/**
 * Blocks until a message arrives (worker side). The counter is read before looking at the port, so
 * a message posted between the two steps changes the counter and Atomics.wait returns at once.
 */
export function receiveSync<T>(port: Port, ctl: Int32Array, slot: number, onNudge?: () => void): T {
  let nudged = false;
  for (;;) {
    const seen = Atomics.load(ctl, slot);
    const m = take(port);
    if (m) return m.message as T;
    // Woken without a message: the host's nudge (see nudge()); its message follows shortly.
    if (nudged && onNudge) onNudge();
    // Spin briefly before sleeping: the next message of a call usually follows within microseconds,
    // and waking a sleeping thread costs ~50 µs on an idle virtual CPU.
    nudged =
      !spinUntilChanged(ctl, slot, seen, nudged ? NUDGED_SPIN_MS : SPIN_MS) && Atomics.wait(ctl, slot, seen) === 'ok';
  }
}

/** How long a waiting side spins before it sleeps. */
export const SPIN_MS = 0.2;
/** How long the worker spins after a nudge: the host is encoding the call's message. */
export const NUDGED_SPIN_MS = 1;

/**
 * Wakes a sleeping receiver without a message. The host does this as a call starts, so the
 * worker's wake-up (~0.1–0.5 ms for a halted virtual CPU) and its warm-up (it runs a little of
 * the code the call will run, the caches being cold after a long sleep) overlap the host's own
 * preparation of the message. The worker then spins up to NUDGED_SPIN_MS and sleeps again.
 */
export function nudge(ctl: Int32Array, slot: number): void {
  Atomics.notify(ctl, slot);
}

/**
 * Spins (at most `ms`) until the counter leaves `seen`; true if it did. Both sides spin before
 * sleeping; the host's alternative, Atomics.waitAsync, wakes through the event loop (~0.1–0.3 ms).
 * Only worth it with a spare core: spinning on one core delays the thread it waits for.
 */
export function spinUntilChanged(ctl: Int32Array, slot: number, seen: number, ms: number): boolean {
  const until = performance.now() + ms;
  while (Atomics.load(ctl, slot) === seen) if (performance.now() >= until) return false;
  return true;
}

/** Bytes per element of each dtype (the format's one table). */
export { DTYPE_BYTES } from '../spec/dtypes.js';

/** The typed array class each dtype is stored in (host and guest alike). */
export const DTYPE_ARRAY = Object.freeze({
  float32: 'Float32Array',
  float16: 'Uint16Array',
  int64: 'BigInt64Array',
  int32: 'Int32Array',
  uint8: 'Uint8Array',
  int8: 'Int8Array',
  bool: 'Uint8Array',
} as const satisfies Record<SandboxDType, string>);

/** Small typed arrays copied by value (no bigint arrays: JSON cannot carry them). */
export const SMALL_ARRAYS = Object.freeze([
  'Float32Array',
  'Float64Array',
  'Int32Array',
  'Uint32Array',
  'Int16Array',
  'Uint16Array',
  'Int8Array',
  'Uint8Array',
] as const);
export type SmallArrayName = (typeof SMALL_ARRAYS)[number];

/** Queued kernel calls the guest may post before it must sync (bounds what the host holds unread). */
export const MAX_QUEUED = 64;

/**
 * Deepest nesting of a value from the guest (result or kernel arguments): the host's JSON.parse
 * with a reviver recurses on its own stack, which a few thousand levels overflow.
 */
export const MAX_DEPTH = 256;

/** Rank limit of tensors crossing the boundary (the manifest's IoSpec allows 8 dims). */
export const MAX_RANK = 8;
