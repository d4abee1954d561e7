/** Package scripts through Runner: same results as the declarative steps, limits enforced, host healthy after. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pages, renderPng } from '../fixtures/images/render.js';
import { packFolder } from '../pack/pack.js';
import { Runner } from '../runner/runner.js';
import { codeOf } from './helpers/errors.js';
import { scriptPackageSource } from './helpers/script-pkg.js';
import { tempDir } from './helpers/source.js';

const TRUST = ['fixtures/keys/test.pub'];
const state = () => tempDir('xpkg-state-');

describe('package scripts in the runner', () => {
  it('CTC decoding as a sandboxed script gives exactly the declarative result; the CSV report script adds a custom format', async () => {
    await using declarative = await Runner.open('fixtures/dist/paddleocr-v4.xpkg', { trust: TRUST, stateDir: state() });
    await using scripted = await Runner.open('fixtures/dist/ocr-script.xpkg', { trust: TRUST, stateDir: state() });
    for (const spec of pages().slice(0, 3)) {
      const png = await renderPng(spec);
      const a = await declarative.run({ image: png });
      const b = await scripted.run({ image: png });
      expect(b.outputs.lines).toEqual(a.outputs.lines);
      const csv = (b.outputs.report as string).trim().split('\n');
      expect(csv[0]).toBe('text,score,x1,y1,x2,y2,x3,y3,x4,y4');
      expect(csv.length).toBe((a.outputs.lines as unknown[]).length + 1);
    }
  });

  it('a runaway script is stopped with its code within its deadline, and the next run works', async () => {
    const src = scriptPackageSource({
      name: 'script-limits',
      policy: { memoryMiB: 16, timeMs: 200 },
      post: `export function post(input) {
        const v = input.y.read()[0];
        if (v > 1000) { for (;;) {} }
        if (v > 500) { const keep = []; for (;;) keep.push(new Uint8Array(1 << 20)); }
        if (v > 300) { let a = 1; for (let i = 0; i < 2500; i++) a = [a]; return { z: a }; }
        // Leaves a looping toJSON behind (the warm-up between runs reached it: sandbox-hostile2.test.ts).
        if (v > 200) Object.defineProperty(Array.prototype, 'toJSON', { get() { for (;;) {} }, configurable: true });
        return { z: input.y };
      }`,
    });
    const pkg = join(tempDir(), 'limits.xpkg');
    await packFolder(src, pkg);
    await using runner = await Runner.open(pkg, { allowUnsigned: true, stateDir: state() });
    const x = (v: number) => ({ x: { type: 'float32', dims: [1], data: new Float32Array([v]) } });
    const ok = await runner.run(x(1));
    expect(Array.from((ok.outputs.z as { data: Float32Array }).data)).toEqual([2]);
    let t = performance.now();
    expect(await codeOf(runner.run(x(5000)))).toBe('E_SANDBOX_TIMEOUT');
    expect(performance.now() - t).toBeLessThan(5000);
    t = performance.now();
    expect(await codeOf(runner.run(x(600)))).toBe('E_SANDBOX_MEMORY');
    expect(performance.now() - t).toBeLessThan(10000);
    const again = await runner.run(x(41));
    expect(Array.from((again.outputs.z as { data: Float32Array }).data)).toEqual([42]);
    // A result nested past the limit has a code (the host's parser used to overflow V8's stack).
    expect(await codeOf(runner.run(x(400)))).toBe('E_SANDBOX_OUTPUT');
    expect(await codeOf(runner.run(x(250)))).toBe('OK');
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 20));
      expect(await codeOf(runner.run(x(i)))).toBe('OK');
    }
  });
});

describe('script step fields', () => {
  it('an input field named __proto__ is refused at open (it set the argument prototype: the hook never saw it)', async () => {
    const src = scriptPackageSource({
      name: 'script-proto',
      policy: {},
      post: 'export function post(i) { return { z: i.y }; }',
    });
    const file = join(src, 'xpkg.json');
    const m = JSON.parse(readFileSync(file, 'utf8'));
    m.pipeline.steps[1].params.inputs = JSON.parse('{"__proto__":"y"}');
    writeFileSync(file, JSON.stringify(m));
    const pkg = join(tempDir(), 'proto.xpkg');
    await packFolder(src, pkg);
    expect(await codeOf(Runner.open(pkg, { allowUnsigned: true, stateDir: state() }))).toBe('E_RUN_PIPELINE');
  });
});
