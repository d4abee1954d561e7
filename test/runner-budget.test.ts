/**
 * The runner's resource budget (maxPixels, maxTensorBytes): refused from the manifest alone at open,
 * against a model's declared input at load, and before each allocation at run; oversized input
 * images are the caller's E_RUN_INPUT; the CLI flags reach the runner and exit with its status.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodeModel } from '../fixtures/onnx-tiny.js';
import { packFolder } from '../pack/pack.js';
import { Runner } from '../runner/runner.js';
import { EXIT } from '../spec/errors.js';
import { codeOf } from './helpers/errors.js';
import { tempDir } from './helpers/source.js';

const state = () => tempDir('xpkg-state-');

/** Y = Identity(X) over float32 of the given shape (strings are open dims). */
function identity(shape: (number | string)[]): Buffer {
  return encodeModel({
    name: 'id',
    nodes: [{ op: 'Identity', inputs: ['X'], outputs: ['Y'] }],
    inputs: [{ name: 'X', type: 'float32', shape }],
    outputs: [{ name: 'Y', type: 'float32', shape }],
  });
}

/** An unsigned package: decode-image → `pre` (a preprocess step's params) → infer → tensor out. */
async function imagePackage(
  pre: Record<string, unknown>,
  shape: (number | string)[] = ['N', 3, 'H', 'W'],
): Promise<string> {
  const src = tempDir('xpkg-budget-src-');
  mkdirSync(join(src, 'models'));
  writeFileSync(join(src, 'models', 'id.onnx'), identity(shape));
  writeFileSync(
    join(src, 'xpkg.json'),
    JSON.stringify({
      name: 'budget',
      version: '1.0.0',
      sequence: 1,
      license: 'MIT',
      task: 'test',
      inputs: [{ name: 'image', type: 'image' }],
      outputs: [{ name: 'y', type: 'tensor' }],
      models: [
        { id: 'id', variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['models/id.onnx'] }] },
      ],
      pipeline: {
        steps: [
          { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
          { op: 'preprocess', params: { input: 'rgb', output: 'x', ...pre } },
          { op: 'infer', model: 'id', params: { inputs: 'x', outputs: 'y' } },
        ],
      },
    }),
  );
  const pkg = join(tempDir(), 'budget.xpkg');
  await packFolder(src, pkg);
  return pkg;
}

const png = (width: number, height: number) =>
  sharp({ create: { width, height, channels: 3, background: { r: 200, g: 100, b: 50 } } })
    .png()
    .toBuffer();

/** Runs `f`, sampling RSS every 2 ms: its result, the peak growth over the start, and the time taken. */
async function measured<T>(f: () => Promise<T>): Promise<{ value: T; growth: number; ms: number }> {
  const base = process.memoryUsage.rss();
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 2);
  const t0 = performance.now();
  try {
    const value = await f();
    return { value, growth: Math.max(peak, process.memoryUsage.rss()) - base, ms: performance.now() - t0 };
  } finally {
    clearInterval(timer);
  }
}

function errorOf(p: Promise<unknown>): Promise<{ code?: string; detail?: Record<string, unknown> }> {
  return p.then(
    () => ({ code: 'OK' }),
    (e: { code?: string; detail?: Record<string, unknown> }) => e,
  );
}

describe('runner budget', () => {
  it('a manifest asking preprocess for 32768×32768 is refused when the package is opened, at once and without the memory', async () => {
    const pkg = await imagePackage({ mode: 'fixed', width: 32768, height: 32768 });
    const r = await measured(() => errorOf(Runner.open(pkg, { allowUnsigned: true, stateDir: state() })));
    expect(r.value.code).toBe('E_RUN_BUDGET');
    expect(r.value.detail).toMatchObject({ step: 1, op: 'preprocess' });
    expect(r.ms).toBeLessThan(1000);
    expect(r.growth).toBeLessThan(200 * 2 ** 20);
    // Within a budget raised for it, the same manifest opens (the check is the budget, not a fixed cap).
    await using ok = await Runner.open(pkg, {
      allowUnsigned: true,
      stateDir: state(),
      budget: { maxPixels: 2 ** 31, maxTensorBytes: 2 ** 34 },
    });
    expect(ok.manifest.name).toBe('budget');
  });

  it('a model whose declared input can never fit the tensor budget is refused at load, before the pipeline runs', async () => {
    const pkg = await imagePackage({ mode: 'limit-side', limitSide: 64 }, [1, 3, 32768, 32768]);
    await using runner = await Runner.open(pkg, { allowUnsigned: true, stateDir: state() });
    const image = await png(8, 8);
    const r = await measured(() => errorOf(runner.run({ image })));
    expect(r.value.code).toBe('E_RUN_BUDGET');
    expect(r.value.detail).toMatchObject({ model: 'id', input: 'X', limit: 'maxTensorBytes' });
    expect(r.ms).toBeLessThan(2000);
    expect(r.growth).toBeLessThan(200 * 2 ** 20);
    expect(await codeOf(runner.warmUp())).toBe('E_RUN_BUDGET');
  });

  it('a budget lowered by option refuses a run at the allocation that would exceed it; the next fitting run works', async () => {
    // limit-side min 64: the plane's size depends on the input, so only the run can tell.
    const pkg = await imagePackage({ mode: 'limit-side', limitSide: 64, limitType: 'min' });
    await using normal = await Runner.open(pkg, { allowUnsigned: true, stateDir: state() });
    expect((await normal.run({ image: await png(16, 32) })).outputs.y).toMatchObject({ dims: [1, 3, 128, 64] });
    await using runner = await Runner.open(pkg, {
      allowUnsigned: true,
      stateDir: state(),
      budget: { maxPixels: 5000 },
    });
    const e = await errorOf(runner.run({ image: await png(16, 32) }));
    expect(e.code).toBe('E_RUN_BUDGET');
    expect(e.detail).toMatchObject({ step: 1, op: 'preprocess', limit: 'maxPixels', need: 128 * 64, budget: 5000 });
    expect((await runner.run({ image: await png(16, 16) })).outputs.y).toMatchObject({ dims: [1, 3, 64, 64] });
    await using tight = await Runner.open(pkg, {
      allowUnsigned: true,
      stateDir: state(),
      budget: { maxTensorBytes: 64 * 64 * 3 * 4 - 1 },
    });
    const t = await errorOf(tight.run({ image: await png(16, 16) }));
    expect(t.code).toBe('E_RUN_BUDGET');
    expect(t.detail).toMatchObject({ op: 'preprocess', limit: 'maxTensorBytes', need: 64 * 64 * 3 * 4 });
    expect(await codeOf(Runner.open(pkg, { allowUnsigned: true, stateDir: state(), budget: { maxPixels: 0 } }))).toBe(
      'E_RUN_BUDGET',
    );
  });

  it('an input image too large for the budget or for the image kernels is E_RUN_INPUT, from its header', async () => {
    const pkg = await imagePackage({ mode: 'limit-side', limitSide: 64 });
    await using runner = await Runner.open(pkg, { allowUnsigned: true, stateDir: state() });
    const wide = await png(100000, 1);
    const e = await errorOf(runner.run({ image: wide }));
    expect(e.code).toBe('E_RUN_INPUT');
    expect(e.detail).toMatchObject({ width: 100000, height: 1 });
    const path = join(tempDir(), 'wide.png');
    writeFileSync(path, wide);
    expect(await codeOf(runner.run({ image: path }))).toBe('E_RUN_INPUT');
    expect(
      await codeOf(runner.run({ image: { data: new Uint8Array(100000 * 3), width: 100000, height: 1, channels: 3 } })),
    ).toBe('E_RUN_INPUT');
    await using small = await Runner.open(pkg, {
      allowUnsigned: true,
      stateDir: state(),
      budget: { maxPixels: 10000 },
    });
    const big = await errorOf(small.run({ image: await png(200, 100) }));
    expect(big.code).toBe('E_RUN_INPUT');
    expect(big.detail).toMatchObject({ limit: 'maxPixels', budget: 10000 });
    expect((await small.run({ image: await png(100, 100) })).outputs.y).toMatchObject({ dims: [1, 3, 64, 64] });
  });

  it('an input tensor above maxTensorBytes is E_RUN_INPUT before any step runs; one that fits runs', async () => {
    await using runner = await Runner.open('fixtures/dist/multi-variant.xpkg', {
      trust: ['fixtures/keys/test.pub'],
      stateDir: state(),
      budget: { maxTensorBytes: 8 },
    });
    const e = await errorOf(runner.run({ x: { type: 'float32', dims: [3], data: new Float32Array([1, 2, 3]) } }));
    expect(e.code).toBe('E_RUN_INPUT');
    expect(e.detail).toMatchObject({ limit: 'maxTensorBytes', need: 12, budget: 8 });
    const ok = await runner.run({ x: { type: 'float32', dims: [2], data: new Float32Array([1, 2]) } });
    expect(ok.outputs.y).toMatchObject({ dims: [2] });
  });

  it("the CLI: --max-pixels and --max-tensor-bytes reach the runner on run and bench, and the exit status is the runner's", async () => {
    const cli = (args: string[]) => {
      const t0 = performance.now();
      // A bound on time: the unbudgeted 32768² run took 67 s and 12.7 GB.
      const r = spawnSync(
        process.execPath,
        [resolve('bin/xpkg.js'), ...args, '--allow-unsigned', '--state-dir', state(), '--json'],
        { encoding: 'utf8', timeout: 20_000 },
      );
      const lines = r.stdout.trim().split('\n');
      return {
        status: r.status,
        ms: performance.now() - t0,
        code: JSON.parse(lines[lines.length - 1] || '{}').error?.code as string | undefined,
      };
    };
    const img = join(tempDir(), 'in.png');
    writeFileSync(img, await png(16, 32));
    const huge = await imagePackage({ mode: 'fixed', width: 32768, height: 32768 });
    const tiny = join(tempDir(), '1x1.png');
    writeFileSync(tiny, await png(1, 1));
    const h = cli(['run', huge, '-i', tiny]);
    expect(h).toMatchObject({ status: EXIT.runner, code: 'E_RUN_BUDGET' });
    expect(h.ms).toBeLessThan(15_000);
    const pkg = await imagePackage({ mode: 'limit-side', limitSide: 64, limitType: 'min' });
    expect(cli(['run', pkg, '-i', img])).toMatchObject({ status: 0 });
    expect(cli(['run', pkg, '-i', img, '--max-pixels', '5000'])).toMatchObject({
      status: EXIT.runner,
      code: 'E_RUN_BUDGET',
    });
    expect(cli(['bench', pkg, '-i', img, '--runs', '1', '--warmup', '0', '--max-tensor-bytes', '1000'])).toMatchObject({
      status: EXIT.runner,
      code: 'E_RUN_BUDGET',
    });
    expect(cli(['run', pkg, '-i', img, '--max-pixels', '0'])).toMatchObject({ status: EXIT.usage, code: 'E_USAGE' });
    const wide = join(tempDir(), 'wide.png');
    writeFileSync(wide, await png(100000, 1));
    expect(cli(['run', pkg, '-i', wide])).toMatchObject({ status: EXIT.runner, code: 'E_RUN_INPUT' });
  }, 180_000);
});
