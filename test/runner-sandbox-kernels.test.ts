/**
 * The runner's sandbox kernel table (runner/sandbox-kernels.ts): the native kernels under the names
 * scripts use (resize, normalize, nms, decode, argmax, ctcDecode), called from a real sandbox and
 * compared with direct calls of native/index.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rng } from '../fixtures/random.js';
import {
  ctcGreedyDecodeSync,
  decodeDetectionsSync,
  nmsSync,
  preprocessSync,
  softmaxTopKSync,
} from '../native/index.js';
import { sandboxKernels, sandboxKernelsFor } from '../runner/sandbox-kernels.js';
import { Sandbox, type SandboxTensor } from '../sandbox/index.js';

const SCRIPT = `
export function run(input, ctx) {
  const k = ctx.kernels;
  const resized = k.resize(input.image, { width: 5, height: 3 });
  const x = k.normalize(input.image, { scale: 1 / 255, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], resize: { mode: 'letterbox', width: 8, height: 8 } });
  const keep = k.nms(input.boxes, input.scores, { iouThreshold: 0.5 });
  const det = k.decode(input.head, { scoreThreshold: 0.3, iouThreshold: 0.5 });
  const am = k.argmax(input.probs);
  const ctc = k.ctcDecode(input.probs, { blank: 0 });
  return {
    resized: { shape: resized.shape, data: Array.from(resized.read()) },
    x: { shape: x.shape, data: Array.from(x.read()) },
    keep: Array.from(keep.read()),
    det: { boxes: Array.from(det.boxes.read()), scores: Array.from(det.scores.read()), classes: Array.from(det.classes.read()) },
    am: Array.from(am.indices.read()),
    ctc: { ids: Array.from(ctc.ids.read()), offsets: Array.from(ctc.offsets.read()) },
  };
}
export function bad(input, ctx) {
  try { ctx.kernels.nms(input.boxes, input.scores, { iouThreshold: 7 }).read(); return 'no error'; } catch (e) { return 'error'; }
}`;

let sb: Sandbox;
beforeAll(async () => {
  sb = await Sandbox.create({ kernels: sandboxKernels });
  await sb.load(SCRIPT, 'k.js');
});
afterAll(() => sb?.close());

describe('runner sandbox kernels', () => {
  it('table holds the issue-6 names, all queued', () => {
    for (const name of ['resize', 'normalize', 'nms', 'decode', 'argmax', 'ctcDecode'])
      expect(sandboxKernels[name]?.returns, name).toBeDefined();
  });

  it('a script calling each kernel gets what the native calls give', async () => {
    const r = rng(5);
    const img = Uint8Array.from({ length: 7 * 4 * 3 }, () => Math.floor(r() * 256));
    const n = 40;
    const boxes = new Float32Array(n * 4),
      scores = Float32Array.from({ length: n }, r);
    for (let i = 0; i < n; i++)
      boxes.set([r() * 50, r() * 50, 0, 0], 4 * i),
        (boxes[4 * i + 2] = boxes[4 * i] + 5 + r() * 20),
        (boxes[4 * i + 3] = boxes[4 * i + 1] + 5 + r() * 20);
    const anchors = 30,
      attrs = 4 + 2;
    const head = Float32Array.from({ length: attrs * anchors }, (_, i) => (i < 4 * anchors ? 10 + r() * 40 : r()));
    const probs = Float32Array.from({ length: 2 * 6 * 4 }, r);
    const t = (type: string, dims: number[], data: ArrayBufferView): SandboxTensor =>
      ({ type, dims, data }) as unknown as SandboxTensor;
    const out = await sb.call<Record<string, any>>('run', {
      image: t('uint8', [4, 7, 3], img),
      boxes: t('float32', [n, 4], boxes),
      scores: t('float32', [n], scores),
      head: t('float32', [1, attrs, anchors], head),
      probs: t('float32', [2, 6, 4], probs),
    });
    const image = { data: img, width: 7, height: 4, format: 'rgb' as const };
    const rs = preprocessSync(image, { resize: { mode: 'stretch', width: 5, height: 3 }, scale: 1, layout: 'nhwc' });
    expect(out.resized.shape).toEqual([3, 5, 3]);
    expect(out.resized.data).toEqual(Array.from(rs.data, (v) => Math.floor(v + 0.5)));
    const x = preprocessSync(image, {
      resize: { mode: 'letterbox', width: 8, height: 8 },
      scale: 1 / 255,
      mean: 0.5,
      std: 0.5,
    });
    expect(out.x.shape).toEqual([1, 3, 8, 8]);
    expect(out.x.data).toEqual(Array.from(x.data));
    expect(out.keep).toEqual(Array.from(nmsSync(boxes, scores, { iouThreshold: 0.5 }).keep));
    expect(out.keep.length).toBeGreaterThan(3);
    const d = decodeDetectionsSync(head, { dims: [1, attrs, anchors], scoreThreshold: 0.3, iouThreshold: 0.5 });
    expect(out.det.scores.length).toBeGreaterThan(0);
    expect(out.det).toEqual({
      boxes: Array.from(d.boxes),
      scores: Array.from(d.scores),
      classes: Array.from(d.classes),
    });
    expect(out.am).toEqual(Array.from(softmaxTopKSync(probs, { dims: [12, 4], k: 1, softmax: false }).indices));
    const c = ctcGreedyDecodeSync(probs, { dims: [2, 6, 4] });
    expect(out.ctc).toEqual({ ids: Array.from(c.ids), offsets: Array.from(c.offsets) });
  });

  it('bad arguments surface in the script as a catchable error', async () => {
    const b = new Float32Array([0, 0, 1, 1]);
    expect(
      await sb.call('bad', {
        boxes: { type: 'float32', dims: [1, 4], data: b },
        scores: { type: 'float32', dims: [1], data: new Float32Array([1]) },
      }),
    ).toBe('error');
  });

  it("a script's resize/normalize are held to the runner's budget before the host allocates", async () => {
    const huge = `export function run(input, ctx) {
      try { ctx.kernels.normalize(input.image, { resize: { mode: 'stretch', width: 32768, height: 32768 } }).read(); return 'allocated'; }
      catch (e) { return String(e.message); }
    }
    export function small(input, ctx) {
      try { ctx.kernels.resize(input.image, { width: 40, height: 40 }).read(); return 'allocated'; } catch (e) { return String(e.message); }
    }`;
    const image = { type: 'uint8', dims: [1, 1, 3], data: new Uint8Array(3) } as SandboxTensor;
    const rss = process.memoryUsage().rss;
    const t0 = performance.now();
    const dflt = await Sandbox.create({ kernels: sandboxKernels });
    const tight = await Sandbox.create({ kernels: sandboxKernelsFor({ maxPixels: 1000, maxTensorBytes: 1 << 30 }) });
    try {
      await dflt.load(huge, 'h.js');
      await tight.load(huge, 'h.js');
      // 32768² float32 RGB is 12.9 GB: refused by the default budget, quickly and without the memory.
      expect(await dflt.call('run', { image })).toMatch(/budget/);
      expect(performance.now() - t0).toBeLessThan(10_000);
      expect(process.memoryUsage().rss - rss).toBeLessThan(500 * 2 ** 20);
      expect(await tight.call('small', { image })).toMatch(/maxPixels/);
      expect(await dflt.call('small', { image })).toBe('allocated');
    } finally {
      dflt.close();
      tight.close();
    }
  });

  it("a script's resize/normalize keep to the sandbox call's host-tensor budget before the host allocates", async () => {
    // 4000² RGB as float32 is 192 MB: within the runner's budget, over the sandbox's 16 MiB.
    const script = `export function norm(input, ctx) { return ctx.kernels.normalize(input.image, { resize: { mode: 'stretch', width: 4000, height: 4000 } }).shape; }
    export function f32(input, ctx) { return ctx.kernels.resize(ctx.tensor('float32', [1, 1, 3], [1, 2, 3]), { width: 4000, height: 4000 }).shape; }`;
    const image = { type: 'uint8', dims: [1, 1, 3], data: new Uint8Array(3) } as SandboxTensor;
    await using sb = await Sandbox.create({ kernels: sandboxKernels, caps: { hostTensorMiB: 16 } });
    await sb.load(script, 's.js');
    // The process's peak RSS (KiB): the host is busy in the kernel while it allocates.
    const peak = () => process.resourceUsage().maxRSS * 1024;
    const before = peak();
    for (const hook of ['norm', 'f32'])
      await expect(sb.call(hook, { image })).rejects.toMatchObject({ code: 'E_SANDBOX_MEMORY' });
    expect(peak() - before).toBeLessThan(96 * 2 ** 20);
  });
});
