/**
 * Shared by test/pipeline-layouts*.test.ts: package folders of one tiny echo model, test images made
 * by sharp, and detections in the 64×64 letterbox plane of a 120×60 image.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { encodeModel, type OnnxElem } from '../../fixtures/onnx-tiny.js';
import { halfToFloat, nativeInfo, setNativeBackend } from '../../native/index.js';
import { type LocalContext, openLocalContext } from '../../runner/pipeline/index.js';
import type { Tensor } from '../../runner/types.js';
import type { Step } from '../../spec/schema.js';

let dir: string;
const contexts: LocalContext[] = [];
/** Registers the temporary folder's set-up and clean-up, and puts the kernel backend back after each test. */
export function useLayoutPackages(): void {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'xpkg-layouts-'));
  });
  afterAll(async () => {
    for (const c of contexts.splice(0)) await c.release();
    await rm(dir, { recursive: true, force: true });
  });
  afterEach(() => setNativeBackend('auto'));
}

export const BACKENDS = (nativeInfo().backend === 'native' ? ['native', 'portable'] : ['portable']) as (
  | 'native'
  | 'portable'
)[];

/** Y = X (Identity), or Y = Cast(X) to `out`: a model that shows what it was fed. */
export function echo(type: OnnxElem, shape: (number | string)[], out: OnnxElem = type): Buffer {
  const cast = out !== type;
  return encodeModel({
    name: 'echo',
    nodes: [
      cast
        ? { op: 'Cast', inputs: ['X'], outputs: ['Y'], intAttrs: { to: { float32: 1, float16: 10 }[out as 'float32'] } }
        : { op: 'Identity', inputs: ['X'], outputs: ['Y'] },
    ],
    inputs: [{ name: 'X', type, shape }],
    outputs: [{ name: 'Y', type: out, shape }],
  });
}

let seq = 0;
/** A package folder of one model `net` (the given bytes) and these steps. */
export async function pkg(
  model: Buffer,
  steps: Step[],
  outputs: { name: string; type: string }[],
  tensors: string[] = [],
): Promise<LocalContext> {
  const d = join(dir, `p${seq++}`);
  await mkdir(join(d, 'models'), { recursive: true });
  await writeFile(join(d, 'models', 'm.onnx'), model);
  const manifest = {
    name: 'layouts',
    version: '1.0.0',
    sequence: 1,
    license: 'MIT',
    task: 'test',
    inputs: [{ name: 'image', type: 'image' }, ...tensors.map((name) => ({ name, type: 'tensor' }))],
    outputs,
    models: [
      { id: 'net', variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['models/m.onnx'] }] },
    ],
    pipeline: { steps },
  };
  await writeFile(join(d, 'xpkg.json'), JSON.stringify(manifest));
  const ctx = await openLocalContext(d, { threads: 1 });
  contexts.push(ctx);
  return ctx;
}

/** A W×H RGB PNG whose pixels differ per channel and position (no two channels alike). */
export async function png(w: number, h: number): Promise<{ file: Buffer; rgb: Uint8Array }> {
  const rgb = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      rgb[i] = (x * 13 + y * 7) % 256;
      rgb[i + 1] = (x * 5 + y * 29 + 40) % 256;
      rgb[i + 2] = (255 - x * 11 - y * 3 + 512) % 256;
    }
  const file = await sharp(rgb, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toBuffer();
  return { file, rgb };
}

export const pre = (params: Record<string, unknown>): Step[] => [
  { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
  { op: 'preprocess', params: { input: 'rgb', output: 'x', ...params } },
  { op: 'infer', model: 'net', params: { inputs: 'x', outputs: 'y' } },
];

export const asFloats = (t: Tensor): number[] =>
  t.type === 'float16' ? Array.from(t.data as Uint16Array, halfToFloat) : Array.from(t.data as ArrayLike<number>);

/**
 * Detections in the 64×64 letterbox plane of a 120×60 image (scale 64/120, 16 rows of padding above):
 * boxes given in original pixels, written into the plane, expected back in original pixels.
 */
export const IW = 120,
  IH = 60,
  P = 64,
  SC = P / IW,
  PY = 16;
/** [x1, y1, x2, y2] in the original image, class, score. */
export const DETS: [number[], number, number][] = [
  [[20, 15, 40, 25], 0, 0.9],
  [[21, 15, 41, 25], 0, 0.8], // overlaps the first, same class
  [[21, 16, 41, 26], 1, 0.7], // overlaps the first, other class
  [[75, 30, 105, 50], 2, 0.6],
];
export const toPlane = ([a, b, c, d]: number[]) => [a * SC, b * SC + PY, c * SC, d * SC + PY];
export const stripes = async () => {
  const data = new Uint8Array(IW * IH * 3).fill(90);
  return sharp(data, { raw: { width: IW, height: IH, channels: 3 } })
    .png()
    .toBuffer();
};
export const close = (got: number[], want: number[]) => got.forEach((v, i) => expect(v).toBeCloseTo(want[i], 3));

/** Steps: decode, letterbox, the echo model on `head`, then `post`. */
export const detSteps = (post: Step[], preStep?: Step[]): Step[] => [
  { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
  ...(preStep ?? [
    { op: 'preprocess', params: { input: 'rgb', output: 'x', mode: 'letterbox', width: P, height: P } } as Step,
  ]),
  { op: 'infer', model: 'net', params: { inputs: 'head', outputs: 'out' } },
  ...post,
];

/** A YOLOv8 head [1, 4 + C, A] (attributes first, cxcywh in the plane) holding DETS, then `extra` empty anchors. */
export function yolo(classes = 3, extra = 0): { dims: number[]; data: Float32Array } {
  const A = DETS.length + extra,
    h = new Float32Array((4 + classes) * A);
  DETS.forEach(([b, c, s], i) => {
    const [x1, y1, x2, y2] = toPlane(b);
    [h[i], h[A + i], h[2 * A + i], h[3 * A + i]] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1];
    h[(4 + c) * A + i] = s;
  });
  return { dims: [1, 4 + classes, A], data: h };
}
