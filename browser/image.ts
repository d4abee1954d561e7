/**
 * Image inputs in the browser: the browser's own decoder (createImageBitmap, EXIF orientation
 * applied) into an OffscreenCanvas, then alpha flattened over the package's background into the
 * channel count its decode-image step asks for (sharp's job under Node). The pipeline then takes
 * the raw pixels as they are.
 */
import { RunnerError } from '../spec/errors.js';
import type { Manifest } from '../spec/schema.js';
import { isImageBytes } from './file-kind.js';

export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3;
}

/** What the package's decode-image step reading `input` wants (channels 3 and a white background by default). */
export function decodeTarget(manifest: Manifest, input: string): { channels: 1 | 3; background: number[] } {
  const step = manifest.pipeline.steps.find(
    (s) => s.op === 'decode-image' && (s.params as { input?: string } | undefined)?.input === input,
  );
  const p = (step?.params ?? {}) as { channels?: 1 | 3; background?: number[] };
  return { channels: p.channels ?? 3, background: p.background ?? [255] };
}

function checkPixels(width: number, height: number, maxPixels: number): void {
  if (width * height > maxPixels)
    throw new RunnerError(
      'E_RUN_INPUT',
      `image is ${width}×${height} = ${width * height} pixels, above the budget of ${maxPixels}`,
      {
        width,
        height,
        limit: 'maxPixels',
        budget: maxPixels,
      },
    );
}

/** An SVG document (after a BOM, an XML declaration, comments or a doctype), or a HEIF file of an HEVC brand. */
const SVG = /^(\ufeff|\xef\xbb\xbf)?\s*(<\?xml[^>]*>\s*)?(<!--[\s\S]*?-->\s*|<!DOCTYPE[^>]*>\s*)*<svg[\s>]/i;
const HEIC = /^....ftyp(heic|heix|heim|heis|hevc|hevx)/s;

/** A Blob's first KiB. */
async function headOf(blob: Blob): Promise<Uint8Array> {
  return new Uint8Array(await blob.slice(0, 1024).arrayBuffer());
}

/** Decodes an image Blob (or takes an ImageBitmap / ImageData) into the pixels the package wants. */
export async function decodeImage(
  value: Blob | ImageBitmap | ImageData,
  target: { channels: 1 | 3; background: number[] },
  maxPixels: number,
): Promise<RawImage> {
  let rgba: Uint8ClampedArray;
  let width: number;
  let height: number;
  if (value instanceof ImageData) {
    ({ width, height } = value);
    // the same budget as a decoded image: the pixels are copied and converted below
    checkPixels(width, height, maxPixels);
    rgba = value.data;
  } else {
    const bytes = value instanceof Blob ? await headOf(value) : new Uint8Array(0);
    const head = String.fromCharCode(...bytes); // a byte a character, for the patterns above
    // an SVG is refused by its format, as `xpkg run` refuses it (runner/pipeline/decode-sharp.ts)
    if (value instanceof Blob && (value.type === 'image/svg+xml' || SVG.test(head)))
      throw new RunnerError(
        'E_RUN_INPUT_FORMAT',
        'image is an SVG drawing; an image input is a raster image (PNG, JPEG, WebP…)',
        { reason: 'vector', format: 'svg' },
      );
    let bitmap: ImageBitmap;
    try {
      bitmap = value instanceof Blob ? await createImageBitmap(value) : value;
    } catch (e) {
      // a HEIC photo this browser has no HEVC decoder for is a format it does not read, as under Node
      if (HEIC.test(head))
        throw new RunnerError(
          'E_RUN_INPUT_FORMAT',
          `image is a HEIC photo (HEIF coded with HEVC), which this browser does not decode; convert it to JPEG, PNG or AVIF`,
          { reason: 'unsupported', format: 'heic' },
        );
      const message = `cannot decode image: ${(e as Error).message}`;
      // bytes of no image format are told from a damaged image, with `xpkg run`'s codes and reasons
      // (runner/inputs/image-signatures.ts, whose Buffer calls the browser's shim does not take)
      if (value instanceof Blob && !isImageBytes(bytes))
        throw new RunnerError('E_RUN_INPUT_FORMAT', `the image is not an image (${message})`, { reason: 'image' });
      throw new RunnerError('E_RUN_INPUT', message, { reason: 'damaged' });
    }
    ({ width, height } = bitmap);
    checkPixels(width, height, maxPixels);
    const canvas = new OffscreenCanvas(width, height);
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    if (!ctx) throw new RunnerError('E_RUN_INPUT', 'cannot decode image: no 2D canvas');
    ctx.drawImage(bitmap, 0, 0);
    if (value instanceof Blob) bitmap.close();
    rgba = ctx.getImageData(0, 0, width, height).data;
  }
  const { channels, background } = target;
  const bg = [background[0], background[1] ?? background[0], background[2] ?? background[0]];
  const n = width * height;
  const out = new Uint8Array(n * channels);
  for (let i = 0; i < n; i++) {
    const a = rgba[i * 4 + 3] / 255;
    const r = rgba[i * 4] * a + bg[0] * (1 - a);
    const g = rgba[i * 4 + 1] * a + bg[1] * (1 - a);
    const b = rgba[i * 4 + 2] * a + bg[2] * (1 - a);
    if (channels === 3) {
      out[i * 3] = Math.round(r);
      out[i * 3 + 1] = Math.round(g);
      out[i * 3 + 2] = Math.round(b);
    } else out[i] = Math.round(0.2126 * r + 0.7152 * g + 0.0722 * b);
  }
  return { data: out, width, height, channels };
}
