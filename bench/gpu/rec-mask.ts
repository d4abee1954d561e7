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
import { type CapiSession, foldedRecogniser, shapeSessions } from './capi-sessions.js';
import { p50Of, r2 } from './common.js';

const argv = process.argv.slice(2);
const flag = (name: string, d: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : d);
const RUNS = Number(flag('--runs', '60'));
const WIDTHS = flag('--widths', '480,1056,1536').split(',').map(Number);
const folded = await foldedRecogniser();
type Out = Record<string, { data: Int32Array }>;

function pixels(dims: number[]) {
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Uint8Array(n);
  // text-like: mostly background with dark strokes
  for (let i = 0; i < n; i++) data[i] = (i * 2654435761) >>> 24 < 40 ? 30 : 225;
  return { type: 'uint8', dims, data };
}

/** Four sessions of `bytes` at `dims` (the widths input at the batch size). */
const sessions = (bytes: Uint8Array, dims: number[]) => shapeSessions(bytes, (n) => (n === 'x' ? dims : [dims[0]]), 4);

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
    const run = (s: CapiSession, feeds: object) => s.run(feeds as never) as Promise<Out>;
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
