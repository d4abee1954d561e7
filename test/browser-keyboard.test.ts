/// <reference lib="dom" />
// Code handed to page.evaluate runs in the page: it is typed with the DOM library.
/**
 * The drop page without a mouse (Tab to labelled file inputs, Space to choose, results announced
 * in the live region), and `<xpkg-drop>` embedded in another page as the README shows: a cancelable
 * drop event, then the manifest, verification and run results as events, and a style hook while
 * something is dragged over it. Real Chromium, real packages, screenshots in test-results/browser/.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FileChooser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectedLines, pages } from '../fixtures/images/render.js';
import { ARTIFACTS, type BrowserRig, BUILT, dropFiles, haveBrowser, startRig } from './helpers/browser.js';

const ROOT = join(import.meta.dirname, '..');
const FIXTURES = join(ROOT, 'fixtures', 'dist');
const OCR = join(FIXTURES, 'paddleocr-v4.xpkg');
const IMAGE = join(ROOT, 'fixtures', 'images', 'example.png');
const KEY = join(ROOT, 'fixtures', 'keys', 'test.pub');
const FIRST_LINE = expectedLines(pages()[0])[0];

/** Tabs forward until the element with `id` has focus (a keyboard user's path to it). */
async function tabTo(page: Page, id: string): Promise<number> {
  for (let n = 1; n <= 20; n++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((id) => document.activeElement?.id === id, id)) return n;
  }
  throw new Error(`#${id} is not reachable with Tab`);
}

/**
 * File choosers as a queue, subscribed before the page loads: Playwright turns on Chromium's chooser
 * interception when the first listener is added, and a listener added in the same breath as the key
 * press raced it under load (the chooser opened unintercepted and no event came).
 */
function chooserQueue(page: Page): () => Promise<FileChooser> {
  const ready: FileChooser[] = [];
  const waiting: ((c: FileChooser) => void)[] = [];
  page.on('filechooser', (c) => {
    const w = waiting.shift();
    if (w) w(c);
    else ready.push(c);
  });
  return () => {
    const c = ready.shift();
    return c ? Promise.resolve(c) : new Promise((resolve) => waiting.push(resolve));
  };
}

describe.skipIf(!haveBrowser)('keyboard and embedding', () => {
  let rig: BrowserRig;
  let key: string;
  beforeAll(async () => {
    if (!BUILT) throw new Error('dist/browser is not built: run npm run build');
    key = await readFile(KEY, 'utf8');
    rig = await startRig({ packages: FIXTURES, trust: [key] });
  });
  afterAll(() => rig?.close());

  it('keyboard only: Tab to the labelled inputs, Space to choose, results announced in the live region', async () => {
    const page = await rig.page();
    const nextChooser = chooserQueue(page);
    await page.goto(rig.server.url);
    await page.waitForFunction(() => (document.getElementById('trust') as HTMLTextAreaElement).value.length > 0);
    const status = page.getByRole('status');
    expect(await status.getAttribute('aria-live')).toBe('polite');
    expect(await page.getByLabel('choose a package file (.xpkg)').getAttribute('id')).toBe('pkg-file');
    await tabTo(page, 'pkg-file');
    await page.keyboard.press('Space');
    const pick = await nextChooser();
    await pick.setFiles(OCR);
    await expect.poll(() => status.textContent(), { timeout: 30_000 }).toMatch(/paddleocr-v4 is verified/);
    expect(await page.getByLabel('choose an image').getAttribute('id')).toBe('image-file');
    await tabTo(page, 'image-file');
    await page.keyboard.press('Space');
    const pick2 = await nextChooser();
    await pick2.setFiles(IMAGE);
    await expect.poll(() => status.textContent(), { timeout: 90_000 }).toContain(FIRST_LINE);
    await page.screenshot({ path: join(ARTIFACTS, 'keyboard-flow.png'), fullPage: true });
  });

  it('<xpkg-drop> embedded in five lines: cancelable drop, manifest, verified and result events, dragging hook', async () => {
    const page = await rig.page();
    await page.goto(new URL('/web/embed.html', rig.server.url).href);
    await page.waitForFunction(() => customElements.get('xpkg-drop') !== undefined);
    await page.evaluate((key) => {
      const el = document.querySelector('xpkg-drop') as HTMLElement & { trust: string[] };
      el.trust = [key];
      const w = window as unknown as { events: { type: string; detail: unknown }[]; cancelNext: boolean };
      w.events = [];
      w.cancelNext = true;
      for (const type of ['xpkg-drop', 'xpkg-manifest', 'xpkg-verified', 'xpkg-result', 'xpkg-error'])
        el.addEventListener(type, (e) => {
          w.events.push({
            type,
            detail: type === 'xpkg-drop' ? null : JSON.parse(JSON.stringify((e as CustomEvent).detail)),
          });
          if (type === 'xpkg-drop' && w.cancelNext) {
            w.cancelNext = false;
            e.preventDefault();
          }
        });
    }, key);
    const events = () =>
      page.evaluate(() => (window as unknown as { events: { type: string; detail: unknown }[] }).events);
    // The style hook while dragging.
    const dragging = await page.evaluate(() => {
      const el = document.querySelector('xpkg-drop')!;
      el.dispatchEvent(
        new DragEvent('dragenter', { bubbles: true, cancelable: true, dataTransfer: new DataTransfer() }),
      );
      const during = el.hasAttribute('dragging');
      el.dispatchEvent(new DragEvent('dragleave', { bubbles: true }));
      return { during, after: el.hasAttribute('dragging') };
    });
    expect(dragging).toEqual({ during: true, after: false });
    // Cancelled: nothing is opened.
    await dropFiles(page, 'xpkg-drop', [{ url: '/packages/paddleocr-v4.xpkg', name: 'paddleocr-v4.xpkg' }]);
    await page.waitForTimeout(500);
    expect((await events()).map((e) => e.type)).toEqual(['xpkg-drop']);
    // Accepted: manifest, then verified.
    await dropFiles(page, 'xpkg-drop', [{ url: '/packages/paddleocr-v4.xpkg', name: 'paddleocr-v4.xpkg' }]);
    await expect.poll(async () => (await events()).map((e) => e.type), { timeout: 30_000 }).toContain('xpkg-verified');
    const ev = await events();
    expect(ev.map((e) => e.type)).toEqual(['xpkg-drop', 'xpkg-drop', 'xpkg-manifest', 'xpkg-verified']);
    expect(ev[2].detail).toMatchObject({ name: 'paddleocr-v4', signatures: { ok: true, status: 'verified' } });
    expect(ev[3].detail).toMatchObject({ ok: true, name: 'paddleocr-v4', signatures: { status: 'verified' } });
    // An image dropped on it runs the package.
    const img = await readFile(IMAGE);
    await page.evaluate(async (b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'example.png', { type: 'image/png' }));
      document
        .querySelector('xpkg-drop')!
        .dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, img.toString('base64'));
    await expect.poll(async () => (await events()).map((e) => e.type), { timeout: 90_000 }).toContain('xpkg-result');
    const result = (await events()).find((e) => e.type === 'xpkg-result')!.detail as {
      result: { outputs: { lines: { text: string }[] } };
    };
    expect(result.result.outputs.lines.map((l) => l.text)).toContain(FIRST_LINE);
    expect(await page.locator('xpkg-drop').getByRole('status').textContent()).toMatch(
      /^paddleocr-v4 ran on example\.png/,
    );
    await page.screenshot({ path: join(ARTIFACTS, 'xpkg-drop-embed.png') });
  });
});
