/**
 * Browser twin of sandbox/thread.ts: the sandbox's QuickJS runs in a nested Web Worker
 * (browser/sandbox-worker.ts running sandbox/worker.ts), talking to the host through shared
 * memory (./transport.ts), so scripts need a cross-origin-isolated page. A browser worker has no
 * heap or stack options: the guest is bounded by its WebAssembly memory, as under Node.
 */

import type { WorkerConfig } from '../../sandbox/protocol.js';
import { SandboxError } from '../../spec/errors.js';
import { assetUrl } from '../assets.js';
import { channel, type Port } from './transport.js';

export interface Thread {
  readonly worker: { ref(): void; unref(): void; terminate(): void };
  readonly ctl: Int32Array;
  readonly port: Port;
  readonly exit: Promise<void>;
  exited: boolean;
  death: SandboxError | null;
}

let live = 0;

export function liveSandboxThreads(): number {
  return live;
}

type WasmModule = object;
let compiled: Promise<WasmModule | null> | null = null;

/** QuickJS compiled once per page and shared by every sandbox worker. */
export function compiledQuickJS(): Promise<WasmModule | null> {
  return (compiled ??= WebAssembly.compileStreaming(fetch(assetUrl('quickjs-release-sync.wasm'))).catch(() => null));
}

/** The channel holds a few of the largest messages the policy allows (sources, copies, outputs). */
const capacityFor = (c: WorkerConfig) =>
  Math.max(8 << 20, 4 * (c.sourceBytes + c.copyBytes + 4 * c.outputChars) + (1 << 20));

export function spawnThread(config: WorkerConfig, _stackSizeMb: number, wasmModule: WasmModule | null): Thread {
  if (!(globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated)
    throw new SandboxError(
      'E_SANDBOX_KILLED',
      'package scripts need a cross-origin-isolated page (COOP/COEP headers, as `xpkg web` serves)',
      { reason: 'not-isolated' },
    );
  const ctl = new Int32Array(new SharedArrayBuffer(8));
  const [port, workerPort] = channel(capacityFor(config));
  const w = new Worker(assetUrl('xpkg-sandbox.js'), { type: 'module', name: 'xpkg-sandbox' });
  live++;
  let done: () => void = () => {};
  const t: Thread = {
    worker: { ref() {}, unref() {}, terminate: () => w.terminate() },
    ctl,
    port,
    exit: new Promise<void>((resolve) => (done = resolve)),
    exited: false,
    death: null,
  };
  const finish = (why: SandboxError) => {
    if (t.exited) return;
    t.death ??= why;
    t.exited = true;
    live--;
    // Wakes a host waiting on the counter, as a Node worker's exit does.
    Atomics.notify(ctl, 1);
    done();
  };
  w.onerror = (e) => {
    e.preventDefault();
    w.terminate();
    finish(
      new SandboxError('E_SANDBOX_KILLED', `the sandbox worker failed: ${e.message}`.slice(0, 1000), {
        reason: 'crashed',
      }),
    );
  };
  (t as { kill?: (why: SandboxError) => void }).kill = (why) => {
    w.terminate();
    finish(why);
  };
  w.postMessage({ ctl, port: workerPort, config, wasmModule });
  return t;
}

export async function killThread(t: Thread, why: SandboxError): Promise<void> {
  t.death ??= why;
  (t as { kill?: (why: SandboxError) => void }).kill?.(why);
  await t.exit;
}
