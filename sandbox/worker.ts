/**
 * The sandbox worker: one QuickJS runtime over a bounded WebAssembly memory, driven by the host
 * through protocol.ts. It runs until the host terminates it.
 *
 * Limits, innermost first:
 * - QuickJS's memory limit. Under emscripten it is weak: QuickJS cannot ask the allocator for
 *   block sizes there (js_def_malloc_usable_size returns 0), so it counts 8 bytes per allocation
 *   and only refuses single allocations bigger than what is left (a 1 GiB string or buffer).
 * - The WebAssembly memory's maximum: the real bound on everything the guest holds, objects and
 *   typed-array storage alike; malloc fails there and QuickJS throws "out of memory" (or null).
 * - QuickJS's stack limit, with the worker's V8 stack sized so that it fires first.
 * - An interrupt handler at the deadline.
 * - Outside this file, the host's watchdog, which terminates this thread when the interrupt
 *   handler is not reached (one long native call) and starts a fresh one.
 */
import {
  DefaultIntrinsics,
  newQuickJSWASMModuleFromVariant,
  newVariant,
  type QuickJSContext,
  type QuickJSHandle,
  type QuickJSRuntime,
  type QuickJSWASMModule,
  RELEASE_SYNC,
} from 'quickjs-emscripten';
import type { SandboxErrorCode } from '../spec/errors.js';
import { preludeSource } from './prelude.js';
import {
  type FailureInfo,
  type HostMessage,
  type Reset,
  receiveSync,
  send,
  TO_HOST,
  TO_WORKER,
  type WorkerData,
  type WorkerMessage,
} from './protocol.js';
import { startData } from './transport.js';

const { ctl, port, config, wasmModule } = startData() as WorkerData;
const post = (msg: WorkerMessage, transfer?: ArrayBuffer[]) => send(port, ctl, TO_HOST, msg, transfer);
const receive = () => receiveSync<HostMessage>(port, ctl, TO_WORKER);

// Node 20's types lack the WebAssembly value; the global exists at run time.
type WasmMemory = { readonly buffer: ArrayBuffer };
const { Memory } = (
  globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => WasmMemory } }
).WebAssembly;
const memory = new Memory({ initial: 256, maximum: config.wasmMaxPages });
const wasmMaxBytes = config.wasmMaxPages * 65536;

// State of the operation in progress.
let deadline = -Infinity;
let interrupted = false;
let sticky: FailureInfo | null = null;
const stick = (f: FailureInfo) => {
  if (!sticky) sticky = f;
};
const begin = (timeMs: number) => {
  deadline = performance.now() + timeMs;
  interrupted = false;
  sticky = null;
};
const end = () => {
  deadline = -Infinity;
};
const fail = (code: SandboxErrorCode, message: string, detail?: Record<string, unknown>, reset: Reset = 'none') => ({
  failure: { code, message, ...(detail ? { detail } : {}) },
  reset,
});
type Outcome = { value: unknown } | { failure: FailureInfo; reset: Reset };

let runtimesAlive = 0;
let contextsAlive = 0;
let runtimeResets = 0;

/** A synchronous request to the host (kernel, read, …); its failure becomes a guest exception. */
function request(msg: WorkerMessage, transfer?: ArrayBuffer[]): unknown {
  post(msg, transfer);
  const r = receive();
  if (r.t !== 'reply') throw new Error(`sandbox protocol: expected a reply, got ${r.t}`);
  if (!r.ok) {
    if (r.sticky) stick(r.sticky);
    throw new Error(r.message);
  }
  return r.value;
}

const SANDBOX_CODES = new Set([
  'E_SANDBOX_TIMEOUT',
  'E_SANDBOX_MEMORY',
  'E_SANDBOX_STACK',
  'E_SANDBOX_SCRIPT',
  'E_SANDBOX_IMPORT',
  'E_SANDBOX_HANDLE',
  'E_SANDBOX_OUTPUT',
  'E_SANDBOX_KILLED',
]);

interface Loaded {
  name: string;
  source: string;
  timeMs: number;
  hooks: string[] | null;
}

class Engine {
  readonly rt: QuickJSRuntime;
  readonly ctx: QuickJSContext;
  readonly invoke: QuickJSHandle;
  readonly poll: QuickJSHandle;
  readonly functions: QuickJSHandle;
  readonly warm: QuickJSHandle;
  readonly describe: QuickJSHandle;
  readonly modules = new Map<string, QuickJSHandle>();

  constructor(Q: QuickJSWASMModule) {
    this.rt = Q.newRuntime({
      memoryLimitBytes: config.memoryBytes,
      maxStackSizeBytes: config.stackBytes,
      interruptHandler: () => performance.now() > deadline && (interrupted = true),
    });
    runtimesAlive++;
    // Refused at name resolution, before QuickJS looks the name up among loaded modules (an
    // import of another script of the package would otherwise succeed without the loader).
    const refuse = (name: string) => {
      stick({
        code: 'E_SANDBOX_IMPORT',
        message: `scripts may not import modules (tried '${name.slice(0, 200)}')`,
        detail: { specifier: name.slice(0, 200) },
      });
      return { error: new Error('imports are not available in the sandbox') };
    };
    this.rt.setModuleLoader(refuse, (_base, requested) => refuse(requested));
    const ctx = (this.ctx = this.rt.newContext({ intrinsics: { ...DefaultIntrinsics, Date: config.clock } }));
    contextsAlive++;
    const host = ctx.newObject();
    const def = (name: string, fn: (...a: QuickJSHandle[]) => QuickJSHandle | undefined) =>
      ctx.newFunction(name, fn).consume((f) => ctx.setProp(host, name, f));
    const str = (h: QuickJSHandle) => (ctx.typeof(h) === 'string' ? ctx.getString(h) : '');
    // A string that is not JSON for the host (ids, dtypes, shapes, messages): its length is read
    // first, so that a huge one is not copied into this thread and posted to the host.
    const short = (h: QuickJSHandle, max = SHORT_CHARS) => {
      if (ctx.typeof(h) !== 'string') return '';
      if (ctx.getProp(h, 'length').consume((n) => ctx.getNumber(n)) > max) {
        stick({ code: 'E_SANDBOX_OUTPUT', message: `a string of more than ${max} characters passed to the host` });
        throw new Error('string too long for the host');
      }
      return ctx.getString(h);
    };
    const num = (h: QuickJSHandle) => (ctx.typeof(h) === 'number' ? ctx.getNumber(h) : NaN);
    const buffer = (bytes: Uint8Array) =>
      ctx.newArrayBuffer(bytes.buffer.byteLength === bytes.byteLength ? bytes.buffer : bytes.slice().buffer);
    def('kernel', (name, args) => {
      const json = str(args);
      if (json.length > config.outputChars) {
        stick({ code: 'E_SANDBOX_OUTPUT', message: 'kernel arguments too large' });
        throw new Error('kernel arguments too large');
      }
      return ctx.newString(request({ t: 'kernel', name: str(name), args: json }) as string);
    });
    // A queued kernel call goes to the host at once, without waiting: the host runs it while the
    // hook goes on. 'sync' waits for the results' dtypes and shapes (or their failure).
    def('queue', (op) => {
      const json = str(op);
      if (json.length > config.outputChars) {
        stick({ code: 'E_SANDBOX_OUTPUT', message: 'queued kernel call too large' });
        throw new Error('queued kernel call too large');
      }
      post({ t: 'op', op: json });
      return undefined;
    });
    def('sync', () => ctx.newString(request({ t: 'sync' }) as string));
    def('read', (id) => buffer(request({ t: 'read', id: num(id) }) as Uint8Array));
    def('tensor', (dtype, shape, data) => {
      const bytes = ctx.getArrayBuffer(data).consume((b) => b.value.slice());
      let dims: unknown;
      try {
        dims = JSON.parse(short(shape));
      } catch {
        dims = null;
      }
      return ctx.newString(
        request({ t: 'tensor', dtype: short(dtype) as never, shape: dims as number[], bytes }, [
          bytes.buffer,
        ]) as string,
      );
    });
    def('dispose', (id) => void request({ t: 'dispose', id: num(id) }));
    def('asset', (id) => buffer(request({ t: 'asset', id: short(id), text: false }) as Uint8Array));
    def('assetText', (id) => ctx.newString(request({ t: 'asset', id: short(id), text: true }) as string));
    def('fail', (code, message) => {
      const c = short(code);
      stick({
        code: (SANDBOX_CODES.has(c) ? c : 'E_SANDBOX_SCRIPT') as SandboxErrorCode,
        message: short(message, 2000),
      });
      return undefined;
    });
    begin(config.timeMs);
    try {
      const seed = Array.from(crypto.getRandomValues(new Uint32Array(4)));
      const fn = ctx.unwrapResult(ctx.evalCode(preludeSource({ ...config, seed }), 'xpkg:prelude'));
      const api = fn.consume((f) => ctx.unwrapResult(ctx.callFunction(f, ctx.undefined, host)));
      host.dispose();
      this.invoke = ctx.getProp(api, 'invoke');
      this.poll = ctx.getProp(api, 'poll');
      this.warm = ctx.getProp(api, 'warm');
      this.describe = ctx.getProp(api, 'describe');
      this.functions = api.consume((a) => ctx.getProp(a, 'functions'));
    } finally {
      end();
    }
  }

  get heldHandles(): number {
    return 5 + this.modules.size;
  }

  /** Runs queued promise jobs until none remain, the deadline passes or a failure is recorded. */
  drain(): void {
    while (this.rt.hasPendingJob() && !interrupted && !sticky) this.rt.executePendingJobs().dispose();
  }

  dispose(): void {
    for (const h of this.modules.values()) h.dispose();
    this.modules.clear();
    this.invoke.dispose();
    this.poll.dispose();
    this.functions.dispose();
    this.warm.dispose();
    this.describe.dispose();
    this.ctx.dispose();
    contextsAlive--;
    this.rt.dispose();
    runtimesAlive--;
  }
}

/** Longest string a host function takes that is not JSON (an asset id, a dtype, a shape, a message). */
const SHORT_CHARS = 4096;

/** Deadline of the warm-up between calls (it takes microseconds). */
const WARM_MS = 5;

/** Emscripten grows memory in steps: within 15% of the cap means an allocation failed there. */
const memoryFull = () => memory.buffer.byteLength >= wasmMaxBytes * 0.85;

/**
 * Past the deadline. With the memory full, running out is what happened: QuickJS goes on after
 * some failed allocations (a flood of promise jobs spins once none can be queued), and a runtime
 * rebuilt in a full memory fails again (or traps), so the worker is replaced.
 */
function timedOut(): Outcome {
  if (memoryFull())
    return fail(
      'E_SANDBOX_MEMORY',
      'the script ran out of memory',
      { wasmBytes: memory.buffer.byteLength, wasmLimitBytes: wasmMaxBytes },
      'worker',
    );
  return fail('E_SANDBOX_TIMEOUT', 'the script ran past its deadline', undefined, 'runtime');
}

/** Maps a thrown value's description to a failure. */
function classifyThrown(d: {
  error?: boolean;
  name?: string;
  message?: string;
  stack?: string;
  type?: string;
  value?: string;
}): Outcome {
  // Out of memory on a small allocation leaves none for the error object: QuickJS throws null.
  // WebAssembly memory never shrinks, so a full one says the heap ran out during this run.
  const nullWhenFull = !d.error && d.type === 'object' && d.value === undefined && memoryFull();
  if (d.message === 'out of memory' || nullWhenFull) {
    // The peak is reported because the worker (and its grown memory) is discarded next.
    return fail(
      'E_SANDBOX_MEMORY',
      'the script ran out of memory',
      { wasmBytes: memory.buffer.byteLength, wasmLimitBytes: wasmMaxBytes },
      'worker',
    );
  }
  if (d.message === 'stack overflow')
    return fail('E_SANDBOX_STACK', 'the script overflowed its stack', { limitBytes: config.stackBytes });
  const detail = d.error
    ? { thrown: 'error', name: d.name, message: d.message, stack: d.stack }
    : { thrown: d.type, value: d.value };
  const what = d.error ? `${d.name ?? 'Error'}: ${d.message ?? ''}` : `a non-Error value (${d.type})`;
  return fail('E_SANDBOX_SCRIPT', `the script threw ${what}`.slice(0, 1000), detail);
}

/**
 * An exception that reached the worker. From a hook it went past the prelude's catch-all, which
 * happens only when the prelude itself cannot allocate or recurse: out of memory unless it says
 * stack overflow. From a module's top level it is whatever the script threw, described by the
 * prelude as a hook's throw is: its strings are cut there, so a huge message stays in the guest.
 */
function classifyException(engine: Engine, err: QuickJSHandle, fromPrelude: boolean): Outcome {
  if (interrupted) return timedOut();
  if (sticky) return { failure: sticky, reset: 'none' };
  const ctx = engine.ctx;
  if (!fromPrelude) {
    const r = ctx.callFunction(engine.describe, ctx.undefined, err);
    if (r.error) return r.error.consume((e) => classifyException(engine, e, true));
    const tag = r.value.consume((v) => (ctx.typeof(v) === 'string' ? ctx.getString(v) : '{}'));
    // Its getters may have run past the deadline (then the runtime is reset) or into a failure.
    return finish(`E${tag}`);
  }
  let message: string | undefined;
  try {
    if (ctx.typeof(err) === 'object')
      message = ctx.getProp(err, 'message').consume((h) => (ctx.typeof(h) === 'string' ? ctx.getString(h) : undefined));
  } catch {
    /* unreadable: out of memory */
  }
  return classifyThrown({ message: message === 'stack overflow' ? message : 'out of memory' });
}

/** A JavaScript exception out of the WebAssembly module itself: the instance may be corrupt. */
function classifyNative(e: unknown): Outcome {
  const msg = e instanceof Error ? e.message : String(e);
  if (e instanceof RangeError && /call stack/i.test(msg))
    return fail(
      'E_SANDBOX_STACK',
      'the script overflowed the native stack',
      { limitBytes: config.stackBytes },
      'worker',
    );
  if (/memory|OOM/i.test(msg))
    return fail('E_SANDBOX_MEMORY', 'the sandbox ran out of memory', { message: msg }, 'worker');
  return fail('E_SANDBOX_KILLED', `the sandbox engine failed: ${msg}`.slice(0, 1000), { message: msg }, 'worker');
}

/** Final checks shared by loads and calls; `tag` is the prelude's answer ('R'…, 'E'…, 'P'). */
function finish(tag: string): Outcome {
  if (interrupted) return timedOut();
  if (sticky) return { failure: sticky, reset: 'none' };
  if (tag === 'P') return fail('E_SANDBOX_SCRIPT', 'the hook returned a promise that never settles');
  if (tag[0] === 'E') return classifyThrown(JSON.parse(tag.slice(1)));
  return { value: tag.slice(1) };
}

function runCall(engine: Engine, m: Extract<HostMessage, { t: 'call' }>): Outcome {
  const ns = engine.modules.get(m.script ?? '');
  if (!ns) return fail('E_SANDBOX_SCRIPT', `script '${m.script}' is not loaded`);
  const ctx = engine.ctx;
  begin(m.timeMs);
  try {
    const hook = ctx.newString(m.hook);
    const args = ctx.newString(m.args);
    const r = ctx.callFunction(engine.invoke, ctx.undefined, ns, hook, args);
    hook.dispose();
    args.dispose();
    if (r.error) return r.error.consume((e) => classifyException(engine, e, true));
    let tag = r.value.consume((v) => ctx.getString(v));
    while (tag === 'P' && !interrupted && !sticky && engine.rt.hasPendingJob()) {
      engine.rt.executePendingJobs().dispose();
      tag = ctx.unwrapResult(ctx.callFunction(engine.poll, ctx.undefined)).consume((v) => ctx.getString(v));
    }
    // Nothing the script queued may outlive the call.
    engine.drain();
    const out = finish(tag);
    // Queued kernel calls not synced are on the port ahead of the answer: the host runs them first.
    return out;
  } finally {
    end();
  }
}

function runLoad(engine: Engine, m: Loaded): Outcome {
  const ctx = engine.ctx;
  begin(m.timeMs);
  try {
    const r = ctx.evalCode(m.source, m.name, { type: 'module', strict: true });
    if (r.error) return r.error.consume((e) => classifyException(engine, e, false));
    let ns = r.value;
    engine.drain();
    const state = ctx.getPromiseState(ns);
    if (!('notAPromise' in state && state.notAPromise)) {
      // Top-level await: the namespace comes through a promise.
      ns.dispose();
      if (state.type !== 'fulfilled') {
        if (state.type === 'rejected') return state.error.consume((e) => classifyException(engine, e, false));
        return finish('P');
      }
      ns = state.value;
    }
    const listed = ctx.callFunction(engine.functions, ctx.undefined, ns);
    const out = listed.error
      ? listed.error.consume((e) => classifyException(engine, e, true))
      : finish('R' + listed.value.consume((v) => ctx.getString(v)));
    if ('failure' in out) {
      ns.dispose();
      return out;
    }
    const functions = JSON.parse(out.value as string) as string[];
    const missing = (m.hooks ?? []).filter((h) => !functions.includes(h));
    if (missing.length) {
      ns.dispose();
      return fail('E_SANDBOX_SCRIPT', `script '${m.name}' does not export the declared hooks: ${missing.join(', ')}`, {
        missing,
      });
    }
    engine.modules.get(m.name)?.dispose();
    engine.modules.set(m.name, ns);
    return { value: functions };
  } finally {
    end();
  }
}

function stats(engine: Engine) {
  const usage = engine.rt.computeMemoryUsage();
  const read = (k: string) => engine.ctx.getProp(usage, k).consume((h) => engine.ctx.getNumber(h));
  const heapBytes = read('memory_used_size');
  const objects = read('obj_count');
  usage.dispose();
  return {
    runtimes: runtimesAlive,
    contexts: contextsAlive,
    heldHandles: engine.heldHandles,
    pendingJobs: engine.rt.hasPendingJob(),
    modules: engine.modules.size,
    heapBytes,
    objects,
    wasmBytes: memory.buffer.byteLength,
    runtimeResets,
  };
}

/**
 * What the engine prints (Emscripten's print/printErr): its abort message, whose RuntimeError
 * carries the same text into the failure. Kept here, bounded, never written to the process's
 * stderr: a user running a package saw `Aborted(Assertion failed: …)` lines there.
 */
const engineSaid: string[] = [];
const said = (text: unknown) => {
  engineSaid.push(String(text).slice(0, 1024));
  if (engineSaid.length > 8) engineSaid.shift();
};

async function main(): Promise<void> {
  const Q = await newQuickJSWASMModuleFromVariant(
    newVariant(RELEASE_SYNC, {
      wasmMemory: memory as never,
      ...(wasmModule ? { wasmModule: wasmModule as never } : {}),
      // passed to Emscripten as they are (quickjs-emscripten's typings leave these out)
      emscriptenModule: { print: said, printErr: said } as never,
    }),
  );
  let engine = new Engine(Q);
  const loaded: Loaded[] = [];
  post({ t: 'ready' });
  // On the host's nudge, run a little guest code while the call's message is on its way: after
  // a long sleep the interpreter's code and data are out of the caches. Only between calls: during
  // one, the guest is inside a host function and must not be re-entered.
  const warmUp = () => {
    // Short: it runs no script code, and the call it warms up for is on its way.
    begin(WARM_MS);
    try {
      const r = engine.ctx.callFunction(engine.warm, engine.ctx.undefined);
      if (r.error) r.error.dispose();
      else r.value.dispose();
    } finally {
      end();
    }
  };
  // Set when the runtime could not be rebuilt: the WebAssembly instance may be corrupt, so this
  // worker runs nothing more and answers every request as not run (the host then retries it on a
  // fresh worker). Exiting instead would race the host's next request.
  let broken: string | null = null;
  for (;;) {
    const m = receiveSync<HostMessage>(port, ctl, TO_WORKER, broken ? undefined : warmUp);
    if (broken) {
      post({
        t: 'done',
        ok: false,
        failure: {
          code: 'E_SANDBOX_KILLED',
          message: `the sandbox worker cannot go on: ${broken}`.slice(0, 1000),
          detail: { reason: 'respawn' },
        },
        reset: 'worker',
        unrun: true,
      });
      continue;
    }
    let out: Outcome;
    try {
      if (m.t === 'call') out = runCall(engine, m);
      else if (m.t === 'load') {
        const l: Loaded = { name: m.name, source: m.source, timeMs: m.timeMs, hooks: m.hooks };
        out = runLoad(engine, l);
        // Memory never shrinks: a module that leaves it full would have every worker replaced
        // after each call, and each replacement fill it again as it loads the module.
        if ('value' in out && memoryFull())
          out = fail(
            'E_SANDBOX_MEMORY',
            `script '${m.name}' filled its memory as it loaded`,
            { wasmBytes: memory.buffer.byteLength, wasmLimitBytes: wasmMaxBytes },
            'worker',
          );
        if ('value' in out) loaded.push(l);
      } else if (m.t === 'stats') out = { value: stats(engine) };
      else out = fail('E_SANDBOX_KILLED', `sandbox protocol: unexpected ${m.t}`, undefined, 'worker');
    } catch (e) {
      out = classifyNative(e);
    }
    if ('value' in out) {
      // A script that caught running out of memory leaves the memory grown to its cap for good:
      // ask for a fresh worker (after this answer) so the next call starts with room.
      post({ t: 'done', ok: true, value: out.value, recycle: memoryFull() });
      continue;
    }
    // As after a success: a worker whose memory is full is replaced, whatever the failure.
    if (memoryFull()) out.reset = 'worker';
    post({ t: 'done', ok: false, failure: out.failure, reset: out.reset });
    if (out.reset === 'runtime') {
      // A fresh runtime drops whatever the interrupted script left behind (queued jobs, state);
      // the modules that loaded before are evaluated again in it. Done after answering; the host
      // waits for the 'ready' below before it sends the next request, whose deadline then starts.
      try {
        engine.dispose();
        engine = new Engine(Q);
        runtimeResets++;
        for (const l of loaded)
          if ('failure' in runLoad(engine, l)) throw new Error(`script '${l.name}' failed to load again`);
      } catch (e) {
        // QuickJS 2025-09-13 (quickjs-emscripten 0.32) sometimes aborts in JS_FreeRuntime
        // (assert list_empty(&rt->gc_obj_list)) after a job was interrupted or ran out of memory,
        // with no job pending and every handle disposed: an engine leak, not ours to free.
        broken = e instanceof Error ? e.message : String(e);
        if (engineSaid.length && !broken.includes(engineSaid[engineSaid.length - 1]))
          broken += ` (the engine said: ${engineSaid.join(' | ')})`;
      }
      post({ t: 'ready' });
    }
  }
}

main().catch((e) => post({ t: 'fatal', message: e instanceof Error ? e.message : String(e) }));
