/**
 * The OCR package's recogniser variant a CPU picks: rec-cpu-int8 where the CPU has int8 dot
 * products (the precision policy prefers int8 there), rec-cpu-fp32 elsewhere. Tests that run the
 * package on the machine they run on expect this one.
 */
import { detectCpu, INT8_DOT_FEATURES } from '../../runner/host-cpu.js';

export const hasInt8Dot = (features: readonly string[]) => INT8_DOT_FEATURES.some((f) => features.includes(f));

export const recVariantFor = (features: readonly string[]) => (hasInt8Dot(features) ? 'rec-cpu-int8' : 'rec-cpu-fp32');

/** The recogniser this machine's CPU picks. */
export async function cpuRecVariant(): Promise<string> {
  return recVariantFor((await detectCpu()).cpu.features);
}

/** The model file of each CPU recogniser variant. */
export const REC_FILE: Record<string, string> = {
  'rec-cpu-fp32': 'models/rec/ch_PP-OCRv4_rec_infer.onnx',
  'rec-cpu-int8': 'models/rec/rec-cpu-int8.onnx',
};

/** The recogniser file this machine's CPU loads (a test that damages the model in use damages this one). */
export async function cpuRecFile(): Promise<string> {
  return REC_FILE[await cpuRecVariant()];
}
