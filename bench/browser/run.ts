/// <reference lib="dom" />
// Code handed to page.evaluate runs in the page: it is typed with the DOM library.
/**
 * The browser figures of issue #13, measured in Debian's Chromium (headless, playwright-core) on
 * pages served by `xpkg web`'s server on loopback, each printed beside its limit in one run:
 *
 *  1. open: drop → manifest and signers on screen for a signed package with a 200 MB model
 *     (limit 100 ms and 1 MiB read);
 *  2. verify: drop → fully verified, against the hashing limit measured beside it in the same
 *     browser (WebCrypto SHA-256 over the same 4 MiB blocks from the same File; limit 1.2×), and
 *     the browser's memory growth meanwhile (RSS of its processes; limit 64 MiB);
 *  3. OCR per image, onnxruntime-web on one thread, against Node's runner on the same images
 *     (limit 3.5×), and the threaded figure on the cross-origin-isolated page;
 *  4. cold page to first OCR result (package by URL; limit 3 s), a first visit and a repeat one
 *     (bench/browser/cold.ts; `--baseline DIR` measures another build beside it);
 *  5. first-visit download of the page without a package (bytes on the wire; limit 5 MB).
 *
 *   npm run build && npm run fixtures && npx tsx bench/browser/run.ts [--mb 200] [--images 3] [--runs 3] [--only cold|verify|ocr] [--baseline DIR]
 *
 * XPKG_BENCH_MEMORY=1 also prints, per verification, the growth of the browser's memory by kind
 * (RSS, anonymous, shared, PSS: proc.ts memoryByProcess) and the anonymous growth by process.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { pages, renderPng } from '../../fixtures/images/render.js';
import { packFolder } from '../../pack/pack.js';
import { Runner } from '../../runner/runner.js';
import { sign } from '../../signing/sign.js';
import { oneModelManifest, writeSource } from '../../test/helpers/source.js';
import { startWebServer } from '../../web/server.js';
import { arg, median } from '../util.js';
import { CHROMIUM, coldFigures, row } from './cold.js';
import { descendantsRss, MEMORY_KINDS, memoryByProcess, type ProcessMemory, totalMemory } from './proc.js';

const ROOT = join(import.meta.dirname, '..', '..');
const OUT = join(ROOT, 'bench', 'out', 'browser');
const KEY = join(ROOT, 'fixtures', 'keys', 'test');
const OCR = join(ROOT, 'fixtures', 'dist', 'paddleocr-v4.xpkg');
const MB = Number(arg('mb') ?? 200);
const IMAGES = Number(arg('images') ?? 3);
const RUNS = Number(arg('runs') ?? 3);
/** `--only cold`: the cold page figures alone (4, 5); `--only verify`: figure 2 alone. */
const COLD_ONLY = arg('only') === 'cold';
const OCR_ONLY = arg('only') === 'ocr';
const VERIFY_ONLY = arg('only') === 'verify';

/** A signed package holding one `mb` MB model of random bytes (built once, kept in bench/out). */
async function bigPackage(): Promise<string> {
  const out = join(OUT, `model-${MB}mb.xpkg`);
  if (existsSync(out)) return out;
  const src = join(OUT, `model-${MB}mb-src`);
  const bytes = Buffer.allocUnsafe(MB * 1e6);
  for (let i = 0; i < bytes.length; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  writeSource({ 'models/big.onnx': bytes }, oneModelManifest(), src, false);
  await packFolder(src, out);
  await sign(out, { key: `${KEY}.key`, passphrase: null });
  await rm(src, { recursive: true, force: true });
  return out;
}

async function withLibrary(page: Page): Promise<void> {
  await page.addScriptTag({ type: 'module', content: "import * as x from '/browser/xpkg.js'; window.xpkg = x;" });
  await page.waitForFunction(() => 'xpkg' in window);
}

/** A page of the server at `url` with the library and the big package's File in a hidden input (#bench-file). */
async function filePage(browser: Browser, url: string, file: string): Promise<Page> {
  const page = await browser.newPage();
  await page.goto(url);
  await page.waitForFunction(() => (document.getElementById('trust') as HTMLTextAreaElement).value.length > 0);
  await withLibrary(page);
  // The File as a dropped one is: picked by path through a detached input.
  await page.evaluate(() => {
    const i = document.createElement('input');
    i.type = 'file';
    i.id = 'bench-file';
    i.hidden = true;
    document.body.append(i);
  });
  await page.setInputFiles('#bench-file', file);
  return page;
}

/** One `pkg.verify()` of the File on `page`: its time, and the growth of the browser's RSS meanwhile (sampled every 25 ms). */
async function verifyOnce(page: Page, trust: string): Promise<{ ms: number; growth: number }> {
  const base = descendantsRss();
  let peak = base;
  // XPKG_BENCH_MEMORY: the growth by kind and by process too (one /proc walk a sample)
  const breakdown = Boolean(process.env.XPKG_BENCH_MEMORY);
  const m0 = breakdown ? memoryByProcess() : new Map<number, ProcessMemory>();
  const total0 = totalMemory(m0);
  const totalPeak = { ...total0 };
  const anonPeak = new Map<number, number>();
  const sampler = setInterval(() => {
    peak = Math.max(peak, descendantsRss());
    if (!breakdown) return;
    const m = memoryByProcess();
    const total = totalMemory(m);
    for (const k of MEMORY_KINDS) totalPeak[k] = Math.max(totalPeak[k], total[k]);
    for (const [pid, v] of m) anonPeak.set(pid, Math.max(anonPeak.get(pid) ?? 0, v.anon - (m0.get(pid)?.anon ?? 0)));
  }, 25);
  const ms = await page.evaluate(async (trust) => {
    const file = (document.getElementById('bench-file') as HTMLInputElement).files![0];
    const { openPackage } = (window as unknown as { xpkg: typeof import('../../browser/index.js') }).xpkg;
    const pkg = await openPackage(file, { trust: [trust] });
    const t0 = performance.now();
    await pkg.verify();
    const t1 = performance.now();
    await pkg.close();
    return t1 - t0;
  }, trust);
  clearInterval(sampler);
  if (breakdown)
    console.error(
      `verify growth MiB: ${MEMORY_KINDS.map((k) => `${k} ${((totalPeak[k] - total0[k]) / 2 ** 20).toFixed(1)}`).join(', ')}; anon by process: ${[
        ...anonPeak,
      ]
        .filter(([, v]) => v > 2 ** 20)
        .map(([pid, v]) => `${m0.get(pid)?.type ?? 'new'} ${(v / 2 ** 20).toFixed(1)}`)
        .join(', ')}`,
    );
  return { ms, growth: peak - base };
}

/**
 * The model read whole for running (`pkg.prepare()`; the big package's model is random bytes, so
 * onnxruntime-web refuses it after the read): the growth of the browser's RSS meanwhile.
 */
async function loadOnce(page: Page, trust: string): Promise<number> {
  const base = descendantsRss();
  let peak = base;
  const sampler = setInterval(() => (peak = Math.max(peak, descendantsRss())), 25);
  await page.evaluate(async (trust) => {
    const file = (document.getElementById('bench-file') as HTMLInputElement).files![0];
    const { openPackage } = (window as unknown as { xpkg: typeof import('../../browser/index.js') }).xpkg;
    const pkg = await openPackage(file, { trust: [trust] });
    await pkg.prepare().catch(() => {});
    await pkg.close();
  }, trust);
  clearInterval(sampler);
  return peak - base;
}

async function main(): Promise<void> {
  if (!CHROMIUM) throw new Error('no Chromium: apt-get install chromium (or set XPKG_CHROMIUM)');
  if (!existsSync(join(ROOT, 'dist', 'browser', 'xpkg.js')) || !existsSync(OCR))
    throw new Error('run npm run build && npm run fixtures first');
  await mkdir(OUT, { recursive: true });
  const big = COLD_ONLY || OCR_ONLY ? '' : await bigPackage();
  const folder = join(OUT, 'served');
  await rm(folder, { recursive: true, force: true });
  await mkdir(join(folder, 'images'), { recursive: true });
  await symlink(OCR, join(folder, 'paddleocr-v4.xpkg'));
  const images: string[] = [];
  for (const p of pages().slice(0, IMAGES)) {
    const f = join(folder, 'images', `${p.name}.png`);
    await writeFile(f, await renderPng(p));
    images.push(f);
  }
  const trust = readFileSync(`${KEY}.pub`, 'utf8');
  const server = await startWebServer({
    port: 0,
    // `--dist DIR`: serve another build of the page and bundle (a before/after comparison).
    root: arg('dist') ?? join(ROOT, 'dist'),
    packages: folder,
    trust: [trust],
  });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  console.log(`Chromium ${browser.version()}, ${server.url}; ${MB} MB model package, ${IMAGES} images, ${RUNS} runs`);
  console.log(
    `load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} on ${availableParallelism()} cores`,
  );
  console.log(`${'figure'.padEnd(58)} ${'measured'.padStart(16)}   ${'limit'.padEnd(22)}`);
  try {
    if (!COLD_ONLY && !OCR_ONLY) {
      // --- 1. open, 2. verify ------------------------------------------------------------------
      const page = await filePage(browser, server.url, big);
      const opens: number[] = [];
      let bytesRead = 0;
      for (let k = 0; k < (VERIFY_ONLY ? 0 : RUNS + 1); k++) {
        const r = await page.evaluate(async () => {
          const file = (document.getElementById('bench-file') as HTMLInputElement).files![0];
          const signers = document.getElementById('signers')!;
          signers.textContent = '';
          const shown = new Promise<number>((resolve) => {
            const o = new MutationObserver(() => {
              if (signers.textContent) {
                o.disconnect();
                resolve(performance.now());
              }
            });
            o.observe(signers, { childList: true, subtree: true, characterData: true });
          });
          const dt = new DataTransfer();
          dt.items.add(file);
          const t0 = performance.now();
          document.body.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
          const t1 = await shown;
          const status = document.getElementById('status')!.textContent ?? '';
          return { ms: t1 - t0, status };
        });
        if (k > 0) opens.push(r.ms); // the first warms the worker up
        const m = /\(([\d.]+) (B|KiB|MiB) read\)/.exec(r.status);
        if (m) bytesRead = Number(m[1]) * (m[2] === 'MiB' ? 2 ** 20 : m[2] === 'KiB' ? 1024 : 1);
        await page.waitForSelector('[data-verdict]', { timeout: 120_000 });
      }
      if (!VERIFY_ONLY) {
        const openMs = median(opens);
        row(
          `drop → manifest and signers on screen (${MB} MB model)`,
          `${openMs.toFixed(1)} ms`,
          '≤ 100 ms',
          openMs <= 100,
        );
        row('  bytes read to show them', `${(bytesRead / 1024).toFixed(1)} KiB`, '≤ 1 MiB', bytesRead <= 2 ** 20);
      }

      // `--baseline DIR`: the same verification by another build, on a page of its own server, runs interleaved.
      const baseServer = arg('baseline')
        ? await startWebServer({ port: 0, root: arg('baseline')!, packages: folder, trust: [trust] })
        : null;
      const basePage = baseServer ? await filePage(browser, baseServer.url, big) : null;
      const baseVerifies: number[] = [];
      let baseGrowth = 0;
      const verifies: number[] = [];
      const limits: number[] = [];
      let growth = 0;
      for (let k = 0; k < RUNS; k++) {
        // The hashing limit: WebCrypto over the same 4 MiB blocks of the same File, 4 in flight, in a worker.
        limits.push(
          await page.evaluate(async () => {
            const file = (document.getElementById('bench-file') as HTMLInputElement).files![0];
            const src = `onmessage = async (e) => { const f = e.data; const bs = 4194304; let next = 0; const t0 = performance.now();
            const lane = async () => { for (;;) { const k = next++; if (k * bs >= f.size) return;
              await crypto.subtle.digest('SHA-256', await f.slice(k * bs, (k + 1) * bs).arrayBuffer()); } };
            await Promise.all([lane(), lane(), lane(), lane()]); postMessage(performance.now() - t0); };`;
            const w = new Worker(URL.createObjectURL(new Blob([src], { type: 'text/javascript' })));
            const ms = await new Promise<number>((resolve) => {
              w.onmessage = (e) => resolve(e.data as number);
              w.postMessage(file);
            });
            w.terminate();
            return ms;
          }),
        );
        // Which build goes first alternates (a garbage collection left over from one lands in the other's window).
        const baseline = async () => {
          if (!basePage) return;
          const b = await verifyOnce(basePage, trust);
          baseVerifies.push(b.ms);
          baseGrowth = Math.max(baseGrowth, b.growth);
        };
        if (k % 2) await baseline();
        const r = await verifyOnce(page, trust);
        verifies.push(r.ms);
        growth = Math.max(growth, r.growth);
        if (!(k % 2)) await baseline();
      }
      const v = median(verifies);
      const lim = median(limits);
      row('drop → fully verified, same package', `${v.toFixed(0)} ms`, '', true);
      row('  WebCrypto over the same blocks (the hashing limit)', `${lim.toFixed(0)} ms`, '', true);
      row('  ratio verify / hashing limit', `${(v / lim).toFixed(2)}×`, '≤ 1.2×', v / lim <= 1.2);
      row(
        '  browser memory growth while verifying (RSS)',
        `${(growth / 2 ** 20).toFixed(1)} MiB`,
        '≤ 64 MiB',
        growth <= 64 * 2 ** 20,
      );
      // The load path: the model's bytes read whole for running (a model of MB MB needs MB MB; the rest is the read's).
      const loads: number[] = [];
      const baseLoads: number[] = [];
      for (let k = 0; k < RUNS; k++) {
        if (basePage && k % 2) baseLoads.push(await loadOnce(basePage, trust));
        loads.push(await loadOnce(page, trust));
        if (basePage && !(k % 2)) baseLoads.push(await loadOnce(basePage, trust));
      }
      row(
        `  memory growth while loading the model to run it (RSS)`,
        `${(median(loads) / 2 ** 20).toFixed(1)} MiB`,
        'reported',
        true,
      );
      if (basePage) {
        row(
          '  baseline: memory growth while loading the model (RSS)',
          `${(median(baseLoads) / 2 ** 20).toFixed(1)} MiB`,
          '',
          true,
        );
        const bv = median(baseVerifies);
        row(`  baseline (${arg('baseline')}): fully verified`, `${bv.toFixed(0)} ms`, '', true);
        row('  ratio verify / baseline', `${(v / bv).toFixed(2)}×`, '', true);
        row('  baseline memory growth while verifying (RSS)', `${(baseGrowth / 2 ** 20).toFixed(1)} MiB`, '', true);
        await basePage.close();
        await baseServer!.close();
      }
      await page.close();
    }
    if (!COLD_ONLY && !VERIFY_ONLY) {
      // --- 3. OCR per image: Node vs Chromium ----------------------------------------------------
      // Node as it runs by default (its threads, the variants it picks for this CPU), and Node at one
      // thread on the variants the browser runs (like for like with Chromium at one thread).
      const nodeOcr = async (options: { threads?: number; variant?: string[] }) => {
        const runner = await Runner.open(OCR, { trust: [`${KEY}.pub`], rollbackStore: null, ...options } as never);
        const ms: number[] = [];
        const stages: Record<string, number>[] = [];
        let variants = '';
        for (const img of images) {
          await runner.run({ image: img }); // warm
          for (let k = 0; k < RUNS; k++) {
            const t0 = performance.now();
            const r = await runner.run({ image: img });
            ms.push(performance.now() - t0);
            stages.push(r.timings as Record<string, number>);
            variants = Object.values(r.variant).join(', ');
          }
        }
        await runner.close();
        return { ms, stages, variants };
      };
      const node = await nodeOcr({});
      // A page per thread count: onnxruntime-web starts once per page (its first start decides the threads).
      const browserOcr = async (threads: number) => {
        const ocrPage = await browser.newPage();
        await ocrPage.goto(server.url);
        await withLibrary(ocrPage);
        const r = await ocrPage.evaluate(
          async ({ pngs, runs, threads, trust }) => {
            const { openPackage } = (window as unknown as { xpkg: typeof import('../../browser/index.js') }).xpkg;
            const pkg = await openPackage('/packages/paddleocr-v4.xpkg', { trust: [trust], threads });
            const ms: number[] = [];
            const stages: Record<string, number>[] = [];
            let used = 0;
            let variants = '';
            for (const b64 of pngs) {
              const blob = new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], { type: 'image/png' });
              used = (await pkg.run({ image: blob })).runtime?.threads ?? 0; // warm (first: loads the models)
              for (let k = 0; k < runs; k++) {
                const t0 = performance.now();
                const r = await pkg.run({ image: blob });
                ms.push(performance.now() - t0);
                stages.push(r.timings);
                variants = Object.values(r.variant).join(', ');
              }
            }
            await pkg.close();
            return { ms, stages, variants, used, isolated: crossOriginIsolated };
          },
          { pngs: images.map((f) => readFileSync(f).toString('base64')), runs: RUNS, threads, trust },
        );
        await ocrPage.close();
        return r;
      };
      const one = await browserOcr(1);
      const two = await browserOcr(2);
      const like = await nodeOcr({ threads: 1, variant: one.variants.split(', ') });
      const nm = median(node.ms);
      const lm = median(like.ms);
      const b1 = median(one.ms);
      const b2 = median(two.ms);
      /** Median ms of each stage, as one line. */
      const stages = (rs: Record<string, number>[]) =>
        Object.keys(rs[0] ?? {})
          .filter((k) => k !== 'total')
          .map((k) => `${k} ${median(rs.map((r) => r[k] ?? 0)).toFixed(0)}`)
          .join(', ');
      row('OCR per image, Node runner (default threads)', `${nm.toFixed(0)} ms`, '', true);
      console.log(`    ${node.variants}; ${stages(node.stages)}`);
      row("OCR per image, Node runner, 1 thread, the browser's variants", `${lm.toFixed(0)} ms`, '', true);
      console.log(`    ${like.variants}; ${stages(like.stages)}`);
      row(`OCR per image, Chromium, ${one.used} thread`, `${b1.toFixed(0)} ms`, '', true);
      console.log(`    ${one.variants}; ${stages(one.stages)}`);
      row('  ratio Chromium (1 thread) / Node (default)', `${(b1 / nm).toFixed(2)}×`, '≤ 3.5×', b1 / nm <= 3.5);
      row(
        '  ratio Chromium (1 thread) / Node (1 thread, same variants)',
        `${(b1 / lm).toFixed(2)}×`,
        '≤ 3.5×',
        b1 / lm <= 3.5,
      );
      row(
        `OCR per image, Chromium, ${two.used} threads (isolated page: ${two.isolated})`,
        `${b2.toFixed(0)} ms`,
        'reported',
        true,
      );
      console.log(`    ${stages(two.stages)}`);
      row('  ratio Chromium (threaded) / Node', `${(b2 / nm).toFixed(2)}×`, '', true);
    }
    // --- 4. cold page to first OCR result (first and repeat visit); 5. first visit -------------
    // Browsers of their own, on profiles kept on disk (bench/browser/cold.ts).
    if (!VERIFY_ONLY && !OCR_ONLY)
      await coldFigures({
        runs: Math.max(1, RUNS - 1),
        dist: arg('dist') ?? join(ROOT, 'dist'),
        ...(arg('baseline') ? { baseline: arg('baseline') } : {}),
      });
  } finally {
    await browser.close();
    await server.close();
  }
}

await main();
