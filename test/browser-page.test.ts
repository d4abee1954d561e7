/// <reference lib="dom" />
// Code handed to page.evaluate runs in the page: it is typed with the DOM library.
/**
 * The drop page in a real Chromium, served by `xpkg web`'s server on loopback: the shipped OCR
 * package and an image dropped on it show "Verified" and the text Node's runner reads from the same
 * image; a package with one byte flipped in a model shows its code. Screenshots go to
 * test-results/browser/. (test/browser-trust.test.ts: untrusted signers, URLs, too-large models.)
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectedLines, pages } from '../fixtures/images/render.js';
import { PackageReader } from '../pack/reader.js';
import { Runner } from '../runner/runner.js';
import {
  ARTIFACTS,
  type BrowserRig,
  BUILT,
  dropFiles,
  haveBrowser,
  type Lib,
  loadLibrary,
  startRig,
} from './helpers/browser.js';

const ROOT = join(import.meta.dirname, '..');
const OCR = join(ROOT, 'fixtures', 'dist', 'paddleocr-v4.xpkg');
const IMAGE = join(ROOT, 'fixtures', 'images', 'example.png');
const KEY = join(ROOT, 'fixtures', 'keys', 'test.pub');

describe.skipIf(!haveBrowser)('the drop page in Chromium', () => {
  let rig: BrowserRig;
  let dir: string;
  let nodeLines: string[];

  beforeAll(async () => {
    if (!BUILT) throw new Error('dist/browser is not built: run npm run build');
    dir = await mkdtemp(join(tmpdir(), 'xpkg-browser-'));
    await copyFile(OCR, join(dir, 'paddleocr-v4.xpkg'));
    // One byte flipped in the middle of the recognition model: structure and signature still check out.
    const bytes = await readFile(OCR);
    await using r = await PackageReader.open(OCR);
    const rec = r.entry('models/rec/ch_PP-OCRv4_rec_infer.onnx')!;
    bytes[rec.dataOffset + (rec.size >> 1)] ^= 0x01;
    await writeFile(join(dir, 'flipped.xpkg'), bytes);
    rig = await startRig({ packages: dir, trust: [await readFile(KEY, 'utf8')] });
    // the page's CPU (WebAssembly) takes the float32 recogniser: Node reads with the same one
    await using runner = await Runner.open(OCR, { trust: [KEY], rollbackStore: null, precision: 'fp32' } as never);
    const out = await runner.run({ image: IMAGE });
    nodeLines = (out.outputs.lines as { text: string }[]).map((l) => l.text);
  });
  afterAll(async () => {
    await rig?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('dropping the OCR package and an image shows "Verified" and the text Node reads', async () => {
    const page = await rig.page();
    await page.goto(rig.server.url);
    await page.waitForFunction(() => (document.getElementById('trust') as HTMLTextAreaElement).value.length > 0);
    await dropFiles(page, 'body', [{ url: '/packages/paddleocr-v4.xpkg', name: 'paddleocr-v4.xpkg' }]);
    await expect.poll(() => page.textContent('#verdict'), { timeout: 30_000 }).toMatch(/^Verified/);
    expect(await page.textContent('#signers')).toMatch(/Trusted signers: [0-9a-f]{16}/);
    expect(await page.textContent('#variants')).toContain('rec-cpu-fp32');
    await page.setInputFiles('#image-file', IMAGE);
    await page.waitForSelector('#results li', { timeout: 90_000 });
    const lines = await page.$$eval('#results li', (els) => els.map((e) => e.textContent));
    expect(lines).toEqual(nodeLines);
    expect(nodeLines.join('\n')).toContain(expectedLines(pages()[0])[0]);
    expect(await page.textContent('#status')).toContain('result(s)');
    expect(await page.textContent('#timings')).toMatch(/infer:rec [\d.]+ ms .* \d+ thread/);
    await page.screenshot({ path: join(ARTIFACTS, 'ocr-verified.png'), fullPage: true });
  });

  it('a dropped File read as the page reads it (models loading while it verifies, then a run) reads each byte once', async () => {
    const page = await rig.page();
    await page.goto(rig.server.url);
    await loadLibrary(page);
    const png = (await readFile(IMAGE)).toString('base64');
    const r = await page.evaluate(
      async ({ key, png }) => {
        const { openPackage } = (window as unknown as { xpkg: Lib }).xpkg;
        const file = new File([await (await fetch('/packages/paddleocr-v4.xpkg')).blob()], 'paddleocr-v4.xpkg');
        const pkg = (await openPackage(file, { trust: [key] })) as Awaited<ReturnType<Lib['openPackage']>> & {
          prepare(): Promise<void>;
        };
        const [, verified] = await Promise.all([pkg.prepare(), pkg.verify()]);
        const image = new Blob([Uint8Array.from(atob(png), (c) => c.charCodeAt(0))], { type: 'image/png' });
        const run = (await pkg.run({ image })) as unknown as { bytesRead: number; outputs: { lines: unknown[] } };
        await pkg.close();
        return {
          size: file.size,
          verified: (verified as unknown as { bytesRead: number }).bytesRead,
          ran: run.bytesRead,
          lines: run.outputs.lines.length,
        };
      },
      { key: await readFile(KEY, 'utf8'), png },
    );
    expect(r.lines).toBe(nodeLines.length);
    // Opening reads a few 64 KiB windows (headers, manifest, signatures); every payload byte once.
    expect(r.ran).toBeGreaterThanOrEqual(r.size - 64 * 1024);
    expect(r.ran).toBeLessThanOrEqual(r.size + 512 * 1024);
    expect(r.verified).toBe(r.ran);
  });

  it('a package with one byte flipped in a model shows E_DIGEST_MISMATCH', async () => {
    const page = await rig.page();
    await page.goto(rig.server.url);
    await page.waitForFunction(() => (document.getElementById('trust') as HTMLTextAreaElement).value.length > 0);
    await page.setInputFiles('#pkg-file', join(dir, 'flipped.xpkg'));
    await expect.poll(() => page.textContent('#verdict'), { timeout: 30_000 }).toMatch(/^Not verified/);
    expect(await page.textContent('#verdict [data-code]')).toBe('E_DIGEST_MISMATCH');
    expect(await page.textContent('#status')).toContain('changed after it was made');
    expect(await page.isVisible('#run')).toBe(false);
    await page.screenshot({ path: join(ARTIFACTS, 'flipped-byte.png'), fullPage: true });
  });

  it('an image waiting runs before the whole package is verified; a package that then fails shows no results', async () => {
    const page = await rig.page();
    await page.goto(rig.server.url);
    await page.waitForFunction(() => (document.getElementById('trust') as HTMLTextAreaElement).value.length > 0);
    // the image first, then the package: the run starts once the signed manifest is trusted
    await page.setInputFiles('#image-file', IMAGE);
    await page.setInputFiles('#pkg-file', join(dir, 'flipped.xpkg'));
    await expect.poll(() => page.textContent('#verdict'), { timeout: 30_000 }).toMatch(/^Not verified/);
    await page.waitForTimeout(500);
    expect(await page.textContent('#results')).toBe('');
    expect(await page.isVisible('#run')).toBe(false);
    // the intact package with the same image waiting: its text shows, and it ran once
    await page.setInputFiles('#pkg-file', OCR);
    await expect.poll(() => page.textContent('#verdict'), { timeout: 60_000 }).toMatch(/^Verified/);
    await expect.poll(() => page.textContent('#results'), { timeout: 60_000 }).toContain(nodeLines[0]);
    const marks = await page.evaluate(() => {
      const at = (n: string) => performance.getEntriesByName(n).map((e) => e.startTime);
      return { ran: at('xpkg:page-ran'), started: at('xpkg:page-run-start'), verified: at('xpkg:page-verified') };
    });
    expect(marks.ran).toHaveLength(1);
    // started (on the intact package: the second start) while the package was still verifying
    expect(marks.started).toHaveLength(2);
    expect(marks.verified).toHaveLength(1);
    expect(marks.started[1]).toBeLessThan(marks.verified[0]);
  });

  it('a package opened while another one runs: only the last one shows', async () => {
    const page = await rig.page();
    await page.goto(rig.server.url);
    await page.waitForFunction(() => (document.getElementById('trust') as HTMLTextAreaElement).value.length > 0);
    await page.setInputFiles('#image-file', IMAGE);
    await page.setInputFiles('#pkg-file', OCR);
    // the OCR package's run has started (a second or more in the browser) when the next one opens
    await page.waitForFunction(() => performance.getEntriesByName('xpkg:page-run-start').length > 0);
    await page.setInputFiles('#pkg-file', join(dir, 'flipped.xpkg'));
    await expect.poll(() => page.textContent('#verdict [data-code]'), { timeout: 30_000 }).toBe('E_DIGEST_MISMATCH');
    // the first package's run, ended by its close, and its verification change nothing after
    await page.waitForTimeout(3000);
    expect(await page.textContent('#verdict [data-code]')).toBe('E_DIGEST_MISMATCH');
    expect(await page.textContent('#results')).toBe('');
  });
});
