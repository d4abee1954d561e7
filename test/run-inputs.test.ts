/**
 * `xpkg run` as a process for every example package, inputs read per their declared type
 * (runner/inputs/load.ts), and `--json` outputs with typed arrays as JSON arrays or base64
 * (runner/outputs-json.ts), checked against the library's own result.
 */
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkTensor as checkBackendTensor } from '../runner/backends/ort-tensor.js';
import { inputFromBytes, loadInputFile } from '../runner/inputs/load.js';
import { JSON_ARRAY_MAX, JSON_BYTES_MAX, outputsToJson, typedToJson } from '../runner/outputs-json.js';
import { Runner } from '../runner/runner.js';
import type { Tensor } from '../runner/types.js';
import { EXIT } from '../spec/errors.js';
import type { IoSpec } from '../spec/schema.js';
import { xpkgAsync } from './helpers/cli.js';
import { codeOf } from './helpers/errors.js';
import { npyFile } from './helpers/npy.js';

const TRUST = ['--trust', 'fixtures/keys/test.pub'];
const dist = (p: string) => `fixtures/dist/${p}.xpkg`;
let dir: string;

/** The values of a `--json` typed array: a JSON array, or base64 decoded per its dtype. */
function values(a: unknown, dtype: string): number[] {
  if (Array.isArray(a)) return a as number[];
  const b = a as { dtype: string; shape: number[]; encoding: string; data: string };
  expect(b.encoding).toBe('base64');
  expect(b.dtype).toBe(dtype);
  const bytes = Buffer.from(b.data, 'base64');
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const arr = dtype === 'float32' ? new Float32Array(ab) : dtype === 'int32' ? new Int32Array(ab) : new Uint8Array(ab);
  expect(arr.length).toBe(b.shape.reduce((p, d) => p * d, 1));
  return Array.from(arr);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'xpkg-inputs-'));
});

describe('xpkg run --json for every example package', async () => {
  it('paddleocr-v4: text lines with quads', async () => {
    const r = await xpkgAsync(['run', dist('paddleocr-v4'), ...TRUST, '-i', 'fixtures/images/example.png', '--json']);
    expect(r.status).toBe(0);
    const lines = r.lines[0].result.outputs.lines as { text: string; score: number; box: number[][] }[];
    expect(lines[0].text).toBe('The quick brown fox jumps over the lazy dog near the river bank.');
    for (const l of lines) expect(l.box.map((p) => p.length)).toEqual([2, 2, 2, 2]);
  });

  it('ocr-script: the scripted lines and the CSV report', async () => {
    const r = await xpkgAsync(['run', dist('ocr-script'), ...TRUST, '-i', 'fixtures/images/example.png', '--json']);
    expect(r.status).toBe(0);
    const { lines, report } = r.lines[0].result.outputs;
    expect(lines[0].text).toBe('The quick brown fox jumps over the lazy dog near the river bank.');
    expect(typeof report).toBe('string');
    expect(report).toContain('The quick brown fox');
  });

  it('detector: boxes with labels, the same as the library', async () => {
    const img = 'fixtures/detector/eval/001.png';
    const r = await xpkgAsync(['run', dist('detector'), ...TRUST, '-i', img, '--json']);
    expect(r.status).toBe(0);
    await using runner = await Runner.open(dist('detector'), { trust: ['fixtures/keys/test.pub'] });
    const lib = await runner.run({ image: img });
    expect(r.lines[0].result.outputs).toEqual(JSON.parse(JSON.stringify(lib.outputs)));
    expect(r.lines[0].result.outputs.boxes.length).toBeGreaterThan(0);
    for (const b of r.lines[0].result.outputs.boxes)
      expect(['circle', 'square', 'triangle', 'star']).toContain(b.label);
  });

  it('segmenter: the 256×256 mask as base64 uint8 with its shape, equal to the library mask', async () => {
    const img = 'fixtures/segmenter/eval/000.png';
    const r = await xpkgAsync(['run', dist('segmenter'), ...TRUST, '-i', img, '--json']);
    expect(r.status).toBe(0);
    expect(r.stdout.length).toBeLessThan(120_000); // was 644 KB of {"0": …} before
    const mask = r.lines[0].result.outputs.mask;
    expect([mask.width, mask.height]).toEqual([256, 256]);
    expect(mask.data.shape).toEqual([256, 256]);
    await using runner = await Runner.open(dist('segmenter'), { trust: ['fixtures/keys/test.pub'] });
    const lib = (await runner.run({ image: img })).outputs.mask as { data: Int32Array };
    const got = values(mask.data, 'uint8');
    expect(got).toEqual(Array.from(lib.data));
    expect(new Set(got).size).toBeGreaterThan(1);
  });

  it('multi-variant: a tensor from a .npy file, y = x + 1 as a JSON array with its dtype and dims', async () => {
    const f = join(dir, 'x.npy');
    writeFileSync(f, npyFile([0.5, -2, 7, 100], [4]));
    const r = await xpkgAsync(['run', dist('multi-variant'), ...TRUST, '--variant', 'cpu-fp32', '-i', f, '--json']);
    expect(r.status).toBe(0);
    expect(r.lines[0].result.outputs.y).toEqual({ type: 'float32', dims: [4], data: [1.5, -1, 8, 101] });
  });

  it('multi-variant: a big-endian .npy and a raw little-endian file give the same result', async () => {
    const be = join(dir, 'be.npy');
    writeFileSync(be, npyFile([1, 2, 3], [3], { descr: '>f4' }));
    const raw = join(dir, 'x.f32');
    writeFileSync(raw, Buffer.from(new Float32Array([1, 2, 3]).buffer));
    for (const f of [be, raw]) {
      const r = await xpkgAsync([
        'run',
        dist('multi-variant'),
        ...TRUST,
        '--variant',
        'cpu-fp32',
        '-i',
        `x=${f}`,
        '--json',
      ]);
      expect(r.status).toBe(0);
      expect(r.lines[0].result.outputs.y).toEqual({ type: 'float32', dims: [3], data: [2, 3, 4] });
    }
  });

  it(`multi-variant: a tensor of more than ${JSON_ARRAY_MAX} values comes back as base64 float32`, async () => {
    const n = JSON_ARRAY_MAX + 1;
    const x = Array.from({ length: n }, (_, i) => i / 8);
    const f = join(dir, 'big.npy');
    writeFileSync(f, npyFile(x, [n]));
    const r = await xpkgAsync(['run', dist('multi-variant'), ...TRUST, '--variant', 'cpu-fp32', '-i', f, '--json']);
    expect(r.status).toBe(0);
    const y = r.lines[0].result.outputs.y;
    expect(y.dims).toEqual([n]);
    expect(y.data.shape).toEqual([n]);
    expect(values(y.data, 'float32')).toEqual(x.map((v) => v + 1));
  });

  it('multi-variant: a .npy of the wrong dtype, a malformed one, and a raw file of a partial value are refused with codes', async () => {
    const wrong = join(dir, 'i4.npy');
    writeFileSync(wrong, npyFile([1, 2], [2], { descr: '<i4' }));
    const broken = join(dir, 'broken.npy');
    writeFileSync(broken, npyFile([1, 2], [2]).subarray(0, 100));
    const partial = join(dir, 'partial.f32');
    writeFileSync(partial, Buffer.alloc(6));
    const cases: [string, string][] = [
      [wrong, 'E_RUN_INPUT'],
      [broken, 'E_RUN_INPUT_FORMAT'],
      [partial, 'E_RUN_INPUT_FORMAT'],
    ];
    for (const [f, code] of cases) {
      const r = await xpkgAsync(['run', dist('multi-variant'), ...TRUST, '-i', f, '--json']);
      expect([r.lines[0].error?.code, r.status]).toEqual([code, EXIT.runner]);
    }
  });
});

describe('input files of the other declared types (runner/inputs/load.ts)', () => {
  const spec = (type: string, extra: Partial<IoSpec> = {}) => ({ name: 'v', type, ...extra }) as IoSpec;
  it('text: strict UTF-8, a BOM dropped; invalid UTF-8 → E_RUN_INPUT_FORMAT', async () => {
    expect(await inputFromBytes(spec('text'), Buffer.from('\ufeffhé\n'), 'a.txt')).toBe('hé\n');
    expect(await codeOf(inputFromBytes(spec('text'), Buffer.from([0x61, 0xc3, 0x28]), 'a.txt'))).toBe(
      'E_RUN_INPUT_FORMAT',
    );
  });
  it('json: parsed; not JSON → E_RUN_INPUT_FORMAT', async () => {
    expect(await inputFromBytes(spec('json'), Buffer.from('{"a": [1, 2]}'), 'a.json')).toEqual({ a: [1, 2] });
    expect(await codeOf(inputFromBytes(spec('json'), Buffer.from('{"a": '), 'a.json'))).toBe('E_RUN_INPUT_FORMAT');
  });
  it('mask: a 2-D integer .npy becomes {width, height, data}', async () => {
    const { readFileSync } = await import('node:fs');
    expect(await inputFromBytes(spec('mask'), readFileSync('test/data/npy/mask-u1.npy'), 'm.npy')).toEqual({
      width: 2,
      height: 2,
      data: new Int32Array([0, 1, 2, 0]),
    });
  });
  it('image: a file of no image format → E_RUN_INPUT_FORMAT; an empty one too', async () => {
    expect(await codeOf(inputFromBytes(spec('image'), Buffer.from('hello'), 'a.png'))).toBe('E_RUN_INPUT_FORMAT');
    expect(await codeOf(inputFromBytes(spec('image'), Buffer.alloc(0), 'a.png'))).toBe('E_RUN_INPUT_FORMAT');
  });
  it("image: one above sharp's own pixel limit (268 MP) is an image, refused later by the --max-pixels budget", async () => {
    const { deflateSync, crc32 } = await import('node:zlib');
    const chunk = (type: string, d: Buffer) => {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(d.length);
      const crc = Buffer.alloc(4);
      crc.writeUInt32BE(crc32(Buffer.concat([Buffer.from(type), d])));
      return Buffer.concat([len, Buffer.from(type), d, crc]);
    };
    const side = 16_400; // 269 MP, 1-bit grey: a 33 MB bitmap that deflates to 33 KB
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(side, 0);
    ihdr.writeUInt32BE(side, 4);
    ihdr.set([1, 0, 0, 0, 0], 8);
    const png = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', ihdr),
      chunk('IDAT', deflateSync(Buffer.alloc((Math.ceil(side / 8) + 1) * side))),
      chunk('IEND', Buffer.alloc(0)),
    ]);
    expect(await inputFromBytes(spec('image'), png, 'big.png')).toBe(png);
    const { decodeHere } = await import('../runner/pipeline/decode-sharp.js');
    const err = await decodeHere(png, 3, [255], { maxPixels: 100_000_000, maxTensorBytes: 2 ** 30 }).catch((e) => e);
    expect([err.code, err.detail.limit]).toEqual(['E_RUN_INPUT', 'maxPixels']);
  });
  it('raw tensor: the declared shape with one unknown dimension inferred; two unknowns → E_RUN_INPUT', async () => {
    const bytes = Buffer.from(new Int32Array([1, 2, 3, 4, 5, 6]).buffer);
    expect(await inputFromBytes(spec('tensor', { dtype: 'int32', shape: [-1, 3] }), bytes, 'a.bin')).toEqual({
      type: 'int32',
      dims: [2, 3],
      data: new Int32Array([1, 2, 3, 4, 5, 6]),
    });
    expect(await codeOf(inputFromBytes(spec('tensor', { dtype: 'int32', shape: [4, 'N'] }), bytes, 'a.bin'))).toBe(
      'E_RUN_INPUT_FORMAT',
    );
    expect(await codeOf(inputFromBytes(spec('tensor', { dtype: 'int32', shape: ['N', 'M'] }), bytes, 'a.bin'))).toBe(
      'E_RUN_INPUT',
    );
    expect(await codeOf(inputFromBytes(spec('tensor', { shape: [6] }), bytes, 'a.bin'))).toBe('E_RUN_INPUT');
  });
  it('raw tensor: int8 is read as signed values the backend takes; a bool byte above 1 → E_RUN_INPUT_FORMAT', async () => {
    const t = (await inputFromBytes(
      spec('tensor', { dtype: 'int8', shape: ['N'] }),
      Buffer.from([0xff, 0x80, 0x7f]),
      'a.bin',
    )) as Tensor;
    expect(t.data).toBeInstanceOf(Int8Array);
    expect(Array.from(t.data as Int8Array)).toEqual([-1, -128, 127]);
    expect(() => checkBackendTensor('v', t)).not.toThrow();
    const bool = spec('tensor', { dtype: 'bool', shape: ['N'] });
    expect(((await inputFromBytes(bool, Buffer.from([0, 1]), 'a.bin')) as Tensor).data).toEqual(new Uint8Array([0, 1]));
    expect(await codeOf(inputFromBytes(bool, Buffer.from([0, 2]), 'a.bin'))).toBe('E_RUN_INPUT_FORMAT');
  });
  it('a file over 2 GiB (more than Node reads at once) → E_RUN_INPUT, not an internal error', async () => {
    const big = join(dir, 'big.bin');
    writeFileSync(big, '');
    truncateSync(big, 2 ** 31 + 4); // sparse: nothing is written or read
    expect(await codeOf(loadInputFile(spec('tensor', { dtype: 'float32', shape: ['N'] }), big))).toBe('E_RUN_INPUT');
    rmSync(big);
  });
  it('a valid .npy of a dtype no input takes (float64, uint16) → E_RUN_INPUT; an object (pickle) one → E_RUN_INPUT_FORMAT', async () => {
    const { readFileSync } = await import('node:fs');
    const f32 = spec('tensor', { dtype: 'float32', shape: ['N', 'M'] });
    expect(await codeOf(inputFromBytes(f32, readFileSync('test/data/npy/f8-v1.npy'), 'a.npy'))).toBe('E_RUN_INPUT');
    const u2 = npyFile([1, 2], [2]);
    u2.write("'<u2'", u2.indexOf("'<f4'"), 'latin1');
    expect(await codeOf(inputFromBytes(f32, u2.subarray(0, u2.length - 4), 'a.npy'))).toBe('E_RUN_INPUT');
    const obj = npyFile([1, 2], [2]);
    obj.write("'|O' ", obj.indexOf("'<f4'"), 'latin1');
    expect(await codeOf(inputFromBytes(f32, obj, 'a.npy'))).toBe('E_RUN_INPUT_FORMAT');
  });
  it('a .npy file under another name is read as a .npy (by its magic), not as raw values', async () => {
    const f = npyFile([1, 2, 3], [3]);
    const t = (await inputFromBytes(spec('tensor', { dtype: 'float32', shape: ['N'] }), f, 'x.data')) as Tensor;
    expect([t.dims, Array.from(t.data as Float32Array)]).toEqual([[3], [1, 2, 3]]);
  });
  it('a .npz archive (np.savez) is refused with E_RUN_INPUT_FORMAT, not read as raw values', async () => {
    const zip = Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(60)]);
    const x = spec('tensor', { dtype: 'float32', shape: ['N'] });
    expect(await codeOf(inputFromBytes(x, zip, 'x.npz'))).toBe('E_RUN_INPUT_FORMAT');
  });
  it.skipIf(process.platform === 'win32')(
    'a device (/dev/zero, which never ends) → E_RUN_INPUT_FORMAT at once; a pipe is read to its end',
    async () => {
      const x = spec('tensor', { dtype: 'float32', shape: ['N'] });
      expect(await codeOf(loadInputFile(x, '/dev/zero'))).toBe('E_RUN_INPUT_FORMAT');
      const { execFileSync } = await import('node:child_process');
      const fifo = join(dir, 'in.fifo');
      execFileSync('mkfifo', [fifo]);
      const { createWriteStream } = await import('node:fs');
      createWriteStream(fifo).end(npyFile([1, 2, 3], [3]));
      const t = (await loadInputFile(x, fifo)) as Tensor;
      expect(Array.from(t.data as Float32Array)).toEqual([1, 2, 3]);
    },
  );
  it('a .npy must fit the declared shape, named dimensions agreeing', async () => {
    const f = npyFile([1, 2, 3, 4, 5, 6], [2, 3]);
    expect(await codeOf(inputFromBytes(spec('tensor', { dtype: 'float32', shape: ['N', 'N'] }), f, 'a.npy'))).toBe(
      'E_RUN_INPUT',
    );
    expect(await codeOf(inputFromBytes(spec('tensor', { dtype: 'float32', shape: [2] }), f, 'a.npy'))).toBe(
      'E_RUN_INPUT',
    );
    expect(
      ((await inputFromBytes(spec('tensor', { dtype: 'float32', shape: ['N', 3] }), f, 'a.npy')) as { dims: number[] })
        .dims,
    ).toEqual([2, 3]);
  });
});

describe('typed arrays in JSON (runner/outputs-json.ts)', () => {
  it(`an array of ${JSON_ARRAY_MAX} values is a JSON array; one more is base64 with dtype and shape`, () => {
    expect(typedToJson(new Int32Array(JSON_ARRAY_MAX).fill(-3))).toEqual(new Array(JSON_ARRAY_MAX).fill(-3));
    const b = typedToJson(new Int32Array(JSON_ARRAY_MAX + 1).fill(-3), [JSON_ARRAY_MAX + 1]) as {
      dtype: string;
      shape: number[];
      data: string;
    };
    expect([b.dtype, b.shape]).toEqual(['int32', [JSON_ARRAY_MAX + 1]]);
    expect(Buffer.from(b.data, 'base64').readInt32LE(4 * JSON_ARRAY_MAX)).toBe(-3);
  });
  it('float16 prints as numbers, int64 as numbers when safe and base64 when not, tensors keep their dtype', () => {
    expect(outputsToJson({ t: { type: 'float16', dims: [2], data: new Uint16Array([0x3c00, 0xc000]) } })).toEqual({
      t: { type: 'float16', dims: [2], data: [1, -2] },
    });
    expect(outputsToJson({ t: { type: 'int64', dims: [1], data: new BigInt64Array([5n]) } })).toEqual({
      t: { type: 'int64', dims: [1], data: [5] },
    });
    const big = outputsToJson({ t: { type: 'int64', dims: [1], data: new BigInt64Array([2n ** 60n]) } }) as {
      t: { data: { dtype: string; shape: number[] } };
    };
    expect([big.t.data.dtype, big.t.data.shape]).toEqual(['int64', [1]]);
    const bool = outputsToJson({ t: { type: 'bool', dims: [5000], data: new Uint8Array(5000) } }) as {
      t: { data: { dtype: string } };
    };
    expect(bool.t.data.dtype).toBe('bool');
  });
  it('a float array holding NaN or ±Infinity (which JSON cannot write) is base64, its values intact', () => {
    const f32 = new Float32Array([1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]);
    const b = typedToJson(f32, [4], 'float32') as { dtype: string; shape: number[]; data: string };
    expect([b.dtype, b.shape]).toEqual(['float32', [4]]);
    const back = Buffer.from(b.data, 'base64');
    expect(Array.from(new Float32Array(back.buffer, back.byteOffset, 4))).toEqual(Array.from(f32));
    const half = outputsToJson({ t: { type: 'float16', dims: [2], data: new Uint16Array([0x3c00, 0x7e00]) } }) as {
      t: { data: { dtype: string } };
    };
    expect(half.t.data.dtype).toBe('float16');
    expect(typedToJson(new Float32Array([1, -0.5]))).toEqual([1, -0.5]);
  });
  it('an array whose base64 would not fit one string → E_RUN_BUDGET, not an internal error', () => {
    const big = new Uint8Array(JSON_BYTES_MAX + 1); // zero pages: not touched before the check
    let code: string | undefined;
    try {
      outputsToJson({ t: { type: 'uint8', dims: [big.length], data: big } });
    } catch (e) {
      code = (e as { code?: string }).code;
    }
    expect(code).toBe('E_RUN_BUDGET');
  });
  it('a small mask is a JSON array; a big one with a label over 255 stays int32', () => {
    expect(outputsToJson({ m: { width: 2, height: 1, data: new Int32Array([0, 3]) } })).toEqual({
      m: { width: 2, height: 1, data: [0, 3] },
    });
    const data = new Int32Array(100 * 100);
    data[5] = 300;
    const m = outputsToJson({ m: { width: 100, height: 100, data } }) as {
      m: { data: { dtype: string; shape: number[] } };
    };
    expect([m.m.data.dtype, m.m.data.shape]).toEqual(['int32', [100, 100]]);
  });
});
