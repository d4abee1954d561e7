/**
 * Browser twin of runner/pipeline/image-decoder.ts: no worker (the browser entry hands the pipeline
 * raw pixels, browser/image.ts), so everything is decoded in this thread as decode-sharp.ts does.
 */
import { decodeHere, probeHere } from '../../runner/pipeline/decode-sharp.js';
import type { ImageValue } from '../../runner/pipeline/values.js';
import type { RunnerBudget } from '../../runner/types.js';

export function startImageDecoder(_options: { onnxruntime?: boolean } = {}): boolean {
  return false;
}

export function decodeInputsAhead(): void {}

export const probeImage = probeHere;

export function decodeImage(
  value: unknown,
  channels: 1 | 3,
  background: number[],
  budget: Required<RunnerBudget>,
): Promise<ImageValue> {
  return decodeHere(value, channels, background, budget);
}
