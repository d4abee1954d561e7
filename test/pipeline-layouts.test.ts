/**
 * Input layouts users package and we never see: NHWC / NCHW, BGR, uint8 / float16 inputs, grey
 * models, 0-255 or 0-1 normalisation, letterbox and EXIF-rotated inputs (boxes mapped back into the
 * upright image); outputs are in pipeline-layouts-post.test.ts. Each runs a real tiny ONNX model (fixtures/onnx-tiny.ts: an Identity or Cast that echoes
 * what the pipeline fed it) on images made by sharp, against values computed here by hand, on both
 * the native and the portable kernels.
 */
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { setNativeBackend } from '../native/index.js';
import { type DetectedBox, runPipeline } from '../runner/pipeline/index.js';
import type { Tensor } from '../runner/types.js';
import type { Step } from '../spec/schema.js';
import {
  asFloats,
  BACKENDS,
  close,
  detSteps,
  echo,
  IH,
  IW,
  P,
  pkg,
  png,
  pre,
  useLayoutPackages,
} from './helpers/layouts.js';

useLayoutPackages();

describe('input layouts: what the model is fed', () => {
  // 16×8 into a 16×16 letterbox: scale 1 (no resampling), 4 rows of padding above and below.
  const W = 16,
    H = 8,
    S = 16,
    PAD = 4;
  const mean = [0.485, 0.456, 0.406],
    std = [0.229, 0.224, 0.225];

  /** The expected tensor, from the decoded pixels by hand: [k, y, x] → value. */
  function expected(
    rgb: Uint8Array,
    o: { nhwc: boolean; bgr: boolean; f: (v: number, k: number) => number; pad: number },
  ): number[] {
    const out = new Array(S * S * 3);
    for (let y = 0; y < S; y++)
      for (let x = 0; x < S; x++)
        for (let k = 0; k < 3; k++) {
          const src = o.bgr ? 2 - k : k;
          const iy = y - PAD;
          const v = iy >= 0 && iy < H ? rgb[(iy * W + x) * 3 + src] : o.pad;
          out[o.nhwc ? (y * S + x) * 3 + k : (k * S + y) * S + x] = o.f(v, k);
        }
    return out;
  }

  for (const backend of BACKENDS)
    for (const nhwc of [false, true])
      for (const bgr of [false, true])
        it(`${nhwc ? 'NHWC' : 'NCHW'} ${bgr ? 'BGR' : 'RGB'} float32, ImageNet mean/std (${backend})`, async () => {
          const { file, rgb } = await png(W, H);
          const shape = nhwc ? [1, S, S, 3] : [1, 3, S, S];
          const ctx = await pkg(
            echo('float32', shape),
            pre({
              mode: 'letterbox',
              width: S,
              height: S,
              mean,
              std,
              layout: nhwc ? 'nhwc' : 'nchw',
              channelOrder: bgr ? 'bgr' : 'rgb',
            }),
            [{ name: 'y', type: 'tensor' }],
          );
          setNativeBackend(backend);
          const y = (await runPipeline(ctx, { image: file })).outputs.y as Tensor;
          expect(y.dims).toEqual(shape);
          // mean/std apply per channel of the tensor (PaddleOCR's BGR convention)
          const want = expected(rgb, { nhwc, bgr, pad: 114, f: (v, k) => (v / 255 - mean[k]) / std[k] });
          asFloats(y).forEach((v, i) => expect(v).toBeCloseTo(want[i], 4));
        });

  for (const backend of BACKENDS)
    it(`mean/std in 0-255 units with scale 1 (${backend})`, async () => {
      const { file, rgb } = await png(W, H);
      const m255 = [123.675, 116.28, 103.53],
        s255 = [58.395, 57.12, 57.375];
      const ctx = await pkg(
        echo('float32', [1, 3, S, S]),
        pre({ mode: 'letterbox', width: S, height: S, scale: 1, mean: m255, std: s255 }),
        [{ name: 'y', type: 'tensor' }],
      );
      setNativeBackend(backend);
      const y = (await runPipeline(ctx, { image: file })).outputs.y as Tensor;
      const want = expected(rgb, { nhwc: false, bgr: false, pad: 114, f: (v, k) => (v - m255[k]) / s255[k] });
      asFloats(y).forEach((v, i) => expect(v).toBeCloseTo(want[i], 4));
    });

  for (const backend of BACKENDS)
    it(`uint8 NHWC BGR pixels for a model that normalises itself (${backend})`, async () => {
      const { file, rgb } = await png(W, H);
      const ctx = await pkg(
        echo('uint8', [1, S, S, 3]),
        pre({ mode: 'letterbox', width: S, height: S, dtype: 'uint8', layout: 'nhwc', channelOrder: 'bgr' }),
        [{ name: 'y', type: 'tensor' }],
      );
      setNativeBackend(backend);
      const y = (await runPipeline(ctx, { image: file })).outputs.y as Tensor;
      expect(y.type).toBe('uint8');
      expect(Array.from(y.data as Uint8Array)).toEqual(expected(rgb, { nhwc: true, bgr: true, pad: 114, f: (v) => v }));
    });

  for (const backend of BACKENDS)
    it(`float16 NCHW input, echoed back as float16 (${backend})`, async () => {
      const { file, rgb } = await png(W, H);
      const ctx = await pkg(
        echo('float16', [1, 3, S, S]),
        pre({ mode: 'letterbox', width: S, height: S, dtype: 'float16', mean: [0.5], std: [0.5] }),
        [{ name: 'y', type: 'tensor' }],
      );
      setNativeBackend(backend);
      const y = (await runPipeline(ctx, { image: file })).outputs.y as Tensor;
      expect(y.type).toBe('float16');
      const want = expected(rgb, { nhwc: false, bgr: false, pad: 114, f: (v) => (v / 255 - 0.5) / 0.5 });
      asFloats(y).forEach((v, i) => expect(Math.abs(v - want[i])).toBeLessThan(2e-3));
    });

  for (const backend of BACKENDS)
    it(`a greyscale [1, 1, H, W] model (${backend})`, async () => {
      const { file } = await png(W, H);
      const grey = new Uint8Array(await sharp(file).greyscale().raw().toBuffer());
      const ctx = await pkg(
        echo('float32', [1, 1, S, S]),
        [
          { op: 'decode-image', params: { input: 'image', output: 'g', channels: 1 } },
          { op: 'preprocess', params: { input: 'g', output: 'x', mode: 'letterbox', width: S, height: S } },
          { op: 'infer', model: 'net', params: { inputs: 'x', outputs: 'y' } },
        ],
        [{ name: 'y', type: 'tensor' }],
      );
      setNativeBackend(backend);
      const y = (await runPipeline(ctx, { image: file })).outputs.y as Tensor;
      expect(y.dims).toEqual([1, 1, S, S]);
      const v = asFloats(y);
      for (let yy = 0; yy < S; yy++)
        for (let xx = 0; xx < S; xx++) {
          const iy = yy - PAD;
          const px = iy >= 0 && iy < H ? grey[iy * W + xx] : 114;
          expect(v[yy * S + xx]).toBeCloseTo(px / 255, 5);
        }
    });
});

describe('normalisation units', () => {
  it('refuses a mean in 0-255 units at the default scale 1/255 (every value would be about -500)', async () => {
    const ctx = await pkg(
      echo('float32', [1, 3, 16, 16]),
      pre({ mode: 'fixed', width: 16, height: 16, mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375] }),
      [{ name: 'y', type: 'tensor' }],
    );
    const err = await runPipeline(ctx, { image: (await png(16, 16)).file }).catch((e) => e);
    expect(err).toMatchObject({ code: 'E_RUN_PIPELINE', detail: { step: 1 } });
    expect(err.message).toMatch(/scale 1/);
  });
  it('refuses a std in 0-1 units beside a 0-255 mean at scale 1 (and in normalize)', async () => {
    for (const op of ['preprocess', 'normalize']) {
      const params =
        op === 'preprocess'
          ? { input: 'rgb', output: 'x', mode: 'fixed', width: 16, height: 16 }
          : { input: 'rgb', output: 'x' };
      const ctx = await pkg(
        echo('float32', [1, 3, 16, 16]),
        [
          { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
          { op, params: { ...params, scale: 1, mean: [123.675, 116.28, 103.53], std: [0.229, 0.224, 0.225] } },
        ],
        [{ name: 'x', type: 'tensor' }],
      );
      const err = await runPipeline(ctx, { image: (await png(16, 16)).file }).catch((e) => e);
      expect(err).toMatchObject({ code: 'E_RUN_PIPELINE', detail: { step: 1 } });
      expect(err.message).toMatch(/std/);
    }
  });
});

describe('EXIF-rotated input (orientation 6: stored 120×60, shown 60×120)', () => {
  /** The JPEG and its stored pixels (sharp without auto-orientation). */
  async function rotatedJpeg(): Promise<{ file: Buffer; stored: Uint8Array }> {
    const { file: p } = await png(IW, IH);
    const file = await sharp(p).jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toBuffer();
    return { file, stored: new Uint8Array(await sharp(file).raw().toBuffer()) };
  }

  for (const backend of BACKENDS)
    it(`the model sees the upright image (${backend})`, async () => {
      const { file, stored } = await rotatedJpeg();
      const ctx = await pkg(
        echo('uint8', [1, IW, IH, 3]),
        pre({ mode: 'fixed', width: IH, height: IW, dtype: 'uint8', layout: 'nhwc' }),
        [{ name: 'y', type: 'tensor' }],
      );
      setNativeBackend(backend);
      const y = (await runPipeline(ctx, { image: file })).outputs.y as Tensor;
      // orientation 6 shows the stored image turned 90° clockwise: shown (u, v) = stored (v, H − 1 − u)
      const want = new Uint8Array(IW * IH * 3);
      for (let v = 0; v < IW; v++)
        for (let u = 0; u < IH; u++)
          for (let k = 0; k < 3; k++) want[(v * IH + u) * 3 + k] = stored[((IH - 1 - u) * IW + v) * 3 + k];
      expect(Buffer.from(y.data as Uint8Array).equals(Buffer.from(want))).toBe(true);
    });

  for (const op of ['detect-decode', 'nms'])
    it(`${op}: boxes come back in the upright image, clipped to 60×120`, async () => {
      const { file } = await rotatedJpeg();
      // 60×120 into 64×64: scale 64/120, 32 wide, 16 columns of padding left
      const s = P / IW,
        px = 16;
      const want = [
        [10, 20, 50, 70],
        [40, 100, 60, 120], // reaches past the bottom-right corner: clipped
      ];
      const plane = [
        [10 * s + px, 20 * s, 50 * s + px, 70 * s],
        [40 * s + px, 100 * s, 70 * s + px, 130 * s],
      ];
      const rows = plane.flatMap((b, i) => [...b, 0.9 - i / 10, 0]);
      const post: Step =
        op === 'nms'
          ? { op, params: { input: 'out', output: 'boxes', image: 'x', layout: 'box-score-class', iouThreshold: 0.5 } }
          : {
              op,
              params: {
                input: 'out',
                output: 'boxes',
                image: 'x',
                layout: 'anchors-first',
                box: 'xyxy',
                iouThreshold: 0.5,
              },
            };
      const ctx = await pkg(
        echo('float32', ['a', 'b', 'c']),
        detSteps([post]),
        [{ name: 'boxes', type: 'boxes' }],
        ['head'],
      );
      const r = await runPipeline(ctx, {
        image: file,
        // detect-decode: [1, A, 4 + 2 classes]; nms: x1 y1 x2 y2 score class
        head: { type: 'float32', dims: [1, 2, 6], data: Float32Array.from(rows) },
      });
      const boxes = r.outputs.boxes as DetectedBox[];
      expect(boxes.length).toBe(2);
      close(boxes[0].box as number[], want[0]);
      close(boxes[1].box as number[], want[1]);
    });
});
