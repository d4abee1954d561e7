/// <reference lib="dom" />
// Code handed to page.evaluate runs in the page: it is typed with the DOM library.
/**
 * A sweep of the browser runtime and the drop page with what nobody shows us: every shipped package
 * (each runs, or refuses with its code; the split package with no peer runs its tail here), images
 * the browser decodes itself (EXIF-rotated, 16-bit with a profile, CMYK, animated, AVIF, over the
 * budget) against `xpkg run` on the same bytes, damaged and untrusted packages (codes, nothing run
 * before the verdict, a rejected package never run), scripts past their limits, a reload mid-run,
 * the embed page framed by another origin, and `<xpkg-drop>` by keyboard.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PackageReader } from '../pack/reader.js';
import { Runner } from '../runner/runner.js';
import { toXpkgError } from '../spec/errors.js';
import {
  type BrowserRig,
  BUILT,
  dropBytes,
  frameIn,
  haveBrowser,
  type Lib,
  loadLibrary,
  startRig,
} from './helpers/browser.js';
import { hugePng, sweepImages } from './helpers/sweep-images.js';
import { SHIPPED, sweepPackages } from './helpers/sweep-packages.js';

const ROOT = join(import.meta.dirname, '..');
const KEY = join(ROOT, 'fixtures', 'keys', 'test.pub');
const SHAPES = join(ROOT, 'fixtures', 'detector', 'eval', '000.png');
type Box = { box: number[]; score: number; label: string };

/** Opens `/packages/<name>.xpkg` in the page's library and runs it on `inputs`: its outputs, or its code. */
function libRun(page: Page, name: string, options: Record<string, unknown>, image?: Buffer, type = 'image/png') {
  return page.evaluate(
    async ({ name, options, b64, type }) => {
      const { openPackage } = (window as unknown as { xpkg: Lib }).xpkg;
      let p: Awaited<ReturnType<Lib['openPackage']>>;
      try {
        p = await openPackage(`/packages/${name}.xpkg`, options);
      } catch (e) {
        return { code: (e as { code: string }).code, stage: 'open' };
      }
      const inputs = b64
        ? { image: new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], { type }) }
        : { x: { type: 'float32', dims: [3], data: new Float32Array([1, 2, 3]) } };
      try {
        const r = await p.run(inputs);
        return { outputs: JSON.parse(JSON.stringify(r.outputs)) as Record<string, unknown> };
      } catch (e) {
        return { code: (e as { code: string }).code, stage: 'run' };
      } finally {
        await p.close();
      }
    },
    { name, options, b64: image?.toString('base64'), type },
  );
}

const sameBoxes = (got: Box[], want: Box[]) => {
  expect(got.map((b) => b.label)).toEqual(want.map((b) => b.label));
  got.forEach((b, i) => {
    b.box.forEach((v, k) => expect(Math.abs(v - want[i].box[k]), `box ${i}`).toBeLessThan(1));
    expect(Math.abs(b.score - want[i].score)).toBeLessThan(1e-3);
  });
};

describe.skipIf(!haveBrowser)('browser sweep: packages and inputs nobody shows us', () => {
  let rig: BrowserRig;
  let dir: string;
  let key: string;
  let shapes: Buffer;

  beforeAll(async () => {
    if (!BUILT) throw new Error('dist/browser is not built: run npm run build');
    dir = await mkdtemp(join(tmpdir(), 'xpkg-browser-sweep-'));
    await sweepPackages(dir);
    key = await readFile(KEY, 'utf8');
    shapes = await readFile(SHAPES);
    rig = await startRig({ packages: dir, trust: [key] });
  });
  afterAll(async () => {
    await rig?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** The drop page, its trusted key in from config.json. */
  async function dropPage(): Promise<Page> {
    const page = await rig.page();
    await page.goto(rig.server.url);
    await page.waitForFunction(() => (document.getElementById('trust') as HTMLTextAreaElement).value.length > 0);
    return page;
  }

  it('every shipped package runs in the browser (the split one with no peer runs its tail here)', async () => {
    const page = await rig.page();
    await page.goto(rig.server.url);
    await loadLibrary(page);
    await using node = await Runner.open(join(dir, 'detector.xpkg'), { trust: [KEY], rollbackStore: null } as never);
    const want = (await node.run({ image: shapes })).outputs.boxes as Box[];
    expect(want.length).toBeGreaterThan(0);
    for (const name of SHIPPED) {
      const r = await libRun(page, name, { trust: [key] }, name === 'multi-variant' ? undefined : shapes);
      expect(r, name).toHaveProperty('outputs');
      const out = (r as { outputs: Record<string, unknown> }).outputs;
      if (name === 'detector' || name === 'detector-split') sameBoxes(out.boxes as Box[], want);
      if (name === 'multi-variant') expect(Object.values((out.y as { data: object }).data)).toEqual([2, 3, 4]);
      if (name === 'segmenter') expect(out.mask).toHaveProperty('width');
      if (name === 'ocr-script') expect(out).toHaveProperty('report');
    }
  });

  it('images the browser decodes itself give the boxes `xpkg run` gives on the same bytes; one over the budget is E_RUN_INPUT', async () => {
    const page = await rig.page();
    await page.goto(rig.server.url);
    await loadLibrary(page);
    await using node = await Runner.open(join(dir, 'detector.xpkg'), { trust: [KEY], rollbackStore: null } as never);
    for (const img of await sweepImages(shapes)) {
      const want = (await node.run({ image: img.bytes })).outputs.boxes as Box[];
      const r = await libRun(page, 'detector', { trust: [key] }, img.bytes, img.type);
      expect(r, img.name).toHaveProperty('outputs');
      sameBoxes((r as { outputs: { boxes: Box[] } }).outputs.boxes, want);
    }
    const huge = await hugePng();
    const nodeCode = await node.run({ image: huge }).then(
      () => 'ran',
      (e: unknown) => toXpkgError(e).code,
    );
    expect(nodeCode).toBe('E_RUN_INPUT');
    expect(await libRun(page, 'detector', { trust: [key] }, huge)).toEqual({ code: 'E_RUN_INPUT', stage: 'run' });
  });

  it('the budget option bounds every kind of image input: an ImageBitmap or ImageData over maxPixels is E_RUN_INPUT', async () => {
    const page = await rig.page();
    await page.goto(rig.server.url);
    await loadLibrary(page);
    const codes = await page.evaluate(
      async ({ b64, key }) => {
        const { openPackage } = (window as unknown as { xpkg: Lib }).xpkg;
        // 1e6 pixels: above the model's input, below a 2000×2000 picture (ImageData skipped the check)
        const p = await openPackage('/packages/detector.xpkg', { trust: [key], budget: { maxPixels: 1e6 } } as never);
        const blob = new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], { type: 'image/png' });
        const big = new ImageData(2000, 2000);
        const out: Record<string, string> = {};
        for (const [kind, image] of [
          ['blob', blob],
          ['bitmap', await createImageBitmap(big)],
          ['imagedata', big],
        ] as const)
          out[kind] = await p.run({ image }).then(
            () => 'ran',
            (e: { code: string }) => e.code,
          );
        await p.close();
        return out;
      },
      { b64: shapes.toString('base64'), key },
    );
    expect(codes).toEqual({ blob: 'ran', bitmap: 'E_RUN_INPUT', imagedata: 'E_RUN_INPUT' });
  });

  it('damaged packages: a flipped model byte is caught on a run without verify (File and URL); a cut one has Node’s code', async () => {
    const page = await rig.page();
    await page.goto(rig.server.url);
    await loadLibrary(page);
    expect(await libRun(page, 'model-flipped', { trust: [key] }, shapes)).toEqual({
      code: 'E_DIGEST_MISMATCH',
      stage: 'run',
    });
    const fromFile = await page.evaluate(
      async ({ key, b64 }) => {
        const { openPackage } = (window as unknown as { xpkg: Lib }).xpkg;
        const blob = await (await fetch('/packages/model-flipped.xpkg')).blob();
        const p = await openPackage(new File([blob], 'model-flipped.xpkg'), { trust: [key] });
        const image = new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], { type: 'image/png' });
        return p.run({ image }).then(
          () => 'ran',
          (e: { code: string }) => e.code,
        );
      },
      { key, b64: shapes.toString('base64') },
    );
    expect(fromFile).toBe('E_DIGEST_MISMATCH');
    const nodeCut = await PackageReader.open(join(dir, 'truncated.xpkg')).then(
      async (r) => (await r.close(), 'opened'),
      (e: unknown) => toXpkgError(e).code,
    );
    expect(await libRun(page, 'truncated', { trust: [key] }, shapes)).toEqual({ code: nodeCut, stage: 'open' });
  });

  it('an untrusted package is refused with its code and runs nothing, an image waiting included', async () => {
    const page = await dropPage();
    await page.fill('#trust', '');
    await dropBytes(page, 'body', '000.png', shapes, 'image/png');
    await page.setInputFiles('#pkg-file', join(dir, 'detector.xpkg'));
    await expect.poll(() => page.textContent('#verdict [data-code]'), { timeout: 30_000 }).toBe('E_TRUST_UNTRUSTED');
    expect(await page.isVisible('#run')).toBe(false);
    expect(await page.evaluate(() => performance.getEntriesByName('xpkg:page-run-start').length)).toBe(0);
    // accepted when asked: said as intact and untrusted, never as verified
    await page.check('#allow-unsigned');
    await page.setInputFiles('#pkg-file', join(dir, 'segmenter.xpkg'));
    await expect
      .poll(() => page.getAttribute('#verdict strong', 'data-verdict'), { timeout: 30_000 })
      .toBe('untrusted');
    expect(await page.getAttribute('#verdict strong', 'class')).not.toBe('good');
  });

  it('a package opened after another ran shows none of that run’s results', async () => {
    const page = await dropPage();
    await page.setInputFiles('#pkg-file', join(dir, 'detector.xpkg'));
    await page.setInputFiles('#image-file', SHAPES);
    await page.waitForSelector('#results li', { timeout: 60_000 });
    // a package that takes no image: verified, and nothing of the detector's run left under it
    await page.setInputFiles('#pkg-file', join(dir, 'multi-variant.xpkg'));
    await expect
      .poll(() => page.textContent('#status'), { timeout: 30_000 })
      .toMatch(/multi-variant-add-one is verified/);
    expect(await page.$$eval('#results li', (els) => els.length)).toBe(0);
    expect(await page.textContent('#timings')).toBe('');
    expect(await page.$eval('#canvas', (c) => (c as HTMLCanvasElement).width)).toBe(0);
  });

  it('an image dropped on a package that failed to verify is not run: the page says why', async () => {
    const page = await dropPage();
    await page.setInputFiles('#pkg-file', join(dir, 'gpu-flipped.xpkg'));
    await expect.poll(() => page.textContent('#verdict [data-code]'), { timeout: 30_000 }).toBe('E_DIGEST_MISMATCH');
    await dropBytes(page, 'body', '000.png', shapes, 'image/png');
    await expect.poll(() => page.getAttribute('#status', 'data-kind'), { timeout: 30_000 }).toBe('error');
    expect(await page.textContent('#status')).toContain('E_DIGEST_MISMATCH');
    expect(await page.evaluate(() => performance.getEntriesByName('xpkg:page-run-start').length)).toBe(0);
    expect(await page.$$eval('#results li', (els) => els.length)).toBe(0);
  });

  it('<xpkg-drop>: an image dropped after verification failed is refused with that code, never run', async () => {
    const page = await rig.page();
    await page.goto(new URL('/web/embed.html', rig.server.url).href);
    await page.waitForFunction(() => customElements.get('xpkg-drop') !== undefined);
    await page.evaluate((key) => {
      const el = document.querySelector('xpkg-drop') as HTMLElement & { trust: string[] };
      el.trust = [key];
      const w = window as unknown as { events: { type: string; stage?: string; code?: string }[] };
      w.events = [];
      for (const type of ['xpkg-verified', 'xpkg-result', 'xpkg-error'])
        el.addEventListener(type, (e) => {
          const d = (e as CustomEvent).detail as { stage?: string; code?: string };
          w.events.push({ type, stage: d?.stage, code: d?.code });
        });
    }, key);
    const events = () =>
      page.evaluate(() => (window as unknown as { events: { type: string; stage?: string; code?: string }[] }).events);
    const pkg = await readFile(join(dir, 'gpu-flipped.xpkg'));
    await dropBytes(page, 'xpkg-drop', 'gpu-flipped.xpkg', pkg);
    await expect.poll(events, { timeout: 30_000 }).toHaveLength(1);
    await dropBytes(page, 'xpkg-drop', '000.png', shapes, 'image/png');
    await expect.poll(events, { timeout: 60_000 }).toHaveLength(2);
    expect(await events()).toEqual([
      { type: 'xpkg-error', stage: 'verify', code: 'E_DIGEST_MISMATCH' },
      { type: 'xpkg-error', stage: 'run', code: 'E_DIGEST_MISMATCH' },
    ]);
  });

  it('scripts past their time, memory and stack limits fail with their codes, again on a second run', async () => {
    const page = await rig.page();
    await page.goto(rig.server.url);
    await loadLibrary(page);
    const codes: Record<string, unknown[]> = {};
    for (const limit of ['time', 'memory', 'stack', 'ok'])
      codes[limit] = [
        await libRun(page, `script-${limit}`, { trust: [key] }),
        await libRun(page, `script-${limit}`, { trust: [key] }),
      ];
    expect(codes.time).toEqual(Array(2).fill({ code: 'E_SANDBOX_TIMEOUT', stage: 'run' }));
    expect(codes.memory).toEqual(Array(2).fill({ code: 'E_SANDBOX_MEMORY', stage: 'run' }));
    expect(codes.stack).toEqual(Array(2).fill({ code: 'E_SANDBOX_STACK', stage: 'run' }));
    expect(codes.ok[1]).toHaveProperty('outputs.z.dims', [3]);
  });

  it('a reload mid-run leaves nothing behind: the reloaded page opens and runs as a fresh one', async () => {
    const page = await dropPage();
    await page.setInputFiles('#image-file', SHAPES);
    await page.setInputFiles('#pkg-file', join(dir, 'paddleocr-v4.xpkg'));
    await expect.poll(() => page.textContent('#status'), { timeout: 30_000 }).toMatch(/^Running/);
    await page.reload();
    await page.waitForFunction(() => (document.getElementById('trust') as HTMLTextAreaElement).value.length > 0);
    expect(await page.textContent('#results')).toBe('');
    await page.setInputFiles('#pkg-file', join(dir, 'detector.xpkg'));
    await page.setInputFiles('#image-file', SHAPES);
    await page.waitForSelector('#results li', { timeout: 60_000 });
    await expect.poll(() => page.textContent('#verdict'), { timeout: 30_000 }).toMatch(/^Verified/);
  });

  it('the embed page is not framed by another origin; <xpkg-drop>’s file input is reached by Tab', async () => {
    const page = await rig.page();
    const port = new URL(rig.server.url).port;
    await page.goto(`http://localhost:${port}/web/`);
    const src = `http://127.0.0.1:${port}/web/embed.html`;
    const frame = await frameIn(page, src);
    expect(frame ? await frame.$('xpkg-drop') : null).toBeNull();
    await page.goto(`http://127.0.0.1:${port}/web/embed.html`);
    await page.waitForFunction(() => customElements.get('xpkg-drop') !== undefined);
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => {
      const el = document.querySelector('xpkg-drop')!;
      const a = el.shadowRoot!.activeElement as HTMLInputElement | null;
      return a ? { tag: a.tagName, type: a.type, label: a.labels?.[0]?.textContent } : null;
    });
    expect(focused).toEqual({ tag: 'INPUT', type: 'file', label: 'choose a file' });
  });
});
