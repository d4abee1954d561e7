/// <reference lib="dom" />
// Code handed to page.evaluate runs in the page: it is typed with the DOM library.
/**
 * A real headless Chromium (Debian's, through playwright-core) on pages served by `xpkg web`'s
 * server on loopback. `.ci/run` installs Chromium where it is missing; elsewhere the browser suites
 * skip, saying so, when no Chromium is found (XPKG_CHROMIUM names another binary).
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type Browser, chromium, type Frame, type Page } from 'playwright-core';
import { startWebServer, type WebServer, type WebServerOptions } from '../../web/server.js';

const ROOT = join(import.meta.dirname, '..', '..');
export const CI = Boolean(process.env.CI);
export const CHROMIUM = [process.env.XPKG_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-headless-shell'].find(
  (p): p is string => Boolean(p && existsSync(p)),
);
export const BUILT =
  existsSync(join(ROOT, 'dist', 'browser', 'xpkg.js')) && existsSync(join(ROOT, 'dist', 'web', 'app.js'));
if (!CHROMIUM && !CI)
  console.warn(
    'test/browser-*: no Chromium here (apt-get install chromium), so the browser suites are SKIPPED (CI installs it)',
  );
/** Runs where Chromium exists, and always in CI (where a missing browser must fail, not skip). */
export const haveBrowser = Boolean(CHROMIUM) || CI;

/** Screenshots and other artifacts of the browser suites. */
export const ARTIFACTS = join(ROOT, 'test-results', 'browser');

export interface BrowserRig {
  browser: Browser;
  server: WebServer;
  page(): Promise<Page>;
  close(): Promise<void>;
}

export async function startRig(options: Omit<WebServerOptions, 'root'> = {}): Promise<BrowserRig> {
  if (!CHROMIUM) throw new Error('no Chromium: install it (apt-get install chromium) or set XPKG_CHROMIUM');
  await mkdir(ARTIFACTS, { recursive: true });
  const server = await startWebServer({ port: 0, root: join(ROOT, 'dist'), ...options });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  const pages: Page[] = [];
  return {
    browser,
    server,
    async page() {
      const p = await browser.newPage({ viewport: { width: 1100, height: 900 } });
      pages.push(p);
      return p;
    },
    async close() {
      await browser.close();
      await server.close();
    },
  };
}

/** The base URL of the rig's server (the page is at /web/). */
export const origin = (rig: BrowserRig) => new URL(rig.server.url).origin;

/** Drops files on an element the way a person's drag and drop does (a DataTransfer on a drop event). */
export async function dropFiles(page: Page, selector: string, files: { url: string; name: string; type?: string }[]) {
  await page.evaluate(
    async ({ selector, files }) => {
      const dt = new DataTransfer();
      for (const f of files) {
        const blob = await (await fetch(f.url)).blob();
        dt.items.add(new File([blob], f.name, { type: f.type ?? '' }));
      }
      const target = document.querySelector(selector)!;
      for (const type of ['dragenter', 'dragover', 'drop'])
        target.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
    },
    { selector, files },
  );
}

/**
 * Makes `xpkg/browser` available as `window.xpkg` on the page (a module script: the functions
 * handed to page.evaluate are rewritten by the test runner and cannot `import()` themselves).
 */
export async function loadLibrary(page: Page): Promise<void> {
  await page.addScriptTag({ type: 'module', content: "import * as x from '/browser/xpkg.js'; window.xpkg = x;" });
  await page.waitForFunction(() => 'xpkg' in window);
}

/** What page code uses of `xpkg/browser` (browser/index.ts; typed here without the DOM library). */
export interface Lib {
  openPackage(
    input: unknown,
    options?: Record<string, unknown>,
  ): Promise<{
    info: { name: string; id: string; bytesRead: number; ms: number; signatures: unknown };
    verify(options?: {
      onProgress?: (p: unknown) => void;
    }): Promise<{ packageId: string; integrity: { ms: number; bytes: number } }>;
    run(
      inputs: Record<string, unknown>,
      options?: { onProgress?: (p: unknown) => void },
    ): Promise<{
      outputs: Record<string, unknown>;
      timings: Record<string, number>;
      runtime: { threads: number } | null;
    }>;
    close(): Promise<void>;
  }>;
}

/** Loads `src` in an iframe of the page and returns its frame once loaded (undefined where none shows up). */
export async function frameIn(page: Page, src: string): Promise<Frame | undefined> {
  await page.evaluate(async (src) => {
    const f = document.createElement('iframe');
    f.src = src;
    const loaded = new Promise((r) => f.addEventListener('load', r, { once: true }));
    document.body.append(f);
    await loaded;
  }, src);
  return page.frames().find((f) => f.url() === src);
}

/** Hands files (bytes from here) to the page's drop handler on `selector`, as a person's drop does. */
export async function dropBytes(page: Page, selector: string, name: string, bytes: Buffer, type = '') {
  await page.evaluate(
    ({ selector, name, b64, type }) => {
      const dt = new DataTransfer();
      dt.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], name, { type }));
      const target = document.querySelector(selector)!;
      for (const t of ['dragenter', 'dragover', 'drop'])
        target.dispatchEvent(new DragEvent(t, { dataTransfer: dt, bubbles: true, cancelable: true }));
    },
    { selector, name, b64: bytes.toString('base64'), type },
  );
}
