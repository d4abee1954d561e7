/**
 * A strict reader for NumPy `.npy` files (format versions 1.0, 2.0 and 3.0).
 *
 * Only what a tensor input can hold is accepted: C order, the dtypes a manifest may declare
 * (float32, float16, int64, int32, uint8, int8, bool) in either byte order, and a header that is
 * exactly the dict NumPy writes. Object arrays (pickles), structured dtypes, Fortran order, a data
 * length that is not exactly shape × itemsize, and anything unparsable are refused with
 * E_RUN_INPUT_FORMAT and a `reason` in the detail, so a caller can tell the cases apart.
 */
import { RunnerError } from '../../spec/errors.js';
import type { DType, Tensor } from '../types.js';

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY
/** NumPy itself refuses headers above 10,000 bytes by default (`max_header_size`). */
export const NPY_MAX_HEADER = 10_000;
const MAX_DIMS = 32;

export type NpyProblem = 'magic' | 'version' | 'truncated' | 'header' | 'dtype' | 'shape' | 'size';

function bad(reason: NpyProblem, summary: string, detail: Record<string, unknown> = {}): never {
  throw new RunnerError('E_RUN_INPUT_FORMAT', `not a valid .npy file: ${summary}`, {
    format: 'npy',
    reason,
    ...detail,
  });
}

/** descr without its byte-order character → dtype and item size. */
const DTYPES: Record<string, [DType, number]> = {
  f4: ['float32', 4],
  f2: ['float16', 2],
  i8: ['int64', 8],
  i4: ['int32', 4],
  u1: ['uint8', 1],
  i1: ['int8', 1],
  b1: ['bool', 1],
};

type Lit = string | boolean | number[];

/** Parses the header: a Python dict literal with exactly the keys descr, fortran_order and shape. */
function parseHeader(text: string): { descr: string; fortran: boolean; shape: number[] } {
  let i = 0;
  const ws = () => {
    while (text[i] === ' ') i++;
  };
  const expect = (c: string) => {
    ws();
    if (text[i] !== c) bad('header', `expected ${JSON.stringify(c)} at offset ${i}`, { offset: i });
    i++;
  };
  const value = (key?: string): Lit => {
    ws();
    const c = text[i];
    if (c === '[' && key === 'descr') bad('dtype', 'structured dtypes are not supported');
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      if (end < 0) bad('header', 'unterminated string');
      const s = text.slice(i + 1, end);
      if (!/^[\x20-\x7e]*$/.test(s) || s.includes('\\')) bad('header', 'unsupported characters in a string');
      i = end + 1;
      return s;
    }
    if (text.startsWith('True', i)) return ((i += 4), true);
    if (text.startsWith('False', i)) return ((i += 5), false);
    if (c === '(') {
      i++;
      const dims: number[] = [];
      for (;;) {
        ws();
        if (text[i] === ')') break;
        const token = /^[^,)]*/.exec(text.slice(i))![0];
        if (!/^(0|[1-9][0-9]{0,15}) *$/.test(token))
          bad('shape', `a shape entry is not a non-negative integer at offset ${i}`, { offset: i });
        dims.push(Number(token));
        i += token.length;
        if (text[i] === ',') i++;
        else if (text[i] !== ')') bad('header', `expected "," or ")" at offset ${i}`, { offset: i });
        // A one-element tuple must be written (n,): (n) is just a number in Python.
        else if (dims.length === 1 && text[i - 1] !== ',') bad('shape', 'a one-element shape must be written (n,)');
      }
      i++;
      return dims;
    }
    return bad('header', `unexpected value at offset ${i}`, { offset: i });
  };
  const dict = new Map<string, Lit>();
  expect('{');
  for (;;) {
    ws();
    if (text[i] === '}') break;
    const key = value();
    if (typeof key !== 'string') bad('header', 'a dict key is not a string');
    expect(':');
    if (dict.has(key)) bad('header', `duplicate key ${JSON.stringify(key)}`, { key });
    dict.set(key, value(key));
    ws();
    if (text[i] === ',') i++;
    else if (text[i] !== '}') bad('header', `expected "," or "}" at offset ${i}`, { offset: i });
  }
  i++;
  if (!/^ *\n$/.test(text.slice(i))) bad('header', 'the header must end with spaces and one newline after the dict');
  const keys = [...dict.keys()].sort().join(',');
  if (keys !== 'descr,fortran_order,shape')
    bad('header', `header keys are ${keys || 'none'}, expected descr, fortran_order, shape`, {
      keys: [...dict.keys()],
    });
  const descr = dict.get('descr'),
    fortran = dict.get('fortran_order'),
    shape = dict.get('shape');
  if (typeof descr !== 'string') bad('dtype', 'descr is not a string (structured dtypes are not supported)');
  if (typeof fortran !== 'boolean') bad('header', 'fortran_order is not True or False');
  if (!Array.isArray(shape)) bad('shape', 'shape is not a tuple');
  return { descr, fortran, shape };
}

/** Swaps each `size`-byte element of `b` in place (big-endian file → this little-endian host). */
function swap(b: Uint8Array, size: number): void {
  for (let o = 0; o < b.length; o += size) b.subarray(o, o + size).reverse();
}

/** Reads a `.npy` file's bytes into a tensor (data copied, aligned, host byte order). */
export function parseNpy(bytes: Uint8Array): Tensor {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 10)
    bad(buf.length >= 6 && buf.subarray(0, 6).equals(MAGIC) ? 'truncated' : 'magic', 'file too short');
  if (!buf.subarray(0, 6).equals(MAGIC)) bad('magic', 'missing the \\x93NUMPY magic');
  const [major, minor] = [buf[6], buf[7]];
  if (![1, 2, 3].includes(major) || minor !== 0)
    bad('version', `format version ${major}.${minor} (1.0, 2.0 and 3.0 are read)`, { version: `${major}.${minor}` });
  const lenSize = major === 1 ? 2 : 4;
  if (buf.length < 8 + lenSize) bad('truncated', 'file ends inside the header length');
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  if (hlen > NPY_MAX_HEADER)
    bad('header', `header of ${hlen} bytes (at most ${NPY_MAX_HEADER})`, { headerBytes: hlen });
  const start = 8 + lenSize + hlen;
  if (buf.length < start) bad('truncated', 'file ends inside the header', { headerBytes: hlen, fileBytes: buf.length });
  const raw = buf.subarray(8 + lenSize, start);
  // v1/v2 headers are latin-1 and in practice ASCII; v3 allows UTF-8, but the keys and values we accept are ASCII.
  if (raw.some((c) => c > 0x7e || (c < 0x20 && c !== 0x0a))) bad('header', 'the header has non-ASCII or control bytes');
  const h = parseHeader(raw.toString('latin1'));
  const m = /^([<>|=])([a-zA-Z][0-9]+)$/.exec(h.descr);
  const known = m ? DTYPES[m[2]] : undefined;
  if (!m || !known)
    bad('dtype', `dtype ${JSON.stringify(h.descr)} is not one of float32, float16, int64, int32, uint8, int8, bool`, {
      descr: h.descr,
      // a plain number type (float64, uint16, complex64…): a valid file of a dtype no input declares
      numeric: /^[<>][fiuc][0-9]+$/.test(h.descr),
    });
  const [type, size] = known;
  // '|' is for single-byte types only; '=' is native order, and NumPy writes it only for those too.
  if ((m[1] === '|' || m[1] === '=') && size !== 1)
    bad('dtype', `dtype ${JSON.stringify(h.descr)} has no byte order`, { descr: h.descr });
  if (h.shape.length > MAX_DIMS) bad('shape', `${h.shape.length} dimensions (at most ${MAX_DIMS})`);
  let count = 1;
  for (const d of h.shape) {
    count *= d;
    if (!Number.isSafeInteger(count * size)) bad('shape', 'the shape is too large', { shape: h.shape });
  }
  const body = buf.subarray(start);
  if (body.length !== count * size)
    bad('size', `data is ${body.length} bytes, shape × itemsize is ${count * size}`, {
      expected: count * size,
      actual: body.length,
      shape: h.shape,
      descr: h.descr,
    });
  // a copy: aligned for the typed array, and ours to swap; NumPy writes a transposed or
  // np.asfortranarray array column-major (fortran_order True): read into row-major order
  const data = h.fortran && h.shape.length > 1 ? toRowMajor(body, h.shape, size) : new Uint8Array(body);
  if (m[1] === '>' && size > 1) swap(data, size);
  if (type === 'bool' && data.some((b) => b > 1)) bad('dtype', 'a bool element is neither 0 nor 1');
  return { type, dims: h.shape, data: typed(type, data.buffer) };
}

/** Column-major elements of `size` bytes, in row-major order: element (i0, …, in-1) sits at Σ ik·(d0·…·dk-1). */
function toRowMajor(body: Uint8Array, shape: readonly number[], size: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(body.length);
  const n = shape.length;
  const stride = new Array<number>(n);
  for (let k = 0, s = size; k < n; k++) {
    stride[k] = s;
    s *= shape[k];
  }
  const idx = new Array<number>(n).fill(0);
  const last = n - 1;
  // the last index moves fastest in row-major order: copy along it, carry into the others
  for (let o = 0, from = 0; o < out.length; ) {
    for (let j = 0; j < shape[last]; j++, o += size, from += stride[last]) out.set(body.subarray(from, from + size), o);
    from -= stride[last] * shape[last];
    let k = last - 1;
    for (; k >= 0; k--) {
      idx[k]++;
      from += stride[k];
      if (idx[k] < shape[k]) break;
      from -= stride[k] * shape[k];
      idx[k] = 0;
    }
    if (k < 0) break;
  }
  return out;
}

function typed(type: DType, b: ArrayBuffer): Tensor['data'] {
  switch (type) {
    case 'float32':
      return new Float32Array(b);
    case 'float16':
      return new Uint16Array(b);
    case 'int64':
      return new BigInt64Array(b);
    case 'int32':
      return new Int32Array(b);
    case 'int8':
      return new Int8Array(b);
    default:
      return new Uint8Array(b);
  }
}
