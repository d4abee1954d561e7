/// <reference lib="dom" />
// Code handed to page.evaluate runs in the page: it is typed with the DOM library.
/**
 * The page and the library against trust and size, in a real Chromium on loopback: a package
 * signed by nobody trusted is refused with its code; a package opened by URL reads little of it
 * (range requests), and a model too large for the browser is refused before any byte of it is
 * fetched (the server's log of ranges served says so). The same on the page's own thread, and a
 * browser without WebCrypto is told so with a code.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PackageReader } from '../pack/reader.js';
import { type BrowserRig, BUILT, haveBrowser, type Lib, loadLibrary, startRig } from './helpers/browser.js';

const ROOT = join(import.meta.dirname, '..');
const FIXTURES = join(ROOT, 'fixtures', 'dist');
const OCR = join(FIXTURES, 'paddleocr-v4.xpkg');
const KEY = join(ROOT, 'fixtures', 'keys', 'test.pub');

describe.skipIf(!haveBrowser)('trust and size in Chromium', () => {
  let rig: BrowserRig;
  const served: { name: string; start: number; end: number }[] = [];
  beforeAll(async () => {
    if (!BUILT) throw new Error('dist/browser is not built: run npm run build');
    rig = await startRig({
      packages: FIXTURES,
      trust: [await readFile(KEY, 'utf8')],
      onRange: (name, start, end) => served.push({ name, start, end }),
    });
  });
  afterAll(() => rig?.close());

  it('a package signed by nobody trusted is refused with E_TRUST_UNTRUSTED', async () => {
    const page = await rig.page();
    await page.goto(rig.server.url);
    await page.waitForFunction(() => (document.getElementById('trust') as HTMLTextAreaElement).value.length > 0);
    await page.fill('#trust', '');
    await page.setInputFiles('#pkg-file', OCR);
    await expect.poll(() => page.textContent('#verdict [data-code]'), { timeout: 30_000 }).toBe('E_TRUST_UNTRUSTED');
    expect(await page.textContent('#status')).toContain('nobody you trust');
  });

  it('a URL is read in place: opening reads under 1 MiB; a too-large variant is refused before its bytes are fetched', async () => {
    const page = await rig.page();
    await page.goto(rig.server.url);
    await loadLibrary(page);
    const key = await readFile(KEY, 'utf8');
    served.length = 0;
    const opened = await page.evaluate(async (key) => {
      const { openPackage } = (window as unknown as { xpkg: Lib }).xpkg;
      const pkg = await openPackage('/packages/paddleocr-v4.xpkg', { trust: [key], maxModelBytes: 1_000_000 });
      (window as unknown as { pkg: unknown }).pkg = pkg;
      return { signatures: pkg.info.signatures, bytesRead: pkg.info.bytesRead };
    }, key);
    expect(opened.signatures).toMatchObject({ ok: true, status: 'verified' });
    expect(opened.bytesRead).toBeLessThan(1 << 20);
    const atOpen = served.length;
    const refused = await page.evaluate(async () => {
      const pkg = (window as unknown as { pkg: Awaited<ReturnType<Lib['openPackage']>> }).pkg;
      const e = await pkg.run({ image: new Blob() }).then(
        () => null,
        (e: { code?: string; detail?: unknown }) => ({ code: e.code, detail: e.detail }),
      );
      await pkg.close();
      return e;
    });
    expect(refused).toMatchObject({ code: 'E_BROWSER_TOO_LARGE', detail: { model: 'det', limit: 1_000_000 } });
    // Refusing read nothing of the refused models: every range fetched since opening lies outside them.
    await using reader = await PackageReader.open(OCR);
    for (const path of ['models/det/ch_PP-OCRv4_det_infer.onnx', 'models/rec/ch_PP-OCRv4_rec_infer.onnx']) {
      const e = reader.entry(path)!;
      const into = served.slice(atOpen).filter((s) => s.start < e.dataOffset + e.size && s.end > e.dataOffset);
      expect(into, path).toEqual([]);
    }
  });
  it('on the calling thread (worker: false) it verifies the same way; without WebCrypto it says E_BROWSER_UNSUPPORTED', async () => {
    const page = await rig.page();
    await page.goto(rig.server.url);
    await loadLibrary(page);
    const key = await readFile(KEY, 'utf8');
    const r = await page.evaluate(async (key) => {
      const { openPackage } = (window as unknown as { xpkg: Lib }).xpkg;
      const pkg = await openPackage('/packages/multi-variant.xpkg', { trust: [key], worker: false });
      const v = await pkg.verify();
      await pkg.close();
      Object.defineProperty(window.crypto, 'subtle', { get: () => undefined });
      const e = await openPackage('/packages/multi-variant.xpkg', { trust: [key], worker: false }).then(
        () => null,
        (e: { code?: string; detail?: unknown }) => ({ code: e.code, detail: e.detail }),
      );
      return { status: (v as unknown as { signatures: { status: string } }).signatures.status, e };
    }, key);
    expect(r).toEqual({
      status: 'verified',
      e: { code: 'E_BROWSER_UNSUPPORTED', detail: { feature: 'crypto.subtle' } },
    });
  });
});
