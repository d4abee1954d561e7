/**
 * Whether the OCR recogniser's batches gain from running at once on the GPU: a page's lines run in
 * width-sorted batches of 8, and batches that land in one width bucket share one CUDA graph session,
 * whose runs take turns on its owner thread. Per width, side by side in one run (medians of a page's
 * worth of batches, `--batches` of them):
 *   - one graph session, the batches one after another (today's same-bucket case)
 *   - 2 and 4 graph sessions of that shape, the batches spread over them, all at once
 *   - one graph session at batch 8 × batches (one call)
 *   - plain sessions (no graph) of that shape: 1 and 4, all at once
 * and what creating each extra session costs, with each one's ratio to the first. On the GPU machine:
 *
 *   node dist-tools/bench/gpu/rec-concurrency.js [--runs n] [--batches n] [--widths 960,1600] [--model file.onnx]
 */
import { readFileSync } from 'node:fs';
import { PackageReader } from '../../pack/reader.js';
import { capiOptions, cudaTuning } from '../../runner/backends/capi-options.js';
import { ortSessionOptions } from '../../runner/backends/onnxruntime.js';
import { createCapiSession, loadCapi } from '../../runner/backends/ort-capi.js';
import { freeDimsOf, shapeKey } from '../../runner/backends/shape-sessions.js';
import { ortBinding } from '../../runner/gpu-install.js';
import { GPU_PROVIDER, GPU_PROVIDERS, GPU_VARIANT, imageFeeds, p50Of, r2 } from './common.js';

const argv = process.argv.slice(2);
const flag = (name: string, d: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : d);
const RUNS = Number(flag('--runs', '30'));
const BATCHES = Number(flag('--batches', '4'));
const WIDTHS = flag('--widths', '960,1600').split(',').map(Number);
const FILE = flag('--file', 'models/rec/rec-gpu-fp32.onnx');

const loaded = loadCapi(ortBinding().dir);
if (!('capi' in loaded)) throw new Error(`binding unavailable: ${loaded.reason}`);
const c = loaded;
const reader = await PackageReader.open('fixtures/dist/paddleocr-v4.xpkg');
// --model file.onnx: another build of the recogniser (same input and outputs) instead of the package's
// (a half-precision one must be converted before its pre/post nodes are added: converted after, one
// of them ran on the CPU and CUDA refused the graph capture)
const bytes = argv.includes('--model')
  ? new Uint8Array(readFileSync(flag('--model', '')))
  : await reader.readVerified(FILE);
await reader.close();
const options = (shape?: { freeDims: [string, number][]; graph: boolean }) =>
  capiOptions(ortSessionOptions(GPU_VARIANT as never, {}, GPU_PROVIDERS), cudaTuning(), shape);
// the model's input names and declared shapes, from one session made once
const probe = await createCapiSession(c.capi, bytes, options());
const inputNames = probe.inputNames;
const declared = probe.inputMetadata.map((m) => (m.isTensor ? (m.shape as (number | string)[]) : undefined));
await probe.release();
type S = Awaited<ReturnType<typeof createCapiSession>>;

async function make(dims: number[], graph: boolean): Promise<{ s: S; createMs: number; firstMs: number }> {
  const freeDims = freeDimsOf(
    shapeKey(inputNames, () => dims),
    declared,
  );
  let t = performance.now();
  const s = await createCapiSession(c.capi, bytes, options({ freeDims, graph: graph && GPU_PROVIDER !== 'cpu' }));
  const createMs = performance.now() - t;
  t = performance.now();
  await s.run(feed(dims));
  return { s, createMs, firstMs: performance.now() - t };
}

type Feed = Parameters<S['run']>[0];
const feeds = new Map<string, Feed>();
function feed(dims: number[]) {
  const key = dims.join('x');
  let f = feeds.get(key);
  if (!f) {
    const n = dims.reduce((a, b) => a * b, 1);
    const data = new Uint8Array(n);
    for (let i = 0; i < n; i++) data[i] = (i * 2654435761) >>> 24;
    f = imageFeeds(inputNames, { type: 'uint8', dims, data }) as Feed;
    feeds.set(key, f);
  }
  return f;
}

const timed = (body: () => Promise<unknown>) => p50Of(body, RUNS);

const out: Record<string, unknown> = {};
for (const w of WIDTHS) {
  try {
    await oneWidth(w);
  } catch (e) {
    out[`8x48x${w}`] = { error: String((e as Error).message).slice(0, 300) };
    console.log(`rec 8×48×${w}: failed: ${(e as Error).message.slice(0, 300)}`);
  }
}
async function oneWidth(w: number) {
  const dims = [8, 48, w, 3];
  const row: Record<string, unknown> = {};
  const run = (s: S, d = dims) => s.run(feed(d) as never);
  const pool: { s: S; createMs: number; firstMs: number }[] = [];
  for (let i = 0; i < 4; i++) pool.push(await make(dims, true));
  row.graphCreateMs = pool.map((p) => r2(p.createMs));
  row.graphFirstRunMs = pool.map((p) => r2(p.firstMs));
  row.graphStates = pool.map((p) => p.s.graphState());
  const spread = (k: number) => async () => {
    const lanes = pool.slice(0, k).map(async (p, lane) => {
      for (let b = lane; b < BATCHES; b += k) await run(p.s);
    });
    await Promise.all(lanes);
  };
  row.oneBatchMs = await timed(() => run(pool[0].s));
  row.graph1Ms = await timed(spread(1));
  row.graph2Ms = await timed(spread(2));
  row.graph4Ms = await timed(spread(Math.min(4, BATCHES)));
  for (const p of pool) await p.s.release();
  const big = await make([8 * BATCHES, 48, w, 3], true);
  row.bigCreateMs = r2(big.createMs);
  row.bigFirstMs = r2(big.firstMs);
  row.bigGraphState = big.s.graphState();
  row.graphOneCallMs = await timed(() => run(big.s, [8 * BATCHES, 48, w, 3]));
  await big.s.release();
  const plain: S[] = [];
  for (let i = 0; i < 4; i++) plain.push((await make(dims, false)).s);
  row.plain1SerialMs = await timed(async () => {
    for (let b = 0; b < BATCHES; b++) await run(plain[0]);
  });
  row.plain1AtOnceMs = await timed(() => Promise.all(Array.from({ length: BATCHES }, () => run(plain[0]))));
  row.plain4AtOnceMs = await timed(() => Promise.all(Array.from({ length: BATCHES }, (_, b) => run(plain[b % 4]))));
  for (const s of plain) await s.release();
  // side by side: each way of running the page's batches over one graph session taking them in turn
  const serial = row.graph1Ms as number;
  row.ratios = Object.fromEntries(
    (['graph2Ms', 'graph4Ms', 'graphOneCallMs', 'plain1AtOnceMs', 'plain4AtOnceMs'] as const).map((k) => [
      `${k.replace(/Ms$/, '')}/graph1`,
      r2((row[k] as number) / serial),
    ]),
  );
  out[`8x48x${w}`] = row;
  console.log(`rec ${BATCHES} batches of 8×48×${w}: ${JSON.stringify(row)}`);
}
console.log(JSON.stringify({ provider: GPU_PROVIDER, runs: RUNS, batches: BATCHES, results: out }));
