/**
 * Public shapes of the sandbox: what the host passes in (policy, kernels, assets, arguments) and
 * what it gets back. Interfaces first; sandbox.ts implements them and worker.ts runs the guest.
 *
 * `SandboxTensor` mirrors runner/types.ts `Tensor` structurally (sandbox is a leaf module and must
 * not import the runner), so a runner tensor can be passed in and a returned one used directly.
 */
import type { IoSpec, Script } from '../spec/schema.js';

export type SandboxDType = 'float32' | 'float16' | 'int64' | 'int32' | 'uint8' | 'int8' | 'bool';
export type SandboxTypedData = Float32Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array | Int8Array;

/** Row-major data plus dims; `float16` is stored as raw `Uint16Array` bits, `bool` as `Uint8Array`. */
export interface SandboxTensor {
  type: SandboxDType;
  dims: readonly number[];
  data: SandboxTypedData;
}

/**
 * What may cross the boundary: JSON values, tensors (by handle: the data stays on the host) and
 * small typed arrays (copied). Objects are plain; `$xpkg` is a reserved key.
 */
export type SandboxValue =
  | null
  | boolean
  | number
  | string
  | SandboxTensor
  | Float32Array
  | Float64Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Uint16Array
  | Int8Array
  | Uint8Array
  | SandboxValue[]
  | { [key: string]: SandboxValue };

/**
 * What a queued kernel returns: one tensor, or an object of named tensors (e.g. argmax's
 * `['indices', 'values']`).
 */
export type KernelResults = 'tensor' | readonly string[];

/**
 * A host kernel. Arguments arrive decoded (tensor handles resolved to the host's tensors, which a
 * kernel must treat as read-only); the result may hold new tensors, which become handles owned by
 * the call. May be async: the guest waits synchronously, the host event loop does not.
 *
 * A kernel that declares `returns` is queued: the guest gets its result handles at once and goes
 * on; the call is posted to the host, which runs queued calls in order as they arrive, while the
 * hook is still running. The guest waits only when it needs a result's dtype or shape, makes
 * another kind of host call, or has 64 calls outstanding (a sync). A chain of such kernels costs
 * no thread hand-off of its own; a failure surfaces at the next sync (catchable) or, if none
 * comes, fails the call at the end of the hook (E_SANDBOX_SCRIPT).
 */
export type Kernel = ((
  this: KernelBudget | unknown,
  ...args: SandboxValue[]
) => SandboxValue | undefined | Promise<SandboxValue | undefined>) & {
  returns?: KernelResults;
};

/**
 * What the call a kernel serves leaves it: the kernel's `this` when the sandbox calls it. Kernels
 * run on the host, where nothing can interrupt them, with sizes the script chose: a kernel checks
 * its results' size before it allocates them and stops once past the deadline (the basic kernels
 * throw E_SANDBOX_MEMORY / E_SANDBOX_TIMEOUT, which fail the call).
 */
export interface KernelBudget {
  /** Bytes its results may take: what is left of the call's host-tensor budget (`hostTensorMiB`). */
  readonly maxBytes: number;
  /** The call's deadline, a `performance.now()` time. */
  readonly deadline: number;
}
export type KernelTable = Readonly<Record<string, Kernel>>;

/** The limits a package declares for a script (manifest `pipeline.scripts[].policy`). */
export type SandboxPolicy = NonNullable<Script['policy']>;

/** The host's ceilings and fixed budgets; a package's declared policy is capped by these. */
export interface SandboxCaps {
  /**
   * Guest memory: the WebAssembly memory is capped at this + 16 MiB (stack, static data), which
   * bounds everything the guest allocates; QuickJS's own limit is set to this too.
   */
  memoryMiB: number;
  /** Per-call (and per-load) deadline. */
  timeMs: number;
  /** QuickJS stack; at most 4096 (the WebAssembly shadow stack is 5 MiB). */
  stackKiB: number;
  /** How long after the deadline the watchdog waits before it terminates the worker. */
  graceMs: number;
  /** Largest encoded result or kernel-argument message, in UTF-16 units of its JSON. */
  outputBytes: number;
  /** Largest single copy into or out of the guest (tensor read, small tensor, asset). */
  copyBytes: number;
  /** Bytes of tensors the guest may hold alive on the host during one call. */
  hostTensorMiB: number;
  /** Largest module source. */
  sourceBytes: number;
}

/** A policy after defaults and caps are applied: every field fixed. */
export type EffectivePolicy = SandboxCaps;

export interface SandboxGrants {
  /** Enables `Date` in the guest. Off by default: no clock unless granted. */
  clock?: boolean;
}

export interface SandboxOptions {
  /** Declared by the package; capped by `caps`. */
  policy?: SandboxPolicy;
  /** The runner's own ceilings (defaults: DEFAULT_CAPS). */
  caps?: Partial<SandboxCaps>;
  kernels?: KernelTable;
  /** Package assets by id, readable by the guest (`ctx.asset(id)`, `ctx.assetText(id)`). */
  assets?: ReadonlyMap<string, Uint8Array> | Readonly<Record<string, Uint8Array>>;
  grants?: SandboxGrants;
}

export interface LoadOptions {
  /** Hooks the manifest declares for this script: each must be an exported function. */
  hooks?: readonly string[];
  /** Deadline for evaluating the module; the policy's `timeMs` caps it. */
  deadlineMs?: number;
}

export interface LoadedScript {
  name: string;
  /** Exported function names, sorted. */
  functions: string[];
}

export interface CallOptions {
  /** Module to take the hook from; may be left out when exactly one loaded module exports it. */
  script?: string;
  /** Deadline for this call; the policy's `timeMs` caps it. */
  deadlineMs?: number;
  /** Declared output types: the result must be an object with these fields (E_SANDBOX_OUTPUT otherwise). */
  outputs?: readonly IoSpec[];
  /** Aborting kills the worker (E_SANDBOX_KILLED) and rebuilds it. */
  signal?: AbortSignal;
}

export interface SandboxStats {
  /** Tensor handles alive on the host (0 between calls). */
  liveTensors: number;
  /** QuickJS runtimes / contexts alive in the current worker (1 each when healthy). */
  runtimes: number;
  contexts: number;
  /** QuickJS handles the worker keeps across calls (prelude functions, module namespaces). */
  heldHandles: number;
  pendingJobs: boolean;
  modules: number;
  /** QuickJS heap bytes in use, live QuickJS objects, and WebAssembly memory size of the current worker. */
  heapBytes: number;
  objects: number;
  wasmBytes: number;
  /** Workers started (1 + rebuilds) and in-worker runtime resets since creation. */
  workersStarted: number;
  runtimeResets: number;
  /** Requests sent again to a fresh worker because theirs had died or broken before taking them. */
  respawns: number;
}
