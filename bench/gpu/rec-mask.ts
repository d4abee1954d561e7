/**
 * What the recogniser's padding mask (fixtures/onnx-pad-mask.ts) costs on the GPU: the shipped
 * GPU recogniser (float16 and float32) built with and without the mask from the package's folded
 * model, each as four CUDA graph sessions at [8, 48, W, 3] (a page's batches run four at once),
 * timed alternately in one process: one batch, and four at once. The masked model's best classes
 * with every line at full width (nothing masked) are compared with the unmasked model's. On the
 * GPU machine:
 *
 *   node dist-tools/bench/gpu/rec-mask.js [--runs n] [--widths 480,1056,1536]
 */
import { gpuGraph, recPost } from '../../fixtures/paddleocr-v4/build.js';
import { PackageReader } from '../../pack/reader.js';
import { capiOptions, cudaTuning } from '../../runner/backends/capi-options.js';
import { ortSessionOptions } from '../../runner/backends/onnxruntime.js';
import { createCapiSession, loadCapi } from '../../runner/backends/ort-capi.js';
import { freeDimsOf, shapeKey } from '../../runner/backends/shape-sessions.js';
import { ortBinding } from '../../runner/gpu-install.js';
import { GPU_PROVIDER, GPU_PROVIDERS, GPU_VARIANT, p50Of, r2 } from './common.js';

const argv = process.argv.slice(2);
const flag = (name: string, d: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : d);
const RUNS = Number(flag('--runs', '60'));
const WIDTHS = flag('--widths', '480,1056,1536').split(',').map(Number);

const loaded = loadCapi(ortBinding().dir);
if (!('capi' in loaded)) throw new Error(`binding unavailable: ${loaded.reason}`);
const c = loaded;
const reader = await PackageReader.open('fixtures/dist/paddleocr-v4.xpkg');
const folded = await reader.readVerified('models/rec/ch_PP-OCRv4_rec_infer.onnx');
await reader.close();

const options = (shape?: { freeDims: [string, number][]; graph: boolean }) =>
  capiOptions(ortSessionOptions(GPU_VARIANT as never, {}, GPU_PROVIDERS), cudaTuning(), shape);
type S = Awaited<ReturnType<typeof createCapiSession>>;
type Out = Record<string, { data: Int32Array }>;

function pixels(dims: number[]) {
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Uint8Array(n);
  // text-like: mostly background with dark strokes
  for (let i = 0; i < n; i++) data[i] = (i * 2654435761) >>> 24 < 40 ? 30 : 225;
  return { type: 'uint8', dims, data };
}

/** Four graph sessions of `bytes` at `dims`, and a run of one of them on `feeds`. */
async function sessions(bytes: Uint8Array, dims: number[]) {
  const probe = await createCapiSession(c.capi, bytes, options());
  const declared = probe.inputMetadata.map((m) => (m.isTensor ? (m.shape as (number | string)[]) : undefined));
  const names = probe.inputNames;
  await probe.release();
  const freeDims = freeDimsOf(
    shapeKey(names, (n) => (n === 'x' ? dims : [dims[0]])),
    declared,
  );
  const all: S[] = [];
  for (let i = 0; i < 4; i++)
    all.push(await createCapiSession(c.capi, bytes, options({ freeDims, graph: GPU_PROVIDER !== 'cpu' })));
  return { all, names };
}

for (const half of [true, false]) {
  const build = (mask: boolean) =>
    gpuGraph(folded, { mean: [0.5], std: [0.5] }, recPost({ mask }), { opset11: true, half });
  const models = { unmasked: build(false), masked: build(true) };
  for (const w of WIDTHS) {
    const dims = [8, 48, w, 3];
    const x = pixels(dims);
    // lines from 60 % of the bucket to all of it, as a batch of sorted lines is
    const widths = {
      type: 'int32',
      dims: [8],
      data: Int32Array.from({ length: 8 }, (_, i) => Math.round(w * (0.6 + 0.05 * i))),
    };
    const full = { ...widths, data: new Int32Array(8).fill(w) };
    const u = await sessions(models.unmasked, dims);
    const m = await sessions(models.masked, dims);
    const run = (s: S, feeds: object) => s.run(feeds as never) as Promise<Out>;
    const fu = { x };
    const fm = { x, widths };
    // nothing masked: the same best classes as the unmasked model
    const a = (await run(u.all[0], fu)).best.data;
    const b = (await run(m.all[0], { x, widths: full })).best.data;
    let differ = 0;
    for (let i = 0; i < a.length; i++) if (a[i] >> 8 !== b[i] >> 8) differ++;
    const t: Record<string, number[]> = { u1: [], m1: [], u4: [], m4: [] };
    // alternated in rounds, so drift in the host's speed falls on both
    for (let round = 0; round < 3; round++) {
      t.u1.push(await p50Of(() => run(u.all[0], fu), RUNS));
      t.m1.push(await p50Of(() => run(m.all[0], fm), RUNS));
      t.u4.push(await p50Of(() => Promise.all(u.all.map((s) => run(s, fu))), RUNS));
      t.m4.push(await p50Of(() => Promise.all(m.all.map((s) => run(s, fm))), RUNS));
    }
    const med = (v: number[]) => [...v].sort((p, q) => p - q)[1];
    const [u1, m1, u4, m4] = [med(t.u1), med(t.m1), med(t.u4), med(t.m4)];
    console.log(
      `${half ? 'fp16' : 'fp32'} 8×48×${w}: one batch ${u1} → ${m1} ms (${r2(m1 / u1)}×), four at once ${u4} → ${m4} ms (${r2(m4 / u4)}×); full width: ${differ} of ${a.length} best classes differ; graphs ${u.all[0].graphState()}/${m.all[0].graphState()}`,
    );
    for (const s of [...u.all, ...m.all]) await s.release();
  }
}
