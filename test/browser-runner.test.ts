/// <reference lib="dom" />
// Code handed to page.evaluate runs in the page: it is typed with the DOM library.
/**
 * The runner in Chromium against Node's on the same packages and inputs: variant selection on the
 * browser host (the multi-variant package's CPU variant, also when WebGPU is asked for and headless
 * Chromium has no adapter); a package's scripts in QuickJS, in a nested worker sharing memory with
 * the runner's. test/browser-models.test.ts has the image models.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Runner } from '../runner/runner.js';
import { type BrowserRig, BUILT, haveBrowser, type Lib, loadLibrary, startRig } from './helpers/browser.js';

const ROOT = join(import.meta.dirname, '..');
const FIXTURES = join(ROOT, 'fixtures', 'dist');
const KEY = join(ROOT, 'fixtures', 'keys', 'test.pub');

async function nodeRun(pkg: string, inputs: Record<string, unknown>, precision?: 'fp32') {
  await using runner = await Runner.open(join(FIXTURES, pkg), {
    trust: [KEY],
    rollbackStore: null,
    precision,
  } as never);
  return await runner.run(inputs);
}

describe.skipIf(!haveBrowser)('the runner in Chromium', () => {
  let rig: BrowserRig;
  let key: string;
  beforeAll(async () => {
    if (!BUILT) throw new Error('dist/browser is not built: run npm run build');
    key = await readFile(KEY, 'utf8');
    rig = await startRig({ packages: FIXTURES, trust: [key] });
  });
  afterAll(() => rig?.close());

  it('multi-variant: the browser host picks the portable CPU variant, with WebGPU asked for and no adapter too', async () => {
    const x = new Float32Array([1, 2.5, -3]);
    const node = await nodeRun('multi-variant.xpkg', { x: { type: 'float32', dims: [3], data: x } });
    const page = await rig.page();
    await page.goto(rig.server.url);
    await loadLibrary(page);
    const got = await page.evaluate(
      async ({ key, x }) => {
        const { openPackage } = (window as unknown as { xpkg: Lib }).xpkg;
        const out = [];
        for (const webgpu of [false, true]) {
          const pkg = await openPackage('/packages/multi-variant.xpkg', { trust: [key], webgpu });
          const r = (await pkg.run({ x: { type: 'float32', dims: [3], data: new Float32Array(x) } })) as unknown as {
            outputs: { y: { data: Float32Array } };
            variant: Record<string, string>;
            runtime: { webgpu: boolean };
          };
          out.push({ y: Array.from(r.outputs.y.data), variant: r.variant, webgpu: r.runtime.webgpu });
          await pkg.close();
        }
        return out;
      },
      { key, x: Array.from(x) },
    );
    const y = Array.from((node.outputs.y as { data: Float32Array }).data);
    // Node here may take an int8 variant for its CPU's features; the browser host is wasm32, so the
    // variants for x64 or arm64 features are rejected and the portable fp32 one runs, with the same values.
    expect(got).toEqual([
      { y, variant: { 'add-one': 'cpu-fp32' }, webgpu: false },
      { y, variant: { 'add-one': 'cpu-fp32' }, webgpu: false },
    ]);
  });

  it('a package with scripts runs them in QuickJS (a nested worker over shared memory) and gives the outputs Node gives', async () => {
    const image = join(ROOT, 'fixtures', 'images', 'example.png');
    // the page's CPU (WebAssembly) takes the float32 recogniser: Node reads with the same one
    const node = await nodeRun('ocr-script.xpkg', { image }, 'fp32');
    const page = await rig.page();
    await page.goto(rig.server.url);
    await loadLibrary(page);
    const png = (await readFile(image)).toString('base64');
    const r = await page.evaluate(
      async ({ key, png }) => {
        const { openPackage } = (window as unknown as { xpkg: Lib }).xpkg;
        const p = await openPackage('/packages/ocr-script.xpkg', { trust: [key] });
        const blob = new Blob([Uint8Array.from(atob(png), (ch) => ch.charCodeAt(0))], { type: 'image/png' });
        try {
          return { outputs: JSON.parse(JSON.stringify((await p.run({ image: blob })).outputs)) };
        } catch (e) {
          return {
            error: {
              code: (e as { code?: string }).code,
              message: String(e),
              detail: (e as { detail?: unknown }).detail,
            },
          };
        } finally {
          await p.close();
        }
      },
      { key, png },
    );
    expect(r).toEqual({ outputs: JSON.parse(JSON.stringify(node.outputs)) });
  });
  it('onnxruntime-web starts from the WASM compiled ahead (fetched once), and from its own fetch when that compile fails', async () => {
    const x = new Float32Array([1, 2.5, -3]);
    const node = await nodeRun('multi-variant.xpkg', { x: { type: 'float32', dims: [3], data: x } });
    const y = Array.from((node.outputs.y as { data: Float32Array }).data);
    const runOn = async (breakCompile: boolean) => {
      const ctx = await rig.browser.newContext();
      try {
        const wasm: string[] = [];
        // Requests of the page and its workers (the runtime's WASM is fetched from a nested one).
        let loader = 0;
        ctx.on('request', (r) => {
          if (r.url().endsWith('/ort-wasm-simd-threaded.wasm')) wasm.push(r.url());
          if (r.url().endsWith('/xpkg-ort-factory.js')) loader++;
        });
        if (breakCompile)
          // The first response of the WASM without its type: compileStreaming refuses it, the loader fetches it again.
          await ctx.route('**/ort-wasm-simd-threaded.wasm', async (route) => {
            const r = await route.fetch();
            await route.fulfill({
              response: r,
              headers: { ...r.headers(), 'content-type': 'application/octet-stream' },
            });
            await ctx.unroute('**/ort-wasm-simd-threaded.wasm');
          });
        const page = await ctx.newPage();
        await page.goto(rig.server.url);
        await loadLibrary(page);
        const got = await page.evaluate(
          async ({ key, x }) => {
            const { openPackage } = (window as unknown as { xpkg: Lib }).xpkg;
            const pkg = await openPackage('/packages/multi-variant.xpkg', { trust: [key] });
            const r = (await pkg.run({ x: { type: 'float32', dims: [3], data: new Float32Array(x) } })) as unknown as {
              outputs: { y: { data: Float32Array } };
              runtime: { threads: number };
            };
            await pkg.close();
            return {
              y: Array.from(r.outputs.y.data),
              threads: r.runtime.threads,
              cores: navigator.hardwareConcurrency,
            };
          },
          { key, x: Array.from(x) },
        );
        return { ...got, fetches: wasm.length, loader };
      } finally {
        await ctx.close();
      }
    };
    const ahead = await runOn(false);
    // The loader that takes a compiled module ran, and the WASM was fetched once: that module was used
    // (an isolated page's runtime, unasked, with a thread per core up to 16).
    expect(ahead).toEqual({ y, threads: Math.min(16, ahead.cores), cores: ahead.cores, fetches: 1, loader: 1 });
    const fallback = await runOn(true);
    expect(fallback.y).toEqual(y);
    expect(fallback.fetches).toBe(2);
  });

  it('on a page that is not cross-origin isolated, a package with scripts is refused before anything loads', async () => {
    const plain = await startRig({ packages: FIXTURES, isolation: false });
    try {
      const page = await plain.page();
      await page.goto(plain.server.url);
      await loadLibrary(page);
      const r = await page.evaluate(async (key) => {
        const { openPackage } = (window as unknown as { xpkg: Lib }).xpkg;
        const p = await openPackage('/packages/ocr-script.xpkg', { trust: [key] });
        const e = await p.run({ image: new Blob() }).then(
          () => null,
          (e: { code?: string; detail?: unknown }) => ({
            code: e.code,
            detail: e.detail,
            isolated: crossOriginIsolated,
          }),
        );
        await p.close();
        return e;
      }, key);
      expect(r).toMatchObject({ code: 'E_SANDBOX_KILLED', detail: { reason: 'not-isolated' }, isolated: false });
    } finally {
      await plain.close();
    }
  });
});
