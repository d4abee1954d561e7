/**
 * How the recogniser's in-graph best class (ArgMax and the best probability over 6625 classes per
 * step) should be written for the CUDA provider: CUPTI showed onnxruntime's ArgMax over the last
 * axis and cuDNN's ReduceMax taking ~0.56 and ~0.86 ms a batch, more than the Softmax before them
 * (bench/gpu/cupti-trace.c). Each way below (the first is the reference) is built from the package's folded float32 recogniser
 * with the same uint8 input, run as a CUDA graph session at [8, 48, W, 3], one batch and four
 * sessions at once (a page), its packed output compared with the shipped way's. On the GPU machine:
 *
 *   node dist-tools/bench/gpu/rec-post.js [--runs n] [--widths 1056,1536]
 */
import { createHash } from 'node:crypto';
import { i64Init, intAttr, OnnxGraph } from '../../fixtures/onnx-graph.js';
import { atOpset } from '../../fixtures/onnx-opset.js';
import { bestClassPacked, imageInput, packBest } from '../../fixtures/onnx-prepost.js';
import { type CapiSession, foldedRecogniser, shapeSessions } from './capi-sessions.js';
import { p50Of, r2 } from './common.js';

const argv = process.argv.slice(2);
const flag = (name: string, d: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : d);
const RUNS = Number(flag('--runs', '60'));
const WIDTHS = flag('--widths', '1056,1536').split(',').map(Number);
const folded = await foldedRecogniser();

/** The folded model with the GPU variant's uint8 input, at opset 9 (as shipped) or raised to 11. */
function base(opset11: boolean): OnnxGraph {
  const g = OnnxGraph.decode(folded);
  imageInput(g, { mean: [0.5], std: [0.5] });
  return opset11 ? atOpset(g, 11) : g;
}

/** TopK's [N, T, 1] index and value, packed into `best` [N, T] int32 as bestClassPacked packs. */
function finish(g: OnnxGraph, idx: string, max: string): void {
  const o = g.outputs[0];
  const shape = g.addInit(i64Init(g.unique('nt'), [2], [0, 0]));
  const [i2, m2] = [g.unique('idx2'), g.unique('max2')];
  g.nodes.push(g.node('Reshape', [idx, shape], [i2]), g.node('Reshape', [max, shape], [m2]));
  packBest(g, i2, m2, o);
}

const ways: Record<string, () => Uint8Array> = {
  'opset 9: ArgMax + ReduceMax (shipped before)': () => {
    const g = base(false);
    bestClassPacked(g);
    return g.encode();
  },
  'opset 11: bestClassPacked (as shipped now)': () => {
    const g = base(true);
    bestClassPacked(g);
    return g.encode();
  },
  'ArgMax + GatherElements': () => {
    const g = base(true);
    bestClassPacked(g, '', 0);
    return g.encode();
  },
  'TopK k=1': () => {
    const g = base(true);
    const p = g.outputs[0].name;
    const [idx, max] = [g.unique('idx'), g.unique('max')];
    g.nodes.push(g.node('TopK', [p, g.addInit(i64Init(g.unique('k'), [1], [1]))], [max, idx], [intAttr('axis', 2)]));
    finish(g, idx, max);
    return g.encode();
  },
  ...Object.fromEntries(
    [25, 53, 125].map((G) => [
      `two-stage ArgMax, ${G} groups + GatherElements`,
      () => {
        const g = base(true);
        bestClassPacked(g, '', G);
        return g.encode();
      },
    ]),
  ),
};

function feed(dims: number[]) {
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Uint8Array(n);
  // text-like: mostly background with dark strokes
  for (let i = 0; i < n; i++) data[i] = (i * 2654435761) >>> 24 < 40 ? 30 : 225;
  return { type: 'uint8', dims, data };
}

const timed = (body: () => Promise<unknown>) => p50Of(body, RUNS);

for (const w of WIDTHS) {
  const dims = [8, 48, w, 3];
  const x = feed(dims);
  let reference: Int32Array | undefined;
  let shipped = 0;
  for (const [name, make] of Object.entries(ways)) {
    try {
      const bytes = make();
      const { all: sessions, names } = await shapeSessions(bytes, () => dims, 4);
      const input = names[0];
      const run = (s: CapiSession) => s.run({ [input]: x } as never) as Promise<Record<string, { data: Int32Array }>>;
      const out = (await run(sessions[0])).best.data;
      // the reference's digest, to compare runs under other settings (XPKG_ORT_CUDA_OPTIONS…)
      let same = `reference ${createHash('sha256')
        .update(new Uint8Array(out.buffer, out.byteOffset, out.byteLength))
        .digest('hex')
        .slice(0, 16)}`;
      if (!reference) reference = Int32Array.from(out);
      else {
        let ids = 0,
          q = 0;
        for (let i = 0; i < out.length; i++) {
          if (out[i] >> 8 !== reference[i] >> 8) ids++;
          q = Math.max(q, Math.abs((out[i] & 255) - (reference[i] & 255)));
        }
        same = `${ids} of ${out.length} best classes differ, score Δ ≤ ${q}/255`;
      }
      const one = await timed(() => run(sessions[0]));
      const four = await timed(() => Promise.all(sessions.map(run)));
      if (!shipped) shipped = four;
      console.log(
        `8×48×${w} ${name.padEnd(44)} one batch ${String(one).padStart(6)} ms, four at once ${String(four).padStart(6)} ms (${r2(four / shipped)}× the first); ${same}; graph ${sessions[0].graphState()}`,
      );
      for (const s of sessions) await s.release();
    } catch (e) {
      console.log(`8×48×${w} ${name}: failed: ${String((e as Error).message).slice(0, 300)}`);
    }
  }
}
