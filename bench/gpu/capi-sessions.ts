/**
 * What the recogniser micro-benchmarks (rec-post.ts, rec-mask.ts) share: xpkg's C API binding, the
 * package's folded float32 recogniser, and sessions of a model made for one input shape as the
 * runner makes them on a GPU (cuDNN HEURISTIC, free dimensions fixed, a CUDA graph).
 */
import { PackageReader } from '../../pack/reader.js';
import { capiOptions, cudaTuning } from '../../runner/backends/capi-options.js';
import { ortSessionOptions } from '../../runner/backends/onnxruntime.js';
import { createCapiSession, loadCapi } from '../../runner/backends/ort-capi.js';
import { freeDimsOf, shapeKey } from '../../runner/backends/shape-sessions.js';
import { ortBinding } from '../../runner/gpu-install.js';
import { GPU_PROVIDER, GPU_PROVIDERS, GPU_VARIANT } from './common.js';

export type CapiSession = Awaited<ReturnType<typeof createCapiSession>>;

const loaded = loadCapi(ortBinding().dir);
if (!('capi' in loaded)) throw new Error(`binding unavailable: ${loaded.reason}`);
const capi = loaded.capi;

const options = (shape?: { freeDims: [string, number][]; graph: boolean }) =>
  capiOptions(ortSessionOptions(GPU_VARIANT as never, {}, GPU_PROVIDERS), cudaTuning(), shape);

/** The folded float32 recogniser of the shipped OCR package (verified). */
export async function foldedRecogniser(): Promise<Uint8Array> {
  const reader = await PackageReader.open('fixtures/dist/paddleocr-v4.xpkg');
  try {
    return await reader.readVerified('models/rec/ch_PP-OCRv4_rec_infer.onnx');
  } finally {
    await reader.close();
  }
}

/** `count` sessions of `bytes` made for one shape (`dims` of each input), and the input names. */
export async function shapeSessions(bytes: Uint8Array, dims: (input: string) => number[], count: number) {
  const probe = await createCapiSession(capi, bytes, options());
  const declared = probe.inputMetadata.map((m) => (m.isTensor ? (m.shape as (number | string)[]) : undefined));
  const names = probe.inputNames;
  await probe.release();
  const freeDims = freeDimsOf(shapeKey(names, dims), declared);
  const all: CapiSession[] = [];
  for (let i = 0; i < count; i++)
    all.push(await createCapiSession(capi, bytes, options({ freeDims, graph: GPU_PROVIDER !== 'cpu' })));
  return { all, names };
}
