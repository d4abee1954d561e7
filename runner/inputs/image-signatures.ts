/**
 * Image files told apart by their first bytes, where sharp cannot read them: a damaged image of a
 * format it reads, an image of a format this build does not decode, or no image at all. The CLI's
 * input loader (load.ts) and the pipeline's decode (decode-sharp.ts, which the daemon's bodies reach)
 * say it alike, and the browser (browser/file-kind.ts, browser/image.ts) reads the same signatures: no
 * Buffer here, plain bytes.
 */
import { RunnerError } from '../../spec/errors.js';

/** Bytes `from`..`to` as text, a byte a character (latin1). */
export const ascii = (b: Uint8Array, from: number, to: number) => String.fromCharCode(...b.subarray(from, to));
const u32le = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at, true);

/** How each raster format sharp reads starts (its signature alone). */
const IMAGE_STARTS: [string, (b: Uint8Array) => boolean][] = [
  ['PNG', (b) => ascii(b, 0, 8) === '\x89PNG\r\n\x1a\n'],
  ['GIF', (b) => /^GIF8[79]a$/.test(ascii(b, 0, 6))],
  ['WebP', (b) => ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 12) === 'WEBP'],
  ['JPEG', (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff],
  // TIFF (II*\0, MM\0*) and BigTIFF (version 43)
  ['TIFF', (b) => /^(II[*+]\0|MM\0[*+])$/.test(ascii(b, 0, 4))],
  // HEIF/AVIF: an ISO-BMFF ftyp box naming an image brand
  [
    'HEIF',
    (b) => ascii(b, 4, 8) === 'ftyp' && /^(avif|avis|heic|heix|hevc|heim|heis|mif1|msf1)$/.test(ascii(b, 8, 12)),
  ],
];

/**
 * Image formats the prebuilt libvips has no loader for: such a file is an image, and "not an image"
 * would send its user looking for damage.
 */
const OTHER_IMAGES: [string, (b: Uint8Array) => boolean][] = [
  // BM, then a DIB header of one of the sizes Windows and OS/2 write
  ['BMP', (b) => ascii(b, 0, 2) === 'BM' && b.length >= 18 && [12, 40, 52, 56, 64, 108, 124].includes(u32le(b, 14))],
  ['ICO', (b) => b.length >= 6 && b[0] === 0 && b[1] === 0 && b[2] === 1 && b[3] === 0 && (b[4] || b[5]) !== 0],
  ['PSD', (b) => ascii(b, 0, 4) === '8BPS'],
  ['JPEG 2000', (b) => ascii(b, 0, 4) === '\xff\x4f\xff\x51' || ascii(b, 4, 12) === 'jP  \r\n\x87\n'],
  ['JPEG XL', (b) => (b[0] === 0xff && b[1] === 0x0a) || ascii(b, 4, 8) === 'JXL '],
  ['QOI', (b) => ascii(b, 0, 4) === 'qoif'],
];

export const startsAs = (name: string) => IMAGE_STARTS.find(([n]) => n === name)![1];

/** The raster format sharp reads whose signature `b` starts with, or undefined. */
export function imageSignature(b: Uint8Array): string | undefined {
  return IMAGE_STARTS.find(([, is]) => is(b))?.[0];
}

/** The image format (one sharp reads, or another) whose signature `b` starts with, or undefined. */
export function anyImageSignature(b: Uint8Array): string | undefined {
  return imageSignature(b) ?? OTHER_IMAGES.find(([, is]) => is(b))?.[0];
}

/**
 * Why sharp could not read `bytes` as an image (`message`, sharp's): a damaged image of a format it
 * reads (E_RUN_INPUT, reason damaged), an image of a format it does not decode (E_RUN_INPUT_FORMAT,
 * reason unsupported) or no image (E_RUN_INPUT_FORMAT, reason image). `path` names the file.
 */
export function unreadableImage(bytes: Uint8Array, message: string, path?: string, cause?: unknown): RunnerError {
  const what = path ?? 'the image';
  const at = path !== undefined ? { path } : {};
  const options = cause !== undefined ? { cause } : undefined;
  const format = imageSignature(bytes);
  if (format)
    return new RunnerError(
      'E_RUN_INPUT',
      `${what} is a damaged ${format} image (${message})`,
      { reason: 'damaged', format, ...at },
      options,
    );
  const other = OTHER_IMAGES.find(([, is]) => is(bytes))?.[0];
  if (other)
    return new RunnerError(
      'E_RUN_INPUT_FORMAT',
      `${what} is a ${other} image, which this build of sharp does not decode; convert it to PNG, JPEG, WebP or TIFF`,
      { reason: 'unsupported', format: other, ...at },
      options,
    );
  return new RunnerError(
    'E_RUN_INPUT_FORMAT',
    `${what} is not an image (${message})`,
    { reason: 'image', ...at },
    options,
  );
}
