/// <reference lib="dom" />
// Code handed to page.evaluate runs in the page: it is typed with the DOM library.
/**
 * The image models in Chromium against Node on the same image: the detector's boxes and labels
 * and the segmenter's mask, through the portable kernels and onnxruntime-web, drawn over the image
 * on the page (screenshots in test-results/browser/).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Runner } from '../runner/runner.js';
import { ARTIFACTS, type BrowserRig, BUILT, haveBrowser, type Lib, loadLibrary, startRig } from './helpers/browser.js';

const ROOT = join(import.meta.dirname, '..');
const FIXTURES = join(ROOT, 'fixtures', 'dist');
const KEY = join(ROOT, 'fixtures', 'keys', 'test.pub');

type Box = { box: number[]; score: number; label?: string };

async function nodeRun(pkg: string, inputs: Record<string, unknown>) {
  await using runner = await Runner.open(join(FIXTURES, pkg), { trust: [KEY], rollbackStore: null } as never);
  return await runner.run(inputs);
}

describe.skipIf(!haveBrowser)('image models in Chromium', () => {
  let rig: BrowserRig;
  let key: string;
  beforeAll(async () => {
    if (!BUILT) throw new Error('dist/browser is not built: run npm run build');
    key = await readFile(KEY, 'utf8');
    rig = await startRig({ packages: FIXTURES, trust: [key] });
  });
  afterAll(() => rig?.close());

  it('detector and segmenter: the same boxes, labels and mask as Node, drawn over the image', async () => {
    const cases = [
      { pkg: 'detector.xpkg', image: join(ROOT, 'fixtures', 'detector', 'eval', '000.png') },
      { pkg: 'segmenter.xpkg', image: join(ROOT, 'fixtures', 'segmenter', 'eval', '000.png') },
    ];
    for (const c of cases) {
      const node = await nodeRun(c.pkg, { image: c.image });
      const page = await rig.page();
      await page.goto(rig.server.url);
      await page.waitForFunction(() => (document.getElementById('trust') as HTMLTextAreaElement).value.length > 0);
      await page.setInputFiles('#pkg-file', join(FIXTURES, c.pkg));
      await expect.poll(() => page.textContent('#verdict'), { timeout: 30_000 }).toMatch(/^Verified/);
      await page.setInputFiles('#image-file', c.image);
      await page.waitForSelector('#results li', { timeout: 60_000 });
      const shown = await page.$$eval('#results li', (els) => els.map((e) => e.textContent ?? ''));
      await page.screenshot({ path: join(ARTIFACTS, `${c.pkg.replace('.xpkg', '')}.png`), fullPage: true });
      // The same run through the library, to compare values.
      await loadLibrary(page);
      const png = (await readFile(c.image)).toString('base64');
      const out = await page.evaluate(
        async ({ key, pkg, png }) => {
          const { openPackage } = (window as unknown as { xpkg: Lib }).xpkg;
          const p = await openPackage(`/packages/${pkg}`, { trust: [key] });
          const blob = new Blob([Uint8Array.from(atob(png), (ch) => ch.charCodeAt(0))], { type: 'image/png' });
          const r = await p.run({ image: blob });
          await p.close();
          const o = r.outputs as { boxes?: unknown; mask?: { width: number; height: number; data: Int32Array } };
          return { boxes: o.boxes ?? null, mask: o.mask ? { ...o.mask, data: Array.from(o.mask.data) } : null };
        },
        { key, pkg: c.pkg, png },
      );
      if (c.pkg === 'detector.xpkg') {
        const want = node.outputs.boxes as Box[];
        const got = out.boxes as Box[];
        expect(want.length).toBeGreaterThan(0);
        expect(got.map((b) => b.label)).toEqual(want.map((b) => b.label));
        got.forEach((b, i) => {
          b.box.forEach((v, k) => expect(Math.abs(v - want[i].box[k]), `box ${i}`).toBeLessThan(1));
          expect(Math.abs(b.score - want[i].score)).toBeLessThan(1e-3);
        });
        expect(shown).toHaveLength(want.length);
      } else {
        const want = node.outputs.mask as { width: number; height: number; data: Int32Array };
        const got = out.mask!;
        expect([got.width, got.height]).toEqual([want.width, want.height]);
        let same = 0;
        for (let k = 0; k < want.data.length; k++) if (got.data[k] === want.data[k]) same++;
        expect(same / want.data.length).toBeGreaterThan(0.999);
        expect(shown[0]).toMatch(/^mask: /);
      }
    }
  });
});
