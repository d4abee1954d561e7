/**
 * A model worker: one Runner (Runner.open: the one verification path) in a child process or a
 * worker thread, so that decoding, pre/post-processing and scripts never run on the daemon's event
 * loop, and a crash takes down only this worker and the requests it holds.
 */
import { getPriority, setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import { Runner } from '../runner/runner.js';
import type { Tensor } from '../runner/types.js';
import { ServeError, toXpkgError } from '../spec/errors.js';
import { joinBulk, readBulk } from './bulk.js';
import { BufferPool, POOL_MIN } from './pool.js';
import { setProcessNice } from './priority.js';
import type { FromWorker, ToWorker } from './protocol.js';

const inThread = parentPort !== null;
const send = (m: FromWorker, transfer: ArrayBuffer[] = []): void => {
  if (parentPort) parentPort.postMessage(m, transfer);
  else process.send!(m);
};
const rss = () => (inThread ? null : process.memoryUsage().rss);

let runner: Runner | undefined;

/** A process worker's bulk file from the daemon (bulk.ts), read into reused memory. */
const BULK_FD = 4;
const pool = new BufferPool();

/** Structured clone turns Buffers into Uint8Arrays: encoded images and raw bytes are Buffers again. */
function revive(inputs: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(inputs))
    out[k] = v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : v;
  return out;
}

/** Output buffers that can move to the daemon without a copy: whole, unshared (not Buffer's pool) ArrayBuffers. */
function transferable(v: unknown, out: Set<ArrayBuffer>): Set<ArrayBuffer> {
  if (ArrayBuffer.isView(v)) {
    const b = v.buffer;
    if (b instanceof ArrayBuffer && v.byteOffset === 0 && b.byteLength === v.byteLength && b.byteLength >= 4096)
      out.add(b);
  } else if (Array.isArray(v)) for (const x of v) transferable(x, out);
  else if (v && typeof v === 'object') for (const x of Object.values(v)) transferable(x, out);
  return out;
}

/** The memory under every typed array in `v` (at least `min` bytes of it). */
function memoryOf(v: unknown, out: Set<ArrayBuffer>, min = 0): Set<ArrayBuffer> {
  if (ArrayBuffer.isView(v)) {
    if (v.buffer instanceof ArrayBuffer && v.buffer.byteLength >= min) out.add(v.buffer);
  } else if (Array.isArray(v)) for (const x of v) memoryOf(x, out, min);
  else if (v && typeof v === 'object') for (const x of Object.values(v)) memoryOf(x, out, min);
  return out;
}

/** One run on the package's example asset (an image input), so the first request is not the slow one. */
async function warmRun(r: Runner): Promise<boolean> {
  const example = (r.manifest.assets ?? []).find((a) => a.kind === 'example');
  const image = r.manifest.inputs.filter((i) => !i.optional);
  if (!example || image.length !== 1 || image[0].type !== 'image') return false;
  await r.run({ [image[0].name]: await r.asset(example.id) });
  return true;
}

/** A whole run, as the daemon answers it. */
async function runWhole(inputs: Record<string, unknown>) {
  const r = await runner!.run(revive(inputs));
  return {
    outputs: r.outputs,
    variant: r.variant,
    actualProvider: r.actualProvider,
    fallbacks: r.fallbacks,
    nodes: r.nodes,
    timings: r.timings,
  };
}

/** Only the tail of split model `head` on cut tensors, in the same shape. */
async function runTail(head: string, inputs: Record<string, Tensor>) {
  const t = await runner!.runTail(head, inputs);
  return {
    outputs: t.outputs,
    variant: { [head]: t.variant },
    actualProvider: { [head]: t.provider },
    fallbacks: {},
    nodes: {},
    timings: { total: t.ms },
  };
}

async function handle(m: ToWorker): Promise<void> {
  switch (m.t) {
    case 'open': {
      // before onnxruntime starts its threads: they inherit it. A process worker: every thread there is
      // (V8's helpers included); a thread worker: this thread only (the others are the daemon's)
      if (m.nice && inThread) setPriority(m.nice);
      else if (m.nice && (globalThis as Record<symbol, unknown>)[Symbol.for('xpkg.worker.niced')] === undefined)
        setProcessNice(m.nice);
      const r = await Runner.open(m.path, m.options);
      if (m.expectId && r.id !== m.expectId) {
        await r.close();
        throw new ServeError('E_SERVE_VERSION_UNKNOWN', `${m.path} now holds package ${r.id}, not ${m.expectId}`, {
          path: m.path,
          expected: m.expectId,
          actual: r.id,
        });
      }
      runner = r;
      let variantBytes = 0;
      for (const sel of r.selection.models)
        for (const f of sel.chosen?.variant.files ?? [])
          variantBytes += r.manifest.files.find((x) => x.path === f)?.size ?? 0;
      send({
        t: 'opened',
        id: r.id,
        manifest: r.manifest,
        signed: r.verification.signatures.status === 'verified',
        variantBytes,
        rss: rss(),
        nice: getPriority(),
      });
      return;
    }
    case 'warm': {
      const t0 = performance.now();
      await runner!.warmUp();
      const example = await warmRun(runner!);
      send({ t: 'warmed', rss: rss(), ms: performance.now() - t0, example });
      return;
    }
    case 'run': {
      const bufs = m.bulk ? readBulk(BULK_FD, m.bulk, pool) : [];
      try {
        const inputs = m.bulk ? joinBulk(m.inputs, m.bulk, bufs) : m.inputs;
        const base = m.tail ? await runTail(m.tail, inputs as Record<string, Tensor>) : await runWhole(inputs);
        const out = inThread ? transferable(base.outputs, new Set()) : new Set<ArrayBuffer>();
        // the daemon's body memory goes back to it, unless an output still views it
        const viewed = inThread ? memoryOf(base.outputs, new Set()) : new Set<ArrayBuffer>();
        const recycle = inThread ? [...memoryOf(m.inputs, new Set(), POOL_MIN)].filter((b) => !viewed.has(b)) : [];
        const result = { ...base, ...(recycle.length ? { recycle } : {}) };
        send({ t: 'result', rid: m.rid, result }, [...out, ...recycle]);
      } finally {
        // sent (a process's message is serialised at once): the buffers can take the next run
        for (const b of bufs) pool.give(b.buffer);
      }
      return;
    }
    case 'nice':
      send({ t: 'niced', threads: setProcessNice(m.nice) });
      return;
    case 'close':
      await runner?.close();
      runner = undefined;
      send({ t: 'closed' });
      if (parentPort) parentPort.close();
      else process.disconnect?.();
      return;
  }
}

const onMessage = (m: ToWorker) =>
  void handle(m).catch((e: unknown) =>
    send({ t: 'error', ...(m.t === 'run' ? { rid: m.rid } : {}), error: toXpkgError(e).toJSON() }),
  );
if (parentPort) parentPort.on('message', onMessage);
else {
  process.on('message', onMessage);
  // The daemon gone (killed, crashed): nothing is left to answer to.
  process.on('disconnect', () => process.exit(0));
  // Ctrl-C or a stop signal reaches the whole process group: the daemon stops its workers itself,
  // after the requests in flight have finished.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => {});
}
