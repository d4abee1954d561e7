/**
 * Decoding with sharp (libvips): encoded bytes or a file path, or raw pixels of another channel
 * count, to the 8-bit pixels the pipeline takes. Runs in this thread or in the decoder's worker
 * (image-decoder.ts), with the same code either way, so the pixels are the same.
 */
import type { Metadata, Sharp } from 'sharp';
import { readFileBytes } from '../../platform/index.js';
import { RunnerError } from '../../spec/errors.js';
import { unreadableImage } from '../inputs/image-signatures.js';
import type { RunnerBudget } from '../types.js';
import { KERNEL_MAX_SIDE } from './budget.js';
import { sharp } from './lazy-sharp.js';
import type { ImageValue } from './values.js';

/**
 * A caller's image too large to decode (above the pixel budget) or for the image kernels (a side
 * above KERNEL_MAX_SIDE) is the caller's input error, refused from its size alone.
 */
export function checkInputSize(width: number, height: number, budget: Required<RunnerBudget>, path?: string): void {
  const where = path !== undefined ? { path } : {};
  if (width * height > budget.maxPixels) {
    throw new RunnerError(
      'E_RUN_INPUT',
      `image is ${width}×${height} = ${width * height} pixels, above the budget of ${budget.maxPixels} (maxPixels, --max-pixels)`,
      {
        width,
        height,
        limit: 'maxPixels',
        budget: budget.maxPixels,
        ...where,
      },
    );
  }
  if (Math.max(width, height) > KERNEL_MAX_SIDE) {
    throw new RunnerError(
      'E_RUN_INPUT',
      `image is ${width}×${height}; the image kernels take sides up to ${KERNEL_MAX_SIDE}`,
      { width, height, maxSide: KERNEL_MAX_SIDE, ...where },
    );
  }
}

/** An image file's bytes; a file that cannot be read is the caller's input error (E_RUN_INPUT). */
async function readImageFile(path: string): Promise<Buffer> {
  try {
    return await readFileBytes(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new RunnerError('E_RUN_INPUT', `cannot read image ${path}: ${(e as Error).message}`, {
      path,
      ...(code ? { errno: code } : {}),
    });
  }
}

/**
 * sharp converts a 16-bit RGB image with an ICC profile to Display P3, not sRGB (its working space
 * for 16 bits), and the final toColourspace only rescales: a 16-bit PNG or TIFF tagged sRGB, Adobe
 * RGB or P3 came out desaturated. Taken to 8-bit sRGB first, the profile maps it to sRGB as it does
 * for 8-bit images (at most 1 level of rounding away from a 16-bit transform). A 16-bit grey image's
 * profile sharp skips altogether (a grey scan tagged Gray Gamma 1.0 came out 71 levels darker than
 * its 8-bit twin); taken to 8-bit grey first, its profile is applied too. Decode and `--annotate`
 * (runner/annotate.ts) both read pixels through this.
 */
export function profiledToSrgb(img: Sharp, meta: { space?: string; hasProfile?: boolean }): Sharp {
  if (!meta.hasProfile) return img;
  if (meta.space === 'rgb16') return img.pipelineColourspace('srgb');
  if (meta.space === 'grey16') return img.pipelineColourspace('b-w');
  return img;
}

export async function decodeHere(
  value: unknown,
  channels: 1 | 3,
  background: number[],
  budget: Required<RunnerBudget>,
): Promise<ImageValue> {
  if (value && typeof value === 'object' && (value as { kind?: unknown }).kind === 'image') return value as ImageValue;
  let img: Sharp;
  let meta: Metadata | undefined;
  if (value instanceof Uint8Array && !Buffer.isBuffer(value))
    value = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (typeof value === 'string' || Buffer.isBuffer(value)) {
    if (typeof value === 'string' && value.length === 0) throw new RunnerError('E_RUN_INPUT', 'image path is empty');
    const path = typeof value === 'string' ? value : undefined;
    // A path is read here and decoded from its bytes, never handed to sharp: an SVG given by path
    // would have librsvg load the files it references beside it (<image href="secret.png">), and
    // a named pipe or a device would block libvips' open (readFileBytes refuses or reads those).
    const bytes = path !== undefined ? await readImageFile(path) : (value as Buffer);
    if (bytes.length === 0)
      throw new RunnerError(
        'E_RUN_INPUT',
        `image ${path !== undefined ? 'file' : 'buffer'} is empty`,
        path !== undefined ? { path } : undefined,
      );
    // Header first: the size is checked against the budget before a pixel is decoded (so sharp's
    // own pixel limit, which would refuse without saying the size, is off).
    img = sharp(bytes, { failOn: 'error', limitInputPixels: false });
    try {
      meta = await img.metadata();
    } catch (e) {
      // said as the CLI's input loader says it (a damaged image, another image format, no image)
      throw unreadableImage(bytes, sharpMessage(e), path, e);
    }
    refuseVector(meta.format, path);
    if (!meta.width || !meta.height)
      throw new RunnerError(
        'E_RUN_INPUT',
        'cannot decode image: its header gives no size',
        path !== undefined ? { path } : undefined,
      );
    checkInputSize(meta.width, meta.height, budget, path);
    img = profiledToSrgb(img, meta).autoOrient();
  } else if (value && typeof value === 'object' && 'data' in value) {
    const {
      data,
      width,
      height,
      channels: c,
    } = value as { data: unknown; width: unknown; height: unknown; channels: unknown };
    const okDims =
      [width, height].every((n) => Number.isInteger(n) && (n as number) > 0) && [1, 2, 3, 4].includes(c as number);
    if (
      !okDims ||
      !(data instanceof Uint8Array) ||
      data.length !== (width as number) * (height as number) * (c as number)
    ) {
      throw new RunnerError(
        'E_RUN_INPUT',
        'raw image needs {data: Uint8Array, width, height, channels: 1-4} with data.length = width × height × channels',
        {
          width,
          height,
          channels: c,
          length: data instanceof Uint8Array ? data.length : undefined,
        },
      );
    }
    checkInputSize(width as number, height as number, budget);
    // Fast path: already what the pipeline wants, no copy (ops never write their inputs).
    if (c === channels) return { kind: 'image', data, width: width as number, height: height as number, channels };
    // the budget was checked above; sharp's own limit (268 MP) would refuse what --max-pixels allows
    img = sharp(data, {
      raw: { width: width as number, height: height as number, channels: c as 1 | 2 | 3 | 4 },
      limitInputPixels: false,
    });
  } else {
    throw new RunnerError(
      'E_RUN_INPUT',
      'an image input is a file path, an encoded image Buffer, or {data, width, height, channels}',
    );
  }
  const bg = {
    r: background[0] ?? 255,
    g: background[1] ?? background[0] ?? 255,
    b: background[2] ?? background[0] ?? 255,
  };
  img = img.flatten({ background: bg }).toColourspace(channels === 1 ? 'b-w' : 'srgb');
  try {
    const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== channels) throw new Error(`decoded ${info.channels} channels, expected ${channels}`);
    return {
      kind: 'image',
      data: new Uint8Array(data.buffer, data.byteOffset, data.length),
      width: info.width,
      height: info.height,
      channels,
    };
  } catch (e) {
    const path = typeof value === 'string' ? value : undefined;
    // An iPhone's photo: sharp reads a HEIC's header, but its prebuilt libvips has no HEVC decoder
    // (only AV1, for AVIF); said as a format it does not read, not as a damaged image.
    if (meta?.format === 'heif' && meta.compression === 'hevc')
      throw new RunnerError(
        'E_RUN_INPUT_FORMAT',
        `${path !== undefined ? `${path} is ` : 'image is '}a HEIC photo (HEIF coded with HEVC), which this build of sharp does not decode; convert it to JPEG, PNG or AVIF (${sharpMessage(e).split('; ').at(-1)})`,
        { reason: 'unsupported', format: 'heic', ...(path !== undefined ? { path } : {}) },
        { cause: e },
      );
    throw new RunnerError(
      'E_RUN_INPUT',
      `cannot decode image: ${sharpMessage(e)}`,
      path !== undefined ? { path } : undefined,
      { cause: e },
    );
  }
}

/**
 * sharp's message on one line, each line once: libvips repeats a line per retry or tile (a JPEG
 * above its 65500-pixel side gave it three times, once behind sharp's "corrupt header:" prefix).
 */
function sharpMessage(e: unknown): string {
  const lines = [
    ...new Set(
      String(e instanceof Error ? e.message : e)
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean),
    ),
  ];
  return lines.filter((l) => !lines.some((o) => o !== l && o.endsWith(l))).join('; ');
}

/**
 * An SVG is a program for librsvg, not pixels: 200 bytes of filters (feMorphology of radius 3000 on
 * a 9000×9000 page, within the pixel budget) kept a core busy for minutes, and no budget bounds
 * the time of a decode. Image inputs are raster images; an SVG is refused by its format.
 */
function refuseVector(format: string | undefined, path?: string): void {
  if (format === 'svg')
    throw new RunnerError(
      'E_RUN_INPUT_FORMAT',
      `${path !== undefined ? `${path} is ` : 'image is '}an SVG drawing; an image input is a raster image (PNG, JPEG, WebP…)`,
      { reason: 'vector', format, ...(path !== undefined ? { path } : {}) },
    );
}

/**
 * Throws unless sharp can read `bytes`' header (only the header is read) as a raster image (an SVG:
 * E_RUN_INPUT_FORMAT, reason `vector`). sharp's own pixel limit is off, as in decodeHere: an image
 * above it is a real image, which the budget refuses by its size.
 */
export async function probeHere(bytes: Uint8Array): Promise<void> {
  const meta = await sharp(
    Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    { limitInputPixels: false },
  )
    .metadata()
    .catch((e) => {
      throw new Error(sharpMessage(e));
    });
  refuseVector(meta.format);
}
