/**
 * Browser twin of runner/pipeline/lazy-sharp.ts. sharp (libvips) does not exist here: the browser
 * entry decodes images itself (createImageBitmap, browser/image.ts) and hands the pipeline raw
 * pixels in the channel count it asks for, so only a misuse reaches this.
 */
import { RunnerError } from '../../spec/errors.js';

type SharpFactory = typeof import('sharp').default;

export const sharp = ((..._args: unknown[]) => {
  throw new RunnerError(
    'E_RUN_INPUT',
    'the browser build decodes images with createImageBitmap: give an image Blob, or {data, width, height, channels} with the channels the package decodes to',
  );
}) as unknown as SharpFactory;
