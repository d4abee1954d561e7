/**
 * Starting and stopping the worker thread that hosts a sandbox's QuickJS runtime.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { SandboxError } from '../spec/errors.js';
import type { WorkerConfig, WorkerData } from './protocol.js';

export interface Thread {
  readonly worker: Worker;
  readonly ctl: Int32Array;
  readonly port: MessagePort;
  /** Settles when the thread has exited. */
  readonly exit: Promise<void>;
  exited: boolean;
  /** Why the thread died (set by an 'error' event or by the host killing it). */
  death: SandboxError | null;
}

const live = new Set<Worker>();

/** Sandbox worker threads not yet exited, across all sandboxes (for leak checks). */
export function liveSandboxThreads(): number {
  return live.size;
}

function entry(): { file: string | URL; eval: boolean } {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return { file: new URL('./worker.js', here), eval: false };
  // Running from the TypeScript sources (tests, tsx): Node 20 cannot load worker.ts itself, so the
  // worker registers tsx's loader first. The built package (dist/) takes the branch above.
  const api = pathToFileURL(
    createRequire(here)
      .resolve('tsx/esm/api')
      .replace(/\.cjs$/, '.mjs'),
  ).href;
  const file = new URL('./worker.ts', here).href;
  return {
    file: `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(file)}); });`,
    eval: true,
  };
}

type WasmModule = object;
const WA = (globalThis as unknown as { WebAssembly: { compile(bytes: Uint8Array): Promise<WasmModule> } }).WebAssembly;
let compiled: Promise<WasmModule | null> | null = null;

/**
 * QuickJS compiled once per process and shared by every worker: V8 shares the module's machine
 * code, so a rebuilt worker starts with optimised code instead of recompiling and warming up.
 * Null when the file cannot be found; each worker then compiles its own copy.
 */
export function compiledQuickJS(): Promise<WasmModule | null> {
  return (compiled ??= (async () => {
    try {
      // Resolve as quickjs-emscripten itself does, so the binary matches the glue it loads.
      const fromPackage = createRequire(createRequire(import.meta.url).resolve('quickjs-emscripten'));
      return await WA.compile(await readFile(fromPackage.resolve('@jitl/quickjs-wasmfile-release-sync/wasm')));
    } catch {
      return null;
    }
  })());
}

function deathError(e: unknown): SandboxError {
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'ERR_WORKER_OUT_OF_MEMORY')
    return new SandboxError('E_SANDBOX_MEMORY', 'the sandbox worker exceeded its V8 heap limit', {
      reason: 'worker-heap',
    });
  const message = err instanceof Error ? err.message : String(e);
  return new SandboxError('E_SANDBOX_KILLED', `the sandbox worker failed: ${message}`.slice(0, 1000), {
    reason: 'crashed',
    message,
  });
}

export function spawnThread(config: WorkerConfig, stackSizeMb: number, wasmModule: WasmModule | null): Thread {
  const ctl = new Int32Array(new SharedArrayBuffer(8));
  const { port1, port2 } = new MessageChannel();
  const { file, eval: isEval } = entry();
  const workerData: WorkerData = { ctl, port: port2, config, wasmModule };
  const worker = new Worker(file, {
    eval: isEval,
    workerData,
    transferList: [port2],
    // Nothing of the host's environment: a guest that broke out of WebAssembly would find no secrets.
    env: {},
    // The guest lives in WebAssembly memory, outside these; they bound the worker's own JavaScript
    // (copies of results and assets) and give QuickJS's native frames room (see policy.ts).
    resourceLimits: {
      maxOldGenerationSizeMb: 64 + Math.ceil((4 * (config.outputChars + config.copyBytes)) / 2 ** 20),
      maxYoungGenerationSizeMb: 16,
      stackSizeMb,
    },
  });
  live.add(worker);
  const t = { worker, ctl, port: port1, exited: false, death: null } as unknown as Thread & { exit: Promise<void> };
  (t as { exit: Promise<void> }).exit = new Promise<void>((resolve) => {
    worker.on('error', (e) => {
      t.death ??= deathError(e);
    });
    worker.on('exit', () => {
      t.exited = true;
      t.death ??= new SandboxError('E_SANDBOX_KILLED', 'the sandbox worker exited', { reason: 'exited' });
      live.delete(worker);
      port1.close();
      resolve();
    });
  });
  // Idle sandboxes must not keep the host process alive; calls ref the worker while they run.
  worker.unref();
  return t;
}

/** Terminates the thread and waits until it has stopped. */
export async function killThread(t: Thread, why: SandboxError): Promise<void> {
  t.death ??= why;
  await t.worker.terminate();
  await t.exit;
}
