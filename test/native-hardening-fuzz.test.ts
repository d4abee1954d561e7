/**
 * Issue 10, defect 8: the addon re-checks every raw option itself (the raw API bypasses the
 * TypeScript checks). Hostile option objects (NaN, ±Infinity, 2^31, 2^53, -1, fractions, huge
 * strides, ROI and size products that overflow int32 or int64, tiny or detached arrays, wrong
 * types) go to every raw kernel, sync and async; each must return normally or fail with a coded
 * NativeError, never crash. Deterministic (fixtures/random.ts). Run it under ASan with
 * `npm run test:asan -- test/native-hardening-fuzz.test.ts`.
 */
import { describe, expect, it } from 'vitest';
import { rng } from '../fixtures/random.js';
import type { Kernels } from '../native/index.js';
import * as native from '../native/index.js';
import { NativeError } from '../spec/errors.js';
import { nativeExpected } from './native-helpers.js';

const HOSTILE = [
  NaN,
  Infinity,
  -Infinity,
  -1,
  -(2 ** 31),
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32,
  2 ** 32 + 1,
  2 ** 53,
  2 ** 62,
  1e308,
  -1e308,
  0.5,
  -0.5,
  0,
  1,
  3,
  65537,
];

const chan = () => new Int32Array([0, 1, 2]);
const norm = () => new Float64Array([1, 1, 1, 0, 0, 0, 0, 0, 0]);
const image = () => ({ data: new Uint8Array(8 * 6 * 3), width: 8, height: 6, channels: 3, stride: 24 });

/** A valid raw call per kernel (each runs as is), its numeric fields, and its array fields. */
const BASE: { [K in keyof Kernels]: () => Record<string, unknown> } = {
  preprocess: () => ({
    ...image(),
    out: new Float32Array(3 * 4 * 4),
    outOffset: 0,
    nhwc: false,
    outChannels: 3,
    chanMap: chan(),
    norm: norm(),
    planeWidth: 4,
    planeHeight: 4,
    roiX: 0,
    roiY: 0,
    roiWidth: 4,
    roiHeight: 3,
    interp: 2,
    threads: 2,
  }),
  cropBatch: () => ({
    ...image(),
    out: new Float32Array(2 * 3 * 4 * 5),
    outOffset: 0,
    nhwc: true,
    outChannels: 3,
    chanMap: chan(),
    norm: norm(),
    count: 2,
    outWidth: 5,
    outHeight: 4,
    homographies: new Float64Array([1, 0, 0, 0, 1, 0, 0, 0, 1, 0.5, 0, 1, 0, 0.5, 1, 0, 0, 1]),
    widths: new Int32Array([5, 3]),
    samples: new Int32Array([1, 2]),
    threads: 2,
  }),
  nms: () => ({
    boxes: new Float32Array([0, 0, 10, 10, 1, 1, 11, 11, 20, 20, 30, 30, 0, 0, 5, 5]),
    scores: new Float32Array([0.9, 0.8, 0.7, 0.6]),
    classes: new Int32Array([0, 0, 1, 1]),
    n: 2,
    batch: 2,
    iouThreshold: 0.5,
    scoreThreshold: 0.1,
    preTopK: -1,
    maxOutput: -1,
    threads: 2,
  }),
  decodeDetections: () => ({
    data: new Float32Array(2 * 6 * 7).map((_, i) => (i % 7) / 7),
    batch: 2,
    anchors: 6,
    attrs: 7,
    attrsFirst: false,
    objectness: true,
    xyxy: false,
    sigmoid: true,
    grid: new Float32Array(30).fill(1),
    scoreThreshold: 0.1,
    padX: 1,
    padY: 2,
    scaleX: 0.5,
    scaleY: 0.5,
    clipWidth: 100,
    clipHeight: 100,
    agnostic: false,
    iouThreshold: 0.45,
    preTopK: -1,
    maxOutput: 300,
    threads: 2,
  }),
  segmentArgmax: () => ({
    data: new Float32Array(2 * 3 * 4 * 5).map((_, i) => Math.sin(i)),
    batch: 2,
    classes: 3,
    height: 4,
    width: 5,
    nhwc: false,
    softmax: true,
    labels: new Uint8Array(40),
    scores: new Float32Array(40),
    threads: 2,
  }),
  softmaxTopK: () => ({
    data: new Float32Array(3 * 10).map((_, i) => Math.cos(i)),
    rows: 3,
    classes: 10,
    k: 4,
    softmax: true,
    indices: new Int32Array(12),
    values: new Float32Array(12),
    threads: 2,
  }),
  ctcGreedy: () => ({
    data: new Float32Array(2 * 7 * 5).map((_, i) => (i * 7) % 5),
    batch: 2,
    steps: 7,
    classes: 5,
    lengths: new Int32Array([7, 3]),
    blank: 0,
    mergeRepeats: true,
    softmax: false,
    threads: 2,
  }),
  dbPostprocess: () => {
    const prob = new Float32Array(40 * 30);
    for (let y = 5; y < 15; y++) for (let x = 4; x < 30; x++) prob[y * 40 + x] = 0.9;
    return {
      prob,
      width: 40,
      height: 30,
      threshold: 0.3,
      boxThreshold: 0.6,
      unclipRatio: 1.5,
      minSize: 3,
      maxCandidates: 1000,
      dilate: true,
      scaleX: 2,
      scaleY: 2,
      clipWidth: 80,
      clipHeight: 60,
      threads: 2,
    };
  },
};
const KERNELS = Object.keys(BASE) as (keyof Kernels)[];

/** Replacement arrays: empty, one element, the wrong type, detached, a view into a larger buffer. */
function hostileArrays(v: ArrayBufferView & { length: number }): unknown[] {
  const Ctor = v.constructor as new (n: number | ArrayBuffer, o?: number, l?: number) => ArrayBufferView;
  const detached = new (Ctor as new (n: number) => ArrayBufferView)(v.length);
  structuredClone(detached.buffer, { transfer: [detached.buffer as ArrayBuffer] });
  const big = new ArrayBuffer((v.length + 8) * (v as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT);
  return [
    new Ctor(0),
    new Ctor(1),
    new Ctor(Math.max(0, v.length - 1)),
    detached,
    new Ctor(big, 8 * (v as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT, Math.max(0, v.length - 2)),
    new Float64Array(v.length),
    [1, 2, 3],
    null,
    7,
  ];
}

/** Calls one raw kernel; returns 'ok' or the error's code (anything but a NativeError fails the test). */
async function attempt(kernel: keyof Kernels, raw: Record<string, unknown>, async: boolean): Promise<string> {
  try {
    if (async) await native.runRaw(kernel, raw as never);
    else native.runRawSync(kernel, raw as never);
    return 'ok';
  } catch (e) {
    expect(e).toBeInstanceOf(NativeError);
    return (e as NativeError).code;
  }
}

describe.skipIf(!nativeExpected)('raw options fuzz: every kernel, hostile numbers and arrays', () => {
  native.setNativeBackend('native');

  it('the base call of every kernel runs', async () => {
    for (const k of KERNELS) expect([k, await attempt(k, BASE[k](), false)]).toEqual([k, 'ok']);
  });

  it('each numeric field set to each hostile value: ok or a coded error, sync and async', async () => {
    const codes = new Set<string>();
    for (const k of KERNELS) {
      const fields = Object.entries(BASE[k]())
        .filter(([, v]) => typeof v === 'number')
        .map(([f]) => f);
      for (const f of fields)
        for (const v of HOSTILE)
          for (const async of [false, true]) {
            const code = await attempt(k, { ...BASE[k](), [f]: v }, async);
            codes.add(code);
            // Non-integral or non-finite sizes are never accepted.
            if (
              [
                'width',
                'height',
                'n',
                'batch',
                'count',
                'rows',
                'classes',
                'stride',
                'outOffset',
                'anchors',
                'attrs',
                'steps',
              ].includes(f) &&
              !Number.isInteger(v)
            )
              expect([k, f, v, code]).toEqual([k, f, v, 'E_NATIVE_KERNEL']);
          }
    }
    expect([...codes].sort()).toEqual(['E_NATIVE_KERNEL', 'ok']);
  });

  it('each array field replaced by a hostile one: ok or a coded error', async () => {
    for (const k of KERNELS) {
      const base = BASE[k]();
      for (const [f, v] of Object.entries(base)) {
        if (!ArrayBuffer.isView(v)) continue;
        for (const bad of hostileArrays(v as never))
          for (const async of [false, true])
            expect(['ok', 'E_NATIVE_KERNEL', 'E_NATIVE_ARGUMENT']).toContain(
              await attempt(k, { ...BASE[k](), [f]: bad }, async),
            );
      }
    }
  });

  it('overflowing products and regions: refused, never read out of bounds', async () => {
    const big = 2 ** 31 - 1;
    const cases: [keyof Kernels, Record<string, unknown>][] = [
      ['preprocess', { roiX: big - 1, roiWidth: 4 }], // roiX + roiWidth wraps in int32
      ['preprocess', { planeWidth: 65536, planeHeight: 65536, roiWidth: 4, roiHeight: 3 }],
      ['preprocess', { height: 2 ** 20, stride: 2 ** 50 }], // (h - 1) * stride overflows int64
      ['preprocess', { stride: 2 ** 53 }],
      ['preprocess', { outOffset: 2 ** 53 - 1 }],
      ['cropBatch', { count: big, outWidth: big, outHeight: big }],
      ['nms', { batch: big, n: big }], // batch * n * 4 wraps to 0 in uint64
      ['nms', { batch: 2 ** 30, n: 2 ** 32 / 2 ** 30 }],
      ['decodeDetections', { batch: big, anchors: big, attrs: 8 }],
      ['decodeDetections', { grid: new Float32Array(5), anchors: 2 ** 31 - 1 }],
      ['segmentArgmax', { batch: big, height: big, width: 2 }],
      ['softmaxTopK', { rows: big, k: 4 }],
      ['softmaxTopK', { k: 11 }],
      ['ctcGreedy', { batch: big, steps: big }],
      ['dbPostprocess', { width: 65536, height: 65536 }],
    ];
    for (const [k, patch] of cases)
      for (const async of [false, true])
        expect([k, patch, await attempt(k, { ...BASE[k](), ...patch }, async)]).toEqual([k, patch, 'E_NATIVE_KERNEL']);
  });

  it('seeded random multi-field mutations: ok or a coded error', async () => {
    const r = rng(1010);
    const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)];
    for (let i = 0; i < 3000; i++) {
      const k = pick(KERNELS);
      const raw = BASE[k]();
      const fields = Object.keys(raw);
      for (let m = 1 + Math.floor(r() * 3); m > 0; m--) {
        const f = pick(fields),
          v = raw[f];
        raw[f] = ArrayBuffer.isView(v)
          ? pick(hostileArrays(v as never))
          : typeof v === 'number'
            ? pick(HOSTILE)
            : pick([true, false, 'x', undefined, {}]);
      }
      expect(['ok', 'E_NATIVE_KERNEL', 'E_NATIVE_ARGUMENT']).toContain(await attempt(k, raw, r() < 0.3));
    }
  });
});
