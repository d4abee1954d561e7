/// <reference lib="dom" />
// Code handed to page.evaluate runs in the page: it is typed with the DOM library.
/**
 * The drop page and the library with what a person meets on a second pass: an image their system
 * gave no type (a file with no or an unknown extension) dropped on the page or on `<xpkg-drop>`, a
 * run that fails after one that drew its results, a file picked again after a drop, an SVG or HEIC, and a package used after it was closed, in the
 * worker as on the page's thread. The page's console and unhandled rejections stay empty throughout.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Runner } from '../runner/runner.js';
import { toXpkgError } from '../spec/errors.js';
import { type BrowserRig, BUILT, dropBytes, haveBrowser, type Lib, loadLibrary, startRig } from './helpers/browser.js';
import { heic } from './helpers/sweep-images.js';

const ROOT = join(import.meta.dirname, '..');
const FIXTURES = join(ROOT, 'fixtures', 'dist');
const KEY = join(ROOT, 'fixtures', 'keys', 'test.pub');
const SHAPES = join(ROOT, 'fixtures', 'detector', 'eval', '000.png');

describe.skipIf(!haveBrowser)('browser drops and reruns', () => {
  let rig: BrowserRig;
  let key: string;
  let shapes: Buffer;
  /** What the pages of a test logged as errors or threw unhandled. */
  let errors: string[] = [];

  beforeAll(async () => {
    if (!BUILT) throw new Error('dist/browser is not built: run npm run build');
    key = await readFile(KEY, 'utf8');
    shapes = await readFile(SHAPES);
    rig = await startRig({ packages: FIXTURES, trust: [key] });
  });
  afterAll(() => rig?.close());
  afterEach(() => {
    expect(errors).toEqual([]);
    errors = [];
  });

  async function page(path = ''): Promise<Page> {
    const p = await rig.page();
    p.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    p.on('pageerror', (e) => errors.push(e.message));
    await p.goto(new URL(path, rig.server.url).href);
    return p;
  }

  /** The drop page with the detector opened and verified (its key in from config.json). */
  async function detectorPage(): Promise<Page> {
    const p = await page();
    await p.waitForFunction(() => (document.getElementById('trust') as HTMLTextAreaElement).value.length > 0);
    await p.setInputFiles('#pkg-file', join(FIXTURES, 'detector.xpkg'));
    await expect.poll(() => p.textContent('#verdict'), { timeout: 30_000 }).toMatch(/^Verified/);
    return p;
  }

  it('an image dropped with no type (no extension) runs on the package instead of replacing it', async () => {
    const p = await detectorPage();
    await dropBytes(p, 'body', 'screenshot', shapes);
    await p.waitForSelector('#results li', { timeout: 60_000 });
    expect(await p.textContent('#verdict')).toMatch(/^Verified/);
    expect(await p.textContent('#pkg-name')).toMatch(/^detector/);
    // a package with no type still opens as one (and a damaged one says its code)
    await dropBytes(p, 'body', 'segmenter', await readFile(join(FIXTURES, 'segmenter.xpkg')));
    await expect.poll(() => p.textContent('#pkg-name'), { timeout: 30_000 }).toMatch(/^segmenter/);
    await dropBytes(p, 'body', 'notes', Buffer.alloc(64, 'not a package '));
    await expect.poll(() => p.textContent('#verdict [data-code]'), { timeout: 30_000 }).toBe('E_ARCHIVE_NO_END');
  });

  it('<xpkg-drop>: an image with no type dropped after the package runs it', async () => {
    const p = await page('/web/embed.html');
    await p.waitForFunction(() => customElements.get('xpkg-drop') !== undefined);
    await p.evaluate((key) => {
      const el = document.querySelector('xpkg-drop') as HTMLElement & { trust: string[] };
      el.trust = [key];
      const w = window as unknown as { events: string[] };
      w.events = [];
      for (const type of ['xpkg-verified', 'xpkg-result', 'xpkg-error'])
        el.addEventListener(type, (e) =>
          w.events.push(`${type}:${(e as CustomEvent<{ code?: string }>).detail?.code ?? ''}`),
        );
    }, key);
    const events = () => p.evaluate(() => (window as unknown as { events: string[] }).events);
    await dropBytes(p, 'xpkg-drop', 'detector.xpkg', await readFile(join(FIXTURES, 'detector.xpkg')));
    await expect.poll(events, { timeout: 30_000 }).toEqual(['xpkg-verified:']);
    await dropBytes(p, 'xpkg-drop', 'photo.jfif', shapes);
    await expect.poll(events, { timeout: 60_000 }).toEqual(['xpkg-verified:', 'xpkg-result:']);
  });

  it('a run that fails takes down the picture and timings of the image run before it', async () => {
    const p = await detectorPage();
    await p.setInputFiles('#image-file', SHAPES);
    await p.waitForSelector('#results li', { timeout: 60_000 });
    expect(await p.$eval('#canvas', (c) => (c as HTMLCanvasElement).width)).toBeGreaterThan(0);
    await p.setInputFiles('#image-file', { name: 'cut.png', mimeType: 'image/png', buffer: shapes.subarray(0, 40) });
    await expect.poll(() => p.textContent('#results [data-code]'), { timeout: 30_000 }).toBe('E_RUN_INPUT');
    expect(await p.$eval('#canvas', (c) => (c as HTMLCanvasElement).width)).toBe(0);
    expect(await p.textContent('#timings')).toBe('');
  });

  it('the pickers take the same file again: an image picked, another dropped, the first picked again runs again', async () => {
    const p = await detectorPage();
    const runs = () => p.evaluate(() => performance.getEntriesByName('xpkg:page-ran').length);
    await p.setInputFiles('#image-file', SHAPES);
    await expect.poll(runs, { timeout: 60_000 }).toBe(1);
    await dropBytes(
      p,
      'body',
      'other.png',
      await readFile(join(ROOT, 'fixtures', 'segmenter', 'eval', '000.png')),
      'image/png',
    );
    await expect.poll(runs, { timeout: 60_000 }).toBe(2);
    await p.setInputFiles('#image-file', SHAPES);
    await expect.poll(runs, { timeout: 60_000 }).toBe(3);
    // and the package picker: the detector picked again after another package was dropped opens it again
    await dropBytes(p, 'body', 'segmenter.xpkg', await readFile(join(FIXTURES, 'segmenter.xpkg')));
    await expect.poll(() => p.textContent('#pkg-name'), { timeout: 30_000 }).toMatch(/^segmenter/);
    await p.setInputFiles('#pkg-file', join(FIXTURES, 'detector.xpkg'));
    await expect.poll(() => p.textContent('#pkg-name'), { timeout: 30_000 }).toMatch(/^detector/);
  });

  it('an SVG drawing, a HEIC photo and bytes of no image format are refused with the code `xpkg run` gives them', async () => {
    const svg = Buffer.from(
      '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="9" height="9"/></svg>',
    );
    const cases = [
      { name: 'svg', bytes: svg, type: 'image/svg+xml' },
      { name: 'svg-untyped', bytes: svg, type: '' },
      { name: 'heic', bytes: heic(), type: 'image/heic' },
      { name: 'no-image', bytes: Buffer.alloc(64, 'plain text '), type: 'image/png' },
    ];
    await using node = await Runner.open(join(FIXTURES, 'detector.xpkg'), {
      trust: [KEY],
      rollbackStore: null,
    } as never);
    const p = await page();
    await loadLibrary(p);
    for (const c of cases) {
      const want = await node.run({ image: c.bytes }).then(
        () => 'ran',
        (e: unknown) => toXpkgError(e).code,
      );
      expect(want, c.name).toBe('E_RUN_INPUT_FORMAT');
      const got = await p.evaluate(
        async ({ key, b64, type }) => {
          const { openPackage } = (window as unknown as { xpkg: Lib }).xpkg;
          const pkg = await openPackage('/packages/detector.xpkg', { trust: [key] });
          const image = new Blob([Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0))], { type });
          const code = await pkg.run({ image }).then(
            () => 'ran',
            (e: { code: string }) => e.code,
          );
          await pkg.close();
          return code;
        },
        { key, b64: c.bytes.toString('base64'), type: c.type },
      );
      expect(got, c.name).toBe(want);
    }
  });

  it('a package used after close() is E_USAGE, in the worker as on the page’s thread', async () => {
    const p = await page();
    await loadLibrary(p);
    const codes = await p.evaluate(
      async ({ key, b64 }) => {
        const { openPackage } = (window as unknown as { xpkg: Lib }).xpkg;
        const image = new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], { type: 'image/png' });
        const out: string[] = [];
        for (const worker of [true, false]) {
          const pkg = await openPackage('/packages/detector.xpkg', { trust: [key], worker });
          await pkg.close();
          for (const call of [() => pkg.run({ image }), () => pkg.verify()])
            out.push(
              await call().then(
                () => 'ran',
                (e: { code: string }) => e.code,
              ),
            );
        }
        return out;
      },
      { key, b64: shapes.toString('base64') },
    );
    expect(codes).toEqual(['E_USAGE', 'E_USAGE', 'E_USAGE', 'E_USAGE']);
  });
});
