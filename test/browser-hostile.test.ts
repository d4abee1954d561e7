/// <reference lib="dom" />
// Code handed to page.evaluate runs in the page: it is typed with the DOM library.
/**
 * The drop page and `<xpkg-drop>` in a real Chromium against what a hostile package or a hurried
 * person gives them: a package whose manifest text is HTML and whose script's `json` outputs are
 * anything but the boxes and masks the page draws (shown escaped, the malformed left out, never a
 * page stuck at "Running…"); a package opening slowly from a URL overtaken by one dropped after it
 * (the page and the element show the last one, never the first over its verdict); `?package=` URLs
 * of other schemes (a code, nothing run).
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addOneModel } from '../fixtures/onnx-tiny.js';
import { packFolder } from '../pack/pack.js';
import { startWebServer } from '../web/server.js';
import { type BrowserRig, BUILT, dropFiles, frameIn, haveBrowser, loadLibrary, startRig } from './helpers/browser.js';

const ROOT = join(import.meta.dirname, '..');
const FIXTURES = join(ROOT, 'fixtures', 'dist');
const IMAGE = join(ROOT, 'fixtures', 'images', 'example.png');
const KEY = join(ROOT, 'fixtures', 'keys', 'test.pub');
const HTML = '<img src=x onerror="window.__pwned=1">';

/** An unsigned package with HTML for text and a script whose `json` outputs are every malformed shape. */
async function hostilePackage(dir: string, name = 'hostile', spin = 0): Promise<string> {
  const src = join(dir, `src-${name}`);
  await mkdir(join(src, 'models'), { recursive: true });
  await mkdir(join(src, 'scripts'));
  await writeFile(join(src, 'models', 'add.onnx'), addOneModel());
  const items = [
    null,
    7,
    'x',
    {},
    { box: [] },
    { box: [[0]] },
    { box: [0, 0, 'a', 1] },
    { box: [1, 1, 8, 8], text: 5 },
    { box: [1, 1, 8, 8], label: HTML, score: 0.5 },
    {
      box: [
        [0, 0],
        [4, 0],
        [4, 4],
        [0, 4],
      ],
      text: '<b>bold</b>',
    },
  ];
  const mask = { width: 100000, height: 100000, data: [1] };
  await writeFile(
    join(src, 'scripts', 'out.js'),
    // `spin`: loop iterations first (a run that takes a while)
    `export function out() { let x = 0; for (let i = 0; i < ${spin}; i++) x += i; return { items: ${JSON.stringify(items)}, mask: ${JSON.stringify(mask)} }; }`,
  );
  await writeFile(
    join(src, 'xpkg.json'),
    JSON.stringify({
      name: 'hostile-outputs',
      version: '1.0.0',
      sequence: 1,
      license: HTML,
      task: 'test',
      description: HTML,
      inputs: [{ name: 'image', type: 'image' }],
      outputs: [
        { name: 'items', type: 'json' },
        { name: 'mask', type: 'json' },
      ],
      models: [
        { id: 'add', variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['models/add.onnx'] }] },
      ],
      pipeline: {
        scripts: [{ path: 'scripts/out.js', hooks: ['out'], policy: { memoryMiB: 16, timeMs: 5000 } }],
        steps: [
          { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
          {
            op: 'script',
            script: 'scripts/out.js',
            hook: 'out',
            params: { inputs: {}, outputs: { items: 'items', mask: 'mask' }, as: { items: 'json', mask: 'json' } },
          },
        ],
      },
    }),
  );
  const out = join(dir, 'packages', `${name}.xpkg`);
  await packFolder(src, out);
  return out;
}

describe.skipIf(!haveBrowser)('the drop page and <xpkg-drop> against hostile packages and hurried people', () => {
  let rig: BrowserRig;
  let dir: string;

  beforeAll(async () => {
    if (!BUILT) throw new Error('dist/browser is not built: run npm run build');
    dir = await mkdtemp(join(tmpdir(), 'xpkg-browser-hostile-'));
    await mkdir(join(dir, 'packages'));
    for (const n of ['detector.xpkg', 'multi-variant.xpkg', 'paddleocr-v4.xpkg'])
      await copyFile(join(FIXTURES, n), join(dir, 'packages', n));
    await hostilePackage(dir);
    await hostilePackage(dir, 'slow', 20_000_000);
    rig = await startRig({ packages: join(dir, 'packages'), trust: [await readFile(KEY, 'utf8')] });
  });
  afterAll(async () => {
    await rig?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('shows a hostile package text as text and its malformed outputs left out, never stuck at "Running…"', async () => {
    const page = await rig.page();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(rig.server.url);
    await page.check('#allow-unsigned');
    await page.setInputFiles('#pkg-file', join(dir, 'packages', 'hostile.xpkg'));
    await expect.poll(() => page.textContent('#verdict'), { timeout: 30_000 }).toMatch(/^Intact, unsigned/);
    expect(await page.textContent('#pkg-meta')).toContain(HTML);
    await page.setInputFiles('#image-file', IMAGE);
    await expect.poll(() => page.getAttribute('#status', 'data-kind'), { timeout: 30_000 }).toBe('ok');
    const lines = await page.$$eval('#results li', (els) => els.map((e) => e.textContent));
    expect(lines).toEqual(['5', `${HTML} 50%`, '<b>bold</b>']);
    expect(await page.$$eval('img, b', (els) => els.length)).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    expect(errors).toEqual([]);
  });

  it('an image chosen while another runs shows its own results, never the earlier image results over them', async () => {
    const page = await rig.page();
    await page.goto(rig.server.url);
    await page.check('#allow-unsigned');
    await page.setInputFiles('#pkg-file', join(dir, 'packages', 'hostile.xpkg'));
    await expect.poll(() => page.textContent('#verdict'), { timeout: 30_000 }).toMatch(/^Intact, unsigned/);
    await page.evaluate(async () => {
      const images: File[] = [];
      // a large image (slow to decode) first, then a small one: the small one's run ends first
      for (const side of [4000, 64]) {
        const c = new OffscreenCanvas(side, side);
        const g = c.getContext('2d')!;
        for (let i = 0; i < 3000; i++) {
          g.fillStyle = `hsl(${i % 360}, 60%, ${(i * 7) % 100}%)`;
          g.fillRect((i * 7919) % side, (i * 104729) % side, 40, 40);
        }
        images.push(new File([await c.convertToBlob({ type: 'image/png' })], `${side}.png`, { type: 'image/png' }));
      }
      const input = document.getElementById('image-file') as HTMLInputElement;
      for (const f of images) {
        const dt = new DataTransfer();
        dt.items.add(f);
        input.files = dt.files;
        input.dispatchEvent(new Event('change'));
      }
    });
    // both runs over (each marks its end), then the drawing is the small image's
    await expect
      .poll(() => page.evaluate(() => performance.getEntriesByName('xpkg:page-ran').length), { timeout: 30_000 })
      .toBe(2);
    await page.waitForTimeout(1000);
    expect(await page.evaluate(() => (document.getElementById('canvas') as HTMLCanvasElement).width)).toBe(64);
    expect(await page.getAttribute('#status', 'data-kind')).toBe('ok');
  });

  it('a package opening slowly from ?package= and overtaken by a dropped one never replaces it', async () => {
    const context = await rig.browser.newContext();
    let pending = 0;
    let answered = 0;
    await context.route('**/packages/detector.xpkg', async (route) => {
      pending++;
      await new Promise((r) => setTimeout(r, 1000));
      pending--;
      answered++;
      await route.continue().catch(() => {});
    });
    try {
      const page = await context.newPage();
      await page.goto(`${rig.server.url}?package=/packages/detector.xpkg`);
      await expect.poll(() => pending, { timeout: 10_000 }).toBeGreaterThan(0);
      await dropFiles(page, 'body', [{ url: '/packages/multi-variant.xpkg', name: 'multi-variant.xpkg' }]);
      await expect.poll(() => page.textContent('#verdict'), { timeout: 30_000 }).toMatch(/^Verified/);
      // the slow one's reads all answered, and time for it to have opened and shown itself
      await expect.poll(() => answered > 0 && pending === 0, { timeout: 20_000 }).toBe(true);
      await page.waitForTimeout(2500);
      expect(pending).toBe(0);
      expect(await page.textContent('#pkg-name')).toBe('multi-variant-add-one 1.0.0');
      expect(await page.textContent('#verdict')).toMatch(/^Verified/);
    } finally {
      await context.close();
    }
  });

  it('<xpkg-drop>: a package dropped while another opens speaks last; the first is closed unseen', async () => {
    const page = await rig.page();
    await page.goto(`${new URL(rig.server.url).origin}/web/embed.html`);
    await loadLibrary(page);
    const events = await page.evaluate(async () => {
      await customElements.whenDefined('xpkg-drop');
      const el = document.getElementById('drop') as HTMLElement & {
        accept(f: File): Promise<void>;
        package: unknown;
      };
      const seen: string[] = [];
      for (const type of ['xpkg-manifest', 'xpkg-verified', 'xpkg-error'])
        el.addEventListener(type, (e) => {
          const d = (e as CustomEvent).detail as { name?: string; code?: string; stage?: string };
          seen.push(`${type} ${d.name ?? d.code} ${d.stage ?? ''}`.trim());
        });
      const big = new File(
        [await (await fetch('/packages/paddleocr-v4.xpkg', { headers: { Range: 'bytes=0-' } })).blob()],
        'a.xpkg',
      );
      const junk = new File([new Uint8Array(64)], 'b.xpkg');
      await Promise.all([el.accept(big), el.accept(junk)]);
      await new Promise((r) => setTimeout(r, 1500));
      return { seen, package: el.package === null };
    });
    expect(events.seen).toEqual(['xpkg-error E_ARCHIVE_NO_END open']);
    expect(events.package).toBe(true);
  });

  it('<xpkg-drop>: an image dropped while the package still opens waits for it and runs it', async () => {
    const page = await rig.page();
    await page.goto(`${new URL(rig.server.url).origin}/web/embed.html`);
    await loadLibrary(page);
    const png = (await readFile(IMAGE)).toString('base64');
    const seen = await page.evaluate(async (png) => {
      await customElements.whenDefined('xpkg-drop');
      const el = document.getElementById('drop') as HTMLElement & { accept(f: File): Promise<void> };
      el.setAttribute('allow-unsigned', '');
      const seen: string[] = [];
      for (const type of ['xpkg-manifest', 'xpkg-verified', 'xpkg-result', 'xpkg-error'])
        el.addEventListener(type, (e) => seen.push(`${type} ${(e as CustomEvent).detail?.code ?? ''}`.trim()));
      const pkg = new File(
        [await (await fetch('/packages/hostile.xpkg', { headers: { Range: 'bytes=0-' } })).blob()],
        'h.xpkg',
      );
      const image = new File([Uint8Array.from(atob(png), (c) => c.charCodeAt(0))], 'example.png', {
        type: 'image/png',
      });
      await Promise.all([el.accept(pkg), el.accept(image)]);
      return seen.sort();
    }, png);
    expect(seen).toEqual(['xpkg-manifest', 'xpkg-result', 'xpkg-verified']);
  });

  it('<xpkg-drop>: a run of a package replaced while it ran reports nothing', async () => {
    const page = await rig.page();
    await page.goto(`${new URL(rig.server.url).origin}/web/embed.html`);
    await loadLibrary(page);
    const png = (await readFile(IMAGE)).toString('base64');
    const late = await page.evaluate(async (png) => {
      await customElements.whenDefined('xpkg-drop');
      const el = document.getElementById('drop') as HTMLElement & { accept(f: File): Promise<void> };
      el.setAttribute('allow-unsigned', '');
      const file = async (url: string, name: string) =>
        new File([await (await fetch(url, { headers: { Range: 'bytes=0-' } })).blob()], name);
      const seen: string[] = [];
      for (const type of ['xpkg-manifest', 'xpkg-verified', 'xpkg-result', 'xpkg-error', 'xpkg-progress'])
        el.addEventListener(type, () => seen.push(type));
      await el.accept(await file('/packages/slow.xpkg', 'slow.xpkg'));
      const image = new File([Uint8Array.from(atob(png), (c) => c.charCodeAt(0))], 'example.png', {
        type: 'image/png',
      });
      const running = el.accept(image);
      await new Promise((r) => setTimeout(r, 150));
      seen.length = 0;
      await el.accept(await file('/packages/hostile.xpkg', 'hostile.xpkg'));
      await running;
      await new Promise((r) => setTimeout(r, 500));
      return seen.filter((t) => t !== 'xpkg-progress');
    }, png);
    // the new package's events only: nothing of the slow one's run, ended or failed by its close
    expect(late).toEqual(['xpkg-manifest', 'xpkg-verified']);
  });

  it('another site cannot frame the drop page (even served without isolation)', async () => {
    const open = await startWebServer({ port: 0, root: join(ROOT, 'dist'), isolation: false });
    const port = new URL(open.url).port;
    const page = await rig.page();
    try {
      // localhost and 127.0.0.1 are two origins of the one server
      await page.goto(`http://localhost:${port}/web/embed.html`);
      const framed = async (src: string) => {
        const frame = await frameIn(page, src);
        return frame ? (await frame.$('#trust')) !== null : false;
      };
      expect(await framed(`http://localhost:${port}/web/`)).toBe(true);
      expect(await framed(`http://127.0.0.1:${port}/web/`)).toBe(false);
    } finally {
      await page.close();
      await open.close();
    }
  });

  it('?package= of another scheme, or no URL at all, is refused with E_BROWSER_FETCH and runs nothing', async () => {
    const page = await rig.page();
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    for (const url of [
      'javascript:alert(1)',
      `data:text/html,${HTML}`,
      'file:///etc/passwd',
      HTML,
      'http://[',
      'https://:0/',
    ]) {
      await page.goto(`${rig.server.url}?package=${encodeURIComponent(url)}`);
      await expect.poll(() => page.textContent('#verdict [data-code]'), { timeout: 20_000 }).toBe('E_BROWSER_FETCH');
      expect(await page.$$eval('#verdict img', (els) => els.length)).toBe(0);
    }
    expect(dialogs).toEqual([]);
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
  });
});
