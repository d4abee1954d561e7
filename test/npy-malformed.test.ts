/**
 * The strict .npy reader (runner/inputs/npy.ts): files written by NumPy itself (test/data/npy, made
 * by make.py there) read back exactly, in every version, byte order and accepted dtype; every
 * malformed file is refused with E_RUN_INPUT_FORMAT and its own `reason`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NPY_MAX_HEADER, type NpyProblem, parseNpy } from '../runner/inputs/npy.js';
import { RunnerError } from '../spec/errors.js';

const data = (f: string) => readFileSync(join('test/data/npy', f));

/** A v1/v2/v3 file with this header text (padded as NumPy pads) and body. */
function npy(header: string, body: Uint8Array = new Uint8Array(0), version = 1, pad = true): Buffer {
  const lenSize = version === 1 ? 2 : 4;
  let h = header;
  if (pad) {
    const total = 8 + lenSize + h.length + 1;
    h += ' '.repeat((64 - (total % 64)) % 64);
    h += '\n';
  }
  const len = Buffer.alloc(lenSize);
  if (version === 1) len.writeUInt16LE(h.length);
  else len.writeUInt32LE(h.length);
  return Buffer.concat([
    Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]),
    len,
    Buffer.from(h, 'latin1'),
    body,
  ]);
}
const f32 = (...v: number[]) => new Uint8Array(new Float32Array(v).buffer);
const header = (descr: string, shape: string, fortran = 'False') =>
  `{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': ${shape}, }`;

function refusal(bytes: Uint8Array): { code: string; reason: string } {
  try {
    parseNpy(bytes);
  } catch (e) {
    if (!(e instanceof RunnerError)) throw e;
    return { code: e.code, reason: (e.detail as { reason: string }).reason };
  }
  throw new Error('the file was accepted');
}

describe('files NumPy wrote', () => {
  it('float32, little-endian, version 1.0', () => {
    const t = parseNpy(data('f4-le-v1.npy'));
    expect(t.type).toBe('float32');
    expect(t.dims).toEqual([2, 3]);
    expect(Array.from(t.data as Float32Array)).toEqual(Array.from(new Float32Array([1.5, -2, 3.25, 0, 1e-3, -7])));
  });
  it('float32, big-endian, version 2.0: the same values', () => {
    const t = parseNpy(data('f4-be-v2.npy'));
    expect(t.dims).toEqual([2, 3]);
    expect(Array.from(t.data as Float32Array)).toEqual(Array.from(new Float32Array([1.5, -2, 3.25, 0, 1e-3, -7])));
  });
  it('int64, big-endian, version 3.0', () => {
    const t = parseNpy(data('i8-be-v3.npy'));
    expect(t.type).toBe('int64');
    expect(Array.from(t.data as BigInt64Array)).toEqual([-1n, 2n ** 40n, 3n]);
  });
  it('int32 of rank 3, float16, uint8, int8, bool', () => {
    const i4 = parseNpy(data('i4-le-v1.npy'));
    expect([i4.type, i4.dims, Array.from(i4.data as Int32Array)]).toEqual(['int32', [2, 3, 1], [-3, -2, -1, 0, 1, 2]]);
    const f2 = parseNpy(data('f2-le-v1.npy'));
    expect([f2.type, Array.from(f2.data as Uint16Array)]).toEqual(['float16', [0x3800, 0xbc00, 0x7bff]]);
    expect(Array.from(parseNpy(data('u1-v1.npy')).data as Uint8Array)).toEqual([0, 7, 255]);
    expect(Array.from(parseNpy(data('i1-v1.npy')).data as Int8Array)).toEqual([-128, 0, 127]);
    const b = parseNpy(data('b1-v1.npy'));
    expect([b.type, Array.from(b.data as Uint8Array)]).toEqual(['bool', [1, 0, 1]]);
  });
  it('a scalar (shape ()) and an empty array (shape (0, 3))', () => {
    const s = parseNpy(data('scalar-v1.npy'));
    expect([s.dims, Array.from(s.data as Float32Array)]).toEqual([[], [4]]);
    const e = parseNpy(data('empty-v1.npy'));
    expect([e.dims, e.data.length]).toEqual([[0, 3], 0]);
  });
  it('column-major (fortran_order True: a transposed array, np.asfortranarray) comes out in row-major order', () => {
    const f = parseNpy(data('fortran-v1.npy'));
    expect([f.dims, Array.from(f.data as Float32Array)]).toEqual([
      [2, 3],
      [0, 1, 2, 3, 4, 5],
    ]);
    // rank 3, big-endian: the transpose and the byte swap together
    const t = parseNpy(data('fortran-3d-be-v1.npy'));
    expect([t.type, t.dims, Array.from(t.data as Int32Array)]).toEqual([
      'int32',
      [2, 3, 4],
      Array.from({ length: 24 }, (_, i) => i),
    ]);
    // np.arange(12).reshape(3, 4).T: element (i, j) is 4j + i
    const tr = parseNpy(data('transposed-f2-v1.npy'));
    // float16 bits of a small integer: 2^e · (1 + m/1024)
    const half = (v: number) => {
      if (v === 0) return 0;
      const e = Math.floor(Math.log2(v));
      return ((e + 15) << 10) | ((v / 2 ** e - 1) * 1024);
    };
    expect(tr.dims).toEqual([4, 3]);
    expect(Array.from(tr.data as Uint16Array)).toEqual(
      Array.from({ length: 12 }, (_, k) => half(4 * (k % 3) + Math.floor(k / 3))),
    );
    // rank 1 and empty: the same bytes either way
    expect(Array.from(parseNpy(npy(header('<f4', '(2,)', 'True'), f32(1, 2))).data as Float32Array)).toEqual([1, 2]);
    expect(parseNpy(npy(header('<f4', '(3, 0)', 'True'), new Uint8Array(0))).dims).toEqual([3, 0]);
  });
  it('a header without NumPy padding is still read (NumPy reads it too)', () => {
    expect(parseNpy(npy(header('<f4', '(2,)') + '\n', f32(1, 2), 1, false)).dims).toEqual([2]);
  });
});

describe('malformed .npy files → E_RUN_INPUT_FORMAT with a reason', () => {
  const good = npy(header('<f4', '(2,)'), f32(1, 2));
  const cases: [string, Uint8Array, NpyProblem][] = [
    ['empty', new Uint8Array(0), 'magic'],
    ['not NumPy at all', Buffer.from('PK\x03\x04 this is a zip file'), 'magic'],
    ['the magic alone', good.subarray(0, 8), 'truncated'],
    ['version 4.0', Buffer.concat([good.subarray(0, 6), Buffer.from([4, 0]), good.subarray(8)]), 'version'],
    ['version 1.1', Buffer.concat([good.subarray(0, 6), Buffer.from([1, 1]), good.subarray(8)]), 'version'],
    ['ends inside the header length of v2', npy(header('<f4', '(2,)'), f32(1, 2), 2).subarray(0, 10), 'truncated'],
    ['ends inside the header', good.subarray(0, 40), 'truncated'],
    [
      'header longer than the limit',
      npy(`{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }${' '.repeat(NPY_MAX_HEADER)}`, f32(1, 2)),
      'header',
    ],
    ['header not a dict', npy("['descr', '<f4']", f32(1, 2)), 'header'],
    ['header without the newline', npy(header('<f4', '(2,)'), f32(1, 2), 1, false), 'header'],
    ['text after the dict', npy(`${header('<f4', '(2,)')} x`, f32(1, 2)), 'header'],
    ['a missing key', npy("{'descr': '<f4', 'shape': (2,), }", f32(1, 2)), 'header'],
    ['an extra key', npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': True, }", f32(1, 2)), 'header'],
    [
      'a duplicate key',
      npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", f32(1, 2)),
      'header',
    ],
    ['a non-ASCII byte in the header', npy(header('<f4', '(2,)').replace('}', ' \u00e9}'), f32(1, 2)), 'header'],
    ['an unterminated string', npy("{'descr: '<f4', 'fortran_order': False, 'shape': (2,), }", f32(1, 2)), 'header'],
    ['fortran_order not a bool', npy(header('<f4', '(2,)', '0'), f32(1, 2)), 'header'],
    ['float64 (NumPy wrote it)', data('f8-v1.npy'), 'dtype'],
    ['an object array (a pickle)', npy(header('|O', '(1,)'), new Uint8Array(8)), 'dtype'],
    [
      'a structured dtype',
      npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", f32(1, 2)),
      'dtype',
    ],
    ['a unicode string dtype', npy(header('<U3', '(1,)'), new Uint8Array(12)), 'dtype'],
    ['a multi-byte dtype without byte order', npy(header('|f4', '(2,)'), f32(1, 2)), 'dtype'],
    ['a bool that is neither 0 nor 1', npy(header('|b1', '(2,)'), new Uint8Array([1, 2])), 'dtype'],
    ['a negative dimension', npy(header('<f4', '(-2,)'), f32(1, 2)), 'shape'],
    ['a non-integer dimension', npy(header('<f4', '(2.0,)'), f32(1, 2)), 'shape'],
    ['a one-element shape without its comma', npy(header('<f4', '(2)'), f32(1, 2)), 'shape'],
    ['shape not a tuple', npy(header('<f4', '[2]'), f32(1, 2)), 'header'],
    ['more than 32 dimensions', npy(header('<f4', `(${'1, '.repeat(33)})`), f32(1)), 'shape'],
    ['a shape whose size overflows', npy(header('<f4', '(4294967296, 4294967296)'), f32(1)), 'shape'],
    ['data one element short', npy(header('<f4', '(3,)'), f32(1, 2)), 'size'],
    ['a trailing byte after the data', Buffer.concat([good, Buffer.from([0])]), 'size'],
  ];
  for (const [what, bytes, reason] of cases) {
    it(`${what} → ${reason}`, () => {
      expect(refusal(bytes)).toEqual({ code: 'E_RUN_INPUT_FORMAT', reason });
    });
  }
  it('the well-formed file those were made from is read', () => {
    expect(Array.from(parseNpy(good).data as Float32Array)).toEqual([1, 2]);
  });
});
