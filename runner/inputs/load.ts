/**
 * Input values from files, by the package's input declaration (its `type`, `dtype`, `shape`):
 *
 * - image: the file's bytes, checked to be an image sharp can read (decoded later by the pipeline);
 * - tensor: a `.npy` file by name or magic (strict reader, npy.ts), or any other file but a `.npz`
 *   as raw little-endian bytes of the declared dtype, its shape from the declaration (one unknown
 *   dimension is inferred);
 * - text: strict UTF-8 (a leading BOM is dropped);
 * - mask: a 2-D integer `.npy`, or JSON `{width, height, data}`;
 * - json, text-lines, classification, boxes: a JSON document.
 *
 * A file that is not what its type needs → E_RUN_INPUT_FORMAT; a valid file that does not match the
 * declaration (dtype, shape) → E_RUN_INPUT. Both carry `reason` and `path` in their detail.
 */
import { readFileBytes } from '../../platform/index.js';
import { RunnerError } from '../../spec/errors.js';
import type { IoSpec, Manifest } from '../../spec/schema.js';
import { probeImage } from '../pipeline/image-decoder.js';
import type { DType, Tensor } from '../types.js';
import { ascii, startsAs, unreadableImage } from './image-signatures.js';
import { parseNpy } from './npy.js';

const NPY_MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY
const ITEM: Record<DType, number> = { float32: 4, float16: 2, int64: 8, int32: 4, uint8: 1, int8: 1, bool: 1 };

function formatError(reason: string, summary: string, path: string, detail: Record<string, unknown> = {}): RunnerError {
  return new RunnerError('E_RUN_INPUT_FORMAT', summary, { reason, path, ...detail });
}

/**
 * The most UTF-8 bytes a text or JSON input may hold: V8's longest string (2^29 − 24 characters,
 * buffer.constants.MAX_STRING_LENGTH in Node 20); fewer bytes always decode to fewer characters.
 */
export const TEXT_MAX_BYTES = 2 ** 29 - 24;

function tooLarge(spec: IoSpec, path: string, bytes: number): RunnerError {
  return new RunnerError(
    'E_RUN_INPUT',
    `${path} is ${bytes} bytes, more than a ${spec.type} input can hold (${TEXT_MAX_BYTES} bytes)`,
    { reason: 'too-large', path, input: spec.name, bytes, limit: TEXT_MAX_BYTES },
  );
}

/** Reads one file as the value of the declared input `spec`. */
export async function loadInputFile(spec: IoSpec, path: string): Promise<unknown> {
  const bytes = await readFileBytes(path).catch((e: NodeJS.ErrnoException) => {
    // Node reads at most 2 GiB into one buffer; a larger input is refused clearly, not as an internal error.
    if (e?.code === 'ERR_FS_FILE_TOO_LARGE')
      throw new RunnerError('E_RUN_INPUT', `${path} is too large to read as an input (more than 2 GiB)`, {
        reason: 'too-large',
        path,
        input: spec.name,
      });
    if (e?.code === 'ERR_INPUT_DEVICE') throw formatError('device', `${path} is a device, not an input file`, path);
    if (e?.code === 'ERR_INPUT_EMPTY_PIPE') throw formatError('empty', e.message, path);
    // a socket cannot be opened as a file
    if (e?.code === 'ENXIO')
      throw formatError('device', `${path} is a socket or a device with nothing behind it, not an input file`, path);
    throw e;
  });
  return inputFromBytes(spec, bytes, path);
}

/** The value of input `spec` from a file's bytes; `path` names the file in errors and, with the magic, picks `.npy`. */
export async function inputFromBytes(spec: IoSpec, bytes: Buffer, path: string): Promise<unknown> {
  // A .npy by name, or by its magic: read as raw values, its header would become silently wrong numbers.
  const npy = /\.npy$/i.test(path) || NPY_MAGIC.equals(bytes.subarray(0, 6));
  switch (spec.type) {
    case 'image': {
      if (bytes.length === 0) throw formatError('empty', `${path} is empty, not an image`, path);
      // Only the header is read here: a file of no image format is told apart from a damaged image,
      // which the pipeline's decode step reports (E_RUN_INPUT) when it reads the pixels.
      try {
        await probeImage(bytes);
      } catch (e) {
        if (e instanceof RunnerError && e.code === 'E_RUN_INPUT_FORMAT')
          throw formatError((e.detail as { reason?: string })?.reason ?? 'image', `${path}: ${e.message}`, path);
        // A file that starts as an image but whose header cannot be read (a WebP, GIF or TIFF cut
        // short) is a damaged image, E_RUN_INPUT as the decode step says of a cut PNG or JPEG; an
        // image of a format sharp does not decode, or no image, is E_RUN_INPUT_FORMAT
        throw unreadableImage(bytes, (e as Error).message, path);
      }
      return bytes;
    }
    case 'tensor':
      // np.savez's archive of arrays: as raw values it would be silently wrong numbers
      if (!npy && /\.npz$/i.test(path))
        throw formatError(
          'npz',
          `${path} is a .npz archive; a tensor input is one .npy file (np.save) or raw values`,
          path,
        );
      return checkTensor(spec, npy ? npyOf(bytes, path) : rawTensor(spec, bytes, path), path);
    case 'text':
      if (bytes.length > TEXT_MAX_BYTES) throw tooLarge(spec, path, bytes.length);
      return utf8(bytes, path);
    case 'mask':
      if (npy) return maskOf(npyOf(bytes, path), path);
      if (bytes.length > TEXT_MAX_BYTES) throw tooLarge(spec, path, bytes.length);
      return json(bytes, path);
    default:
      if (bytes.length > TEXT_MAX_BYTES) throw tooLarge(spec, path, bytes.length);
      return json(bytes, path);
  }
}

function npyOf(bytes: Buffer, path: string): Tensor {
  try {
    return parseNpy(bytes);
  } catch (e) {
    if (e instanceof RunnerError) {
      const detail = e.detail as { reason?: string; numeric?: boolean };
      // A numeric dtype the reader does not take (float64, uint16…) is a valid file of another dtype
      // than any input can declare: E_RUN_INPUT, as a dtype that differs from the declaration.
      const numeric = detail.reason === 'dtype' && detail.numeric === true;
      const message = numeric ? e.message.replace(/^not a valid \.npy file: /, '') : e.message;
      throw new RunnerError(numeric ? 'E_RUN_INPUT' : e.code, `${path}: ${message}`, { ...detail, path });
    }
    throw e;
  }
}

function utf8(bytes: Buffer, path: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw formatError('utf8', `${path} is not valid UTF-8 text`, path);
  }
}

function json(bytes: Buffer, path: string): unknown {
  const text = utf8(bytes, path);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw formatError('json', `${path} is not JSON (${(e as Error).message})`, path);
  }
}

/**
 * Formats whose files start with a signature no run of raw values plausibly starts with (8 bytes,
 * or 4 plus a tag further on): such a file read as raw values would be silently wrong numbers.
 * A JPEG needs more than its start.
 */
const ENCODED: [string, (b: Buffer) => boolean][] = [
  ['PNG', startsAs('PNG')],
  ['GIF', startsAs('GIF')],
  ['WebP', startsAs('WebP')],
  // JPEG: its start, a marker, and a JFIF / Exif tag, or (an encoder writing neither) its end marker
  [
    'JPEG',
    (b) =>
      b.length >= 11 &&
      startsAs('JPEG')(b) &&
      (/^(JFIF|Exif)\0$/.test(ascii(b, 6, 11)) ||
        ((b[3] >= 0xe0 || [0xdb, 0xc0, 0xc1, 0xc2, 0xc4, 0xfe].includes(b[3])) &&
          b.readUInt16BE(b.length - 2) === 0xffd9)),
  ],
  ['ZIP (.npz)', (b) => b.subarray(0, 4).equals(Buffer.from([0x50, 0x4b, 0x03, 0x04]))],
];

/** Raw little-endian bytes in the declared dtype; the declared shape with one unknown dimension inferred. */
function rawTensor(spec: IoSpec, bytes: Buffer, path: string): Tensor {
  const encoded = ENCODED.find(([, is]) => is(bytes))?.[0];
  if (encoded)
    throw formatError(
      'encoded',
      `${path} is a ${encoded} file, not raw values (a tensor input is .npy or raw values)`,
      path,
      {
        format: encoded,
      },
    );
  const dtype = spec.dtype as DType | 'string' | undefined;
  if (!dtype || dtype === 'string') {
    throw new RunnerError(
      'E_RUN_INPUT',
      `input ${spec.name} declares no numeric dtype, so ${path} can only be a .npy file`,
      { reason: 'dtype', path, input: spec.name },
    );
  }
  const size = ITEM[dtype];
  if (bytes.length % size !== 0)
    throw formatError('size', `${path} is ${bytes.length} bytes, not a whole number of ${dtype} values`, path, {
      bytes: bytes.length,
      dtype,
    });
  const count = bytes.length / size;
  const shape = spec.shape ?? [-1];
  const unknown = shape.filter((d) => typeof d !== 'number' || d < 0).length;
  const known = shape.reduce<number>((p, d) => (typeof d === 'number' && d >= 0 ? p * d : p), 1);
  if (unknown > 1) {
    throw new RunnerError(
      'E_RUN_INPUT',
      `input ${spec.name} has ${unknown} unknown dimensions: raw bytes can't tell its shape, use a .npy file`,
      { reason: 'shape', path, input: spec.name, shape },
    );
  }
  if ((unknown === 0 && known !== count) || (unknown === 1 && (known === 0 ? count !== 0 : count % known !== 0))) {
    throw formatError(
      'size',
      `${path} holds ${count} ${dtype} values, which does not fit shape ${JSON.stringify(shape)}`,
      path,
      { count, shape },
    );
  }
  const dims = shape.map((d) => (typeof d === 'number' && d >= 0 ? d : known === 0 ? 0 : count / known));
  const data = new Uint8Array(bytes); // aligned copy
  const b = data.buffer;
  const typed =
    dtype === 'float32'
      ? new Float32Array(b)
      : dtype === 'float16'
        ? new Uint16Array(b)
        : dtype === 'int64'
          ? new BigInt64Array(b)
          : dtype === 'int32'
            ? new Int32Array(b)
            : dtype === 'int8'
              ? new Int8Array(b)
              : data;
  if (dtype === 'bool' && data.some((v) => v > 1))
    throw formatError('dtype', `${path}: a bool value is neither 0 nor 1`, path, { dtype });
  return { type: dtype, dims, data: typed };
}

/** A tensor read from a file must match the declaration: dtype, rank, fixed sizes, and one size per named dimension. */
function checkTensor(spec: IoSpec, t: Tensor, path: string): Tensor {
  const mismatch = (reason: string, summary: string, detail: Record<string, unknown>) =>
    new RunnerError('E_RUN_INPUT', `${path}: ${summary}`, { reason, path, input: spec.name, ...detail });
  if (spec.dtype && spec.dtype !== t.type)
    throw mismatch('dtype', `dtype ${t.type}, input ${spec.name} is declared ${spec.dtype}`, {
      expected: spec.dtype,
      actual: t.type,
    });
  if (spec.shape) {
    const named = new Map<string, number>();
    const ok =
      spec.shape.length === t.dims.length &&
      spec.shape.every((d, i) => {
        if (typeof d === 'number') return d < 0 || d === t.dims[i];
        const seen = named.get(d);
        named.set(d, t.dims[i]);
        return seen === undefined || seen === t.dims[i];
      });
    if (!ok)
      throw mismatch(
        'shape',
        `shape ${JSON.stringify(t.dims)} does not fit the declared ${JSON.stringify(spec.shape)}`,
        { expected: spec.shape, actual: t.dims },
      );
  }
  return t;
}

function maskOf(t: Tensor, path: string): { width: number; height: number; data: Int32Array } {
  if (t.dims.length !== 2 || !['int32', 'int64', 'uint8', 'int8'].includes(t.type)) {
    throw new RunnerError(
      'E_RUN_INPUT',
      `${path}: a mask is a 2-D integer array, not ${t.type} ${JSON.stringify(t.dims)}`,
      { reason: 'shape', path, dims: t.dims, dtype: t.type },
    );
  }
  const data = Int32Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
  return { height: t.dims[0], width: t.dims[1], data };
}

/** The input a bare `--input file` (no `name=`) feeds: the first declared input. */
export function primaryInput(manifest: Manifest): IoSpec {
  return manifest.inputs[0];
}

/** Loads every named file as its declared input; names that are not inputs → E_RUN_INPUT. */
export async function loadInputFiles(
  manifest: Manifest,
  files: Record<string, string>,
): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const [name, path] of Object.entries(files)) {
    const spec = manifest.inputs.find((i) => i.name === name);
    if (!spec)
      throw new RunnerError('E_RUN_INPUT', `unknown input ${JSON.stringify(name)}`, {
        input: name,
        expected: manifest.inputs.map((i) => i.name),
      });
    out[name] = await loadInputFile(spec, path);
  }
  return out;
}
