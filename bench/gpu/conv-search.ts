/**
 * Does any session option reach the CUDA provider's cuDNN algorithm search from onnxruntime-node?
 * (Its binding copies only `deviceId` into the provider options it creates: js/node/src/
 * session_options_helper.cc, 1.29.) Creates the OCR recogniser (dynamic width) on cuda with each
 * candidate option and times the first and second run at three new widths: an option that reached
 * cuDNN as HEURISTIC would cut the first runs from hundreds of ms to a few.
 *
 * Last, the same through xpkg's C API binding (runner/backends/ort-capi.ts), which sets
 * cudnn_conv_algo_search=HEURISTIC: one session, the same widths, then two more never seen.
 *
 *   node dist-tools/bench/gpu/conv-search.js
 */
import * as ort from 'onnxruntime-node';
import { PackageReader } from '../../pack/reader.js';
import { capiOptions } from '../../runner/backends/capi-options.js';
import { ortSessionOptions } from '../../runner/backends/onnxruntime.js';
import { createCapiSession, loadCapi } from '../../runner/backends/ort-capi.js';
import { ortBinding } from '../../runner/gpu-install.js';
import { r2 } from './common.js';

const reader = await PackageReader.open('fixtures/dist/paddleocr-v4.xpkg');
const bytes = await reader.readVerified('models/rec/ch_PP-OCRv4_rec_infer.onnx');
await reader.close();

const variants: Record<string, ort.InferenceSession.SessionOptions> = {
  default: { executionProviders: ['cuda'] },
  'provider option objects': {
    executionProviders: [
      { name: 'cuda', cudnnConvAlgoSearch: 'HEURISTIC', cudnn_conv_algo_search: 'HEURISTIC' } as never,
    ],
  },
  'config ep.cuda.*': {
    executionProviders: ['cuda'],
    extra: { ep: { cuda: { cudnn_conv_algo_search: 'HEURISTIC' } } },
  },
  'config ep.cudaexecutionprovider.*': {
    executionProviders: ['cuda'],
    extra: { ep: { cudaexecutionprovider: { cudnn_conv_algo_search: 'HEURISTIC' } } },
  },
};

const line = (w: number) => new Float32Array(3 * 48 * w);

/** The first and the second run at each width of one session (a first run pays the per-shape search). */
async function firstAndSecond<T>(
  s: { inputNames: readonly string[]; run(feeds: Record<string, T>): Promise<unknown> },
  widths: number[],
  input: (width: number) => T,
): Promise<{ width: number; firstMs: number; secondMs: number }[]> {
  const rows = [];
  for (const w of widths) {
    const feeds = { [s.inputNames[0]]: input(w) };
    let t = performance.now();
    await s.run(feeds);
    const first = performance.now() - t;
    t = performance.now();
    await s.run(feeds);
    rows.push({ width: w, firstMs: r2(first), secondMs: r2(performance.now() - t) });
  }
  return rows;
}

const out: Record<string, unknown> = {};
for (const [name, opts] of Object.entries(variants)) {
  const s = await ort.InferenceSession.create(bytes, { ...opts, logSeverityLevel: 3 });
  out[name] = await firstAndSecond(s, [320, 480, 640], (w) => new ort.Tensor('float32', line(w), [1, 3, 48, w]));
  await s.release();
}
const c = loadCapi(ortBinding().dir);
if ('capi' in c) {
  const variant = {
    id: 'rec',
    runtime: 'onnxruntime',
    precision: 'fp32',
    files: ['m'],
    requires: { executionProviders: ['cuda'] },
  };
  const t0 = performance.now();
  const s = await createCapiSession(
    c.capi,
    bytes,
    capiOptions(ortSessionOptions(variant as never, {}, ['cuda', 'cpu'])),
  );
  const createMs = r2(performance.now() - t0);
  const rows = await firstAndSecond(s, [320, 480, 640, 1280, 800], (w) => ({
    type: 'float32',
    dims: [1, 3, 48, w],
    data: line(w),
  }));
  out['xpkg C API binding, HEURISTIC (one session)'] = { createMs, rows };
  await s.release();
} else out['xpkg C API binding, HEURISTIC (one session)'] = { unavailable: c };
process.stdout.write(`${JSON.stringify(out, null, 1)}\n`);
