/**
 * cuDNN's convolution search modes through xpkg's C API binding, on the OCR GPU variants (float32,
 * uint8 NHWC input): one session per mode and model, a sequence of input shapes with revisits, the
 * first and second run at each, and the largest difference of each output from the first mode's.
 * A mode is a search (EXHAUSTIVE, HEURISTIC, DEFAULT), then `+tf32` (float32 as TF32), `+ws0`
 * (cuDNN's workspace not at its maximum), `+same` (the device arena grown by what is asked).
 *
 *   node dist-tools/bench/gpu/conv-modes.js [modes, default HEURISTIC+tf32,HEURISTIC+tf32+ws0,DEFAULT+tf32]
 */
import { PackageReader } from '../../pack/reader.js';
import { type CudaTuning, capiOptions, cudaTuning } from '../../runner/backends/capi-options.js';
import { ortSessionOptions } from '../../runner/backends/onnxruntime.js';
import { createCapiSession, loadCapi } from '../../runner/backends/ort-capi.js';
import { ortBinding } from '../../runner/gpu-install.js';
import { imageFeeds, r2 } from './common.js';

const modes = (process.argv[2] ?? 'HEURISTIC+tf32,HEURISTIC+tf32+ws0,DEFAULT+tf32').split(',');
const c = loadCapi(ortBinding().dir);
if (!('capi' in c)) throw new Error(`binding unavailable: ${c.reason}`);
const reader = await PackageReader.open('fixtures/dist/paddleocr-v4.xpkg');
const models = {
  rec: {
    bytes: await reader.readVerified('models/rec/rec-gpu-fp32.onnx'),
    shapes: [320, 480, 320, 1280, 480].map((w) => [8, 48, w, 3]),
  },
  det: {
    bytes: await reader.readVerified('models/det/det-gpu-fp32.onnx'),
    shapes: [
      [1, 544, 960, 3],
      [1, 960, 544, 3],
      [1, 544, 960, 3],
    ],
  },
};
await reader.close();
const variant = {
  id: 'm',
  runtime: 'onnxruntime',
  precision: 'fp32',
  files: ['m'],
  requires: { executionProviders: ['cuda'] },
};
const out: Record<string, unknown> = {};
const reference: Record<string, Record<string, unknown>> = {};
for (const [name, m] of Object.entries(models)) {
  for (const mode of modes) {
    const [search, ...opts] = mode.split('+');
    const tuning = cudaTuning(
      {
        convAlgoSearch: search as CudaTuning['convAlgoSearch'],
        tf32: opts.includes('tf32'),
        convMaxWorkspace: !opts.includes('ws0'),
        arenaExtend: opts.includes('same') ? 'same-as-requested' : 'power-of-two',
      },
      {},
    );
    const o = capiOptions(ortSessionOptions(variant as never, {}, ['cuda', 'cpu']), tuning);
    o.memPattern = false;
    const t0 = performance.now();
    const s = await createCapiSession(c.capi, m.bytes, o);
    const rows: unknown[] = [{ createMs: r2(performance.now() - t0) }];
    for (const dims of m.shapes) {
      const n = dims.reduce((a, b) => a * b, 1);
      const data = new Uint8Array(n);
      for (let i = 0; i < n; i++) data[i] = (i * 2654435761) >>> 24;
      const x = { type: 'uint8', dims, data };
      let t = performance.now();
      const r = await s.run(imageFeeds(s.inputNames, x) as never);
      const first = performance.now() - t;
      t = performance.now();
      await s.run(imageFeeds(s.inputNames, x) as never);
      const second = performance.now() - t;
      const key = dims.join('x');
      let diff = 0;
      const ref = (reference[name] ??= {})[key] as Record<string, { data: ArrayLike<number> }> | undefined;
      if (!ref) reference[name][key] = r;
      else
        for (const [k, v] of Object.entries(r)) {
          const a = (v as { data: ArrayLike<number> }).data,
            b = ref[k].data;
          for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(Number(a[i]) - Number(b[i])));
        }
      rows.push({ dims: key, firstMs: r2(first), secondMs: r2(second), maxDiffVsFirstMode: diff });
    }
    out[`${name} ${mode}`] = rows;
    await s.release();
    process.stderr.write(`${name} ${mode}: ${JSON.stringify(rows)}\n`);
  }
}
process.stdout.write(`${JSON.stringify(out, null, 1)}\n`);
