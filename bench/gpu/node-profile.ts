/**
 * Where a GPU model's own time goes, through xpkg's C API binding with onnxruntime's profiler on:
 * per model of the GPU variants (detector, OCR det/cls/rec) the session.run wall time seen from
 * JS, onnxruntime's model_run time, and the host-side time of its nodes summed by op type and
 * provider (CUDA nodes: launch time, the kernels run asynchronously), so the gap between them is
 * what waiting for the GPU and copying costs. Then the same model as a CUDA graph session (the
 * binding's Graph: fixed dimensions, fixed device buffers, one replay a run): its first run (the
 * capture), its wall p50 and its ratio to the plain session's, its graph state, and how far its
 * outputs are from the plain session's. On the GPU machine:
 *
 *   node dist-tools/bench/gpu/node-profile.js [--runs n] [--out file.json]
 *
 * (XPKG_SUITE_PROVIDER=cpu: the same on the CPU provider, a dry run on a machine without a GPU.)
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OnnxGraph } from '../../fixtures/onnx-graph.js';
import { bestRows, imageInput } from '../../fixtures/onnx-prepost.js';
import { PackageReader } from '../../pack/reader.js';
import { capiOptions, cudaTuning } from '../../runner/backends/capi-options.js';
import { ortSessionOptions } from '../../runner/backends/onnxruntime.js';
import { createCapiSession, loadCapi } from '../../runner/backends/ort-capi.js';
import { freeDimsOf, shapeKey } from '../../runner/backends/shape-sessions.js';
import { ortBinding } from '../../runner/gpu-install.js';
import { GPU_PROVIDER, GPU_PROVIDERS, GPU_VARIANT, imageFeeds, pct, r2 } from './common.js';

const argv = process.argv.slice(2);
const flag = (name: string, d: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : d);
const RUNS = Number(flag('--runs', '100'));
const OUT = flag('--out', '');

const c = loadCapi(ortBinding().dir);
if (!('capi' in c)) throw new Error(`binding unavailable: ${c.reason}`);
/** The detector's fp16 model with the uint8 input and, instead of the in-graph NMS, its 1000 best rows (fixed shapes). */
const bestRowsDetector = (fp16: Uint8Array) => {
  const g = OnnxGraph.decode(fp16);
  imageInput(g);
  bestRows(g, 1000);
  return g.encode();
};
const cases: { name: string; pkg: string; file: string; dims: number[]; make?: (b: Uint8Array) => Uint8Array }[] = [
  { name: 'detector', pkg: 'fixtures/dist/detector.xpkg', file: 'model-cuda-fp16.onnx', dims: [1, 320, 320, 3] },
  {
    name: 'detector best rows',
    pkg: 'fixtures/dist/detector.xpkg',
    file: 'model-fp16.onnx',
    dims: [1, 320, 320, 3],
    make: bestRowsDetector,
  },
  {
    name: 'ocr det',
    pkg: 'fixtures/dist/paddleocr-v4.xpkg',
    file: 'models/det/det-gpu-fp32.onnx',
    dims: [1, 544, 960, 3],
  },
  {
    name: 'ocr cls',
    pkg: 'fixtures/dist/paddleocr-v4.xpkg',
    file: 'models/cls/cls-gpu-fp32.onnx',
    dims: [32, 48, 192, 3],
  },
  {
    name: 'ocr rec 8×320',
    pkg: 'fixtures/dist/paddleocr-v4.xpkg',
    file: 'models/rec/rec-gpu-fp32.onnx',
    dims: [8, 48, 320, 3],
  },
  {
    name: 'ocr rec 8×960',
    pkg: 'fixtures/dist/paddleocr-v4.xpkg',
    file: 'models/rec/rec-gpu-fp32.onnx',
    dims: [8, 48, 960, 3],
  },
];
const variant = GPU_VARIANT;
interface Ev {
  cat: string;
  name: string;
  dur: number;
  args?: { op_name?: string; provider?: string };
}
const out: Record<string, unknown> = {};
for (const k of cases) {
  const reader = await PackageReader.open(k.pkg);
  const read = await reader.readVerified(k.file);
  const bytes = k.make ? k.make(read) : read;
  await reader.close();
  const dir = mkdtempSync(join(tmpdir(), 'xpkg-prof-'));
  const o = {
    ...capiOptions(ortSessionOptions(variant as never, {}, GPU_PROVIDERS), cudaTuning()),
    profilePrefix: join(dir, 'p'),
  };
  const s = await createCapiSession(c.capi, bytes, o);
  const n = k.dims.reduce((a, b) => a * b, 1);
  const data = new Uint8Array(n);
  for (let i = 0; i < n; i++) data[i] = (i * 2654435761) >>> 24;
  const feed = imageFeeds(s.inputNames, { type: 'uint8', dims: k.dims, data }) as never;
  for (let i = 0; i < 10; i++) await s.run(feed);
  const wall: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    await s.run(feed);
    wall.push(performance.now() - t);
  }
  s.endProfiling();
  const plainOut = await s.run(feed);
  // the same model as a CUDA graph session at this one shape
  const shapes = s.inputMetadata.map((m) => (m.isTensor ? (m.shape as (number | string)[]) : undefined));
  const freeDims = freeDimsOf(
    shapeKey(s.inputNames, () => k.dims),
    shapes,
  );
  const graph: Record<string, unknown> = { freeDims };
  if (GPU_PROVIDER !== 'cpu') {
    try {
      const gs = await createCapiSession(c.capi, bytes, {
        ...capiOptions(ortSessionOptions(variant as never, {}, ['cuda', 'cpu']), cudaTuning(), {
          freeDims,
          graph: true,
        }),
      });
      let t = performance.now();
      const first = await gs.run(feed);
      graph.firstRunMs = r2(performance.now() - t);
      graph.stateAfterFirst = gs.graphState();
      const gw: number[] = [];
      let out = first;
      for (let i = 0; i < RUNS; i++) {
        t = performance.now();
        out = await gs.run(feed);
        gw.push(performance.now() - t);
      }
      graph.wallP50 = r2(pct(gw, 50));
      graph.wallP99 = r2(pct(gw, 99));
      // side by side with the plain session's run of the same model and input, timed above
      graph.overPlainP50 = r2(pct(gw, 50) / pct(wall, 50));
      graph.state = gs.graphState();
      let diff = 0;
      for (const [name, v] of Object.entries(out)) {
        const a = (v as { data: ArrayLike<number> }).data;
        const b = (plainOut[name] as { data: ArrayLike<number> }).data;
        if (a.length !== b.length) diff = Number.POSITIVE_INFINITY;
        else for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(Number(a[i]) - Number(b[i])));
      }
      graph.maxDiffVsPlain = diff;
      await gs.release();
    } catch (e) {
      graph.error = String((e as Error).message).slice(0, 500);
    }
  }
  await s.release();
  const file = readFileSync(join(dir, readdirSync(dir)[0]), 'utf8');
  rmSync(dir, { recursive: true, force: true });
  const events = JSON.parse(file) as Ev[];
  // The last RUNS model_run events are the timed runs (the first 10 warm up).
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').slice(-RUNS);
  const nodes = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
  const perRun = nodes.length / (runs.length + 10);
  const timed = nodes.slice(-Math.round(perRun * RUNS));
  const byOp: Record<string, { n: number; us: number }> = {};
  for (const e of timed) {
    const key = `${e.args?.op_name}@${(e.args?.provider ?? '').replace('ExecutionProvider', '')}`;
    const b = (byOp[key] ??= { n: 0, us: 0 });
    b.n++;
    b.us += e.dur;
  }
  const ops = Object.fromEntries(
    Object.entries(byOp)
      .sort((a, b) => b[1].us - a[1].us)
      .map(([key, v]) => [key, { perRun: r2(v.n / RUNS), usPerRun: r2(v.us / RUNS) }]),
  );
  const nodeUs = timed.reduce((a, e) => a + e.dur, 0) / RUNS;
  const row = {
    dims: k.dims,
    wallP50: r2(pct(wall, 50)),
    wallP99: r2(pct(wall, 99)),
    modelRunP50: r2(
      pct(
        runs.map((e) => e.dur / 1000),
        50,
      ),
    ),
    nodesPerRun: r2(perRun),
    nodeHostMsPerRun: r2(nodeUs / 1000),
    graph,
    ops,
  };
  out[k.name] = row;
  console.log(
    `${k.name} ${k.dims.join('×')}: wall p50 ${row.wallP50} ms (p99 ${row.wallP99}), model_run p50 ${row.modelRunP50} ms, ${row.nodesPerRun} nodes, node host time ${row.nodeHostMsPerRun} ms a run`,
  );
  console.log(`  CUDA graph session: ${JSON.stringify(graph)}`);
  console.log(
    `  top ops: ${Object.entries(ops)
      .slice(0, 8)
      .map(([op, v]) => `${op} ${v.perRun}× ${v.usPerRun} µs`)
      .join('; ')}`,
  );
}
if (OUT) writeFileSync(OUT, JSON.stringify(out, null, 1));
