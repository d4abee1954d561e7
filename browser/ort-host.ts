/**
 * onnxruntime-web's own worker (nested in the xpkg worker, or started by the page in `worker: false`
 * mode). Its start and each session's creation are long synchronous WASM calls: here they never
 * hold the package's reads and digests behind them, and the runtime starts while the package
 * opens. It only ever receives model bytes the xpkg side has already verified (browser/ort-web.ts).
 */
import type * as OrtWeb from 'onnxruntime-web';
import { fromOrtTensor } from '../runner/backends/ort-tensor.js';
import type { Tensor } from '../runner/types.js';
import { mark } from './marks.js';
import { type HostReply, type HostRequest, ORT_WASM, PRECOMPILED, type Precompiled } from './ort-protocol.js';

type Ort = typeof OrtWeb;

/**
 * The smallest model (one Identity node, float32 [N] → [N]): creating its session starts the WASM
 * runtime (fetched, compiled as it streams, instantiated with its threads) before any package model.
 */
const IDENTITY_MODEL =
  'CAcSDXhwa2ctZml4dHVyZXM6RAoUCgFYEgFZGgJuMCIISWRlbnRpdHkSCGlkZW50aXR5WhAKAVgSCwoJCAESBQoDEgFOYhAKAVkSCwoJCAESBQoDEgFOQgQKABAN';

const scope = self as unknown as {
  postMessage(m: HostReply, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent<HostRequest>) => void) | null;
};

/** The module compiled by the caller ('module'), when 'start' said one is coming. */
let provide: ((m: WebAssembly.Module | null) => void) | null = null;
let ort: Promise<Ort> | null = null;
let started: Promise<{ threads: number; startMs: number }> | null = null;
const sessions = new Map<number, OrtWeb.InferenceSession>();
let next = 1;

/** Tensors' declared element types and shapes (what the runner checks inputs and empty outputs by). */
const declared = (ms: readonly OrtWeb.InferenceSession.ValueMetadata[]) =>
  ms.flatMap((x) => (x.isTensor ? [{ name: x.name, type: x.type, shape: [...x.shape] }] : []));

async function handle(m: HostRequest): Promise<[unknown, Transferable[]?]> {
  switch (m.op) {
    case 'start': {
      if (!ort) {
        const t0 = performance.now();
        mark('runtime');
        const o = m.webgpu ? import('onnxruntime-web/webgpu') : import('onnxruntime-web/wasm');
        let failed: Promise<never> | null = null;
        if (m.precompiled) {
          // onnxruntime-web loads browser/ort-factory.ts's loader, which instantiates the module given.
          const module = new Promise<WebAssembly.Module | null>((resolve) => (provide = resolve));
          failed = new Promise<never>((_, reject) => {
            const given: Precompiled = { module, failed: reject };
            (self as { [PRECOMPILED]?: Precompiled })[PRECOMPILED] = given;
          });
          failed.catch(() => {}); // raced below
        }
        ort = o.then((x) => {
          const r = x as Ort;
          r.env.wasm.wasmPaths = m.precompiled
            ? { mjs: new URL('xpkg-ort-factory.js', m.wasmBase).href, wasm: new URL(ORT_WASM, m.wasmBase).href }
            : m.wasmBase;
          r.env.wasm.numThreads = m.threads;
          r.env.logLevel = 'error';
          return r;
        });
        started = ort.then(async (r) => {
          const model = Uint8Array.from(atob(IDENTITY_MODEL), (c) => c.charCodeAt(0));
          const created = r.InferenceSession.create(model, { executionProviders: ['wasm'] });
          await (await (failed ? Promise.race([created, failed]) : created)).release();
          mark('runtime-ready');
          return { threads: m.threads, startMs: performance.now() - t0 };
        });
        started.catch(() => {}); // answered to 'ready'
      }
      return [{ version: (await ort).env.versions.web ?? 'unknown' }];
    }
    case 'module':
      provide?.(m.module);
      return [null];
    case 'ready':
      if (!started) throw new Error('onnxruntime-web was not started');
      return [await started];
    case 'create': {
      await started;
      const r = await ort!;
      const session = await r.InferenceSession.create(m.model, m.options);
      const sid = next++;
      sessions.set(sid, session);
      return [
        {
          sid,
          inputNames: [...session.inputNames],
          outputNames: [...session.outputNames],
          inputShapes: declared(session.inputMetadata),
          outputShapes: declared(session.outputMetadata),
        },
      ];
    }
    case 'run': {
      const session = sessions.get(m.sid);
      if (!session) throw new Error('the session was released');
      const r = await ort!;
      const feeds: Record<string, OrtWeb.Tensor> = {};
      for (const [name, t] of Object.entries(m.feeds)) feeds[name] = new r.Tensor(t.type, t.data as never, t.dims);
      const out = await session.run(feeds);
      const outputs: Record<string, Tensor> = {};
      const transfer = new Set<ArrayBuffer>();
      for (const [name, value] of Object.entries(out)) {
        outputs[name] = fromOrtTensor(name, value);
        const d = outputs[name].data;
        if (d.byteOffset === 0 && d.byteLength === d.buffer.byteLength) transfer.add(d.buffer as ArrayBuffer);
      }
      return [outputs, [...transfer]];
    }
    case 'release': {
      const session = sessions.get(m.sid);
      sessions.delete(m.sid);
      await session?.release();
      return [null];
    }
  }
}

scope.onmessage = (e) => {
  const m = e.data;
  handle(m).then(
    ([value, transfer]) => scope.postMessage({ id: m.id, ok: true, value }, transfer ?? []),
    (err: unknown) =>
      scope.postMessage({ id: m.id, ok: false, message: err instanceof Error ? err.message : String(err) }),
  );
};
