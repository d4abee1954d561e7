/**
 * Where a cold page's first OCR result goes: one cold run of bench/browser/run.ts's figure 4 (new
 * browser context, `?package=` URL, one image) under Chromium's tracing, printed per thread (CPU
 * milliseconds of its top-level tasks, and the events that took most of it) and as a timeline of
 * the page's and its workers' `performance.mark`s (xpkg:* marks, from browser/). The trace is kept
 * in bench/out/browser/cold-trace.json for chrome://tracing or Perfetto.
 *
 *   npm run build && npm run fixtures && npx tsx bench/browser/cold-trace.ts [--dist DIR] [--top 6]
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { pages, renderPng } from '../../fixtures/images/render.js';
import { startWebServer } from '../../web/server.js';
import { arg } from '../util.js';

const ROOT = join(import.meta.dirname, '..', '..');
const OUT = join(ROOT, 'bench', 'out', 'browser');
const OCR = join(ROOT, 'fixtures', 'dist', 'paddleocr-v4.xpkg');
const TOP = Number(arg('top') ?? 6);
const CHROMIUM = [process.env.XPKG_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-headless-shell'].find(
  (p): p is string => Boolean(p && existsSync(p)),
);

interface TraceEvent {
  name: string;
  cat: string;
  ph: string;
  ts: number;
  dur?: number;
  tdur?: number;
  pid: number;
  tid: number;
  args?: { name?: string; data?: unknown };
}

async function main(): Promise<void> {
  if (!CHROMIUM) throw new Error('no Chromium: apt-get install chromium (or set XPKG_CHROMIUM)');
  const folder = join(OUT, 'trace-served');
  await rm(folder, { recursive: true, force: true });
  await mkdir(folder, { recursive: true });
  await symlink(OCR, join(folder, 'paddleocr-v4.xpkg'));
  const image = join(folder, 'page.png');
  await writeFile(image, await renderPng(pages()[0]));
  const server = await startWebServer({
    port: 0,
    root: arg('dist') ?? join(ROOT, 'dist'),
    packages: folder,
    trust: [readFileSync(join(ROOT, 'fixtures', 'keys', 'test.pub'), 'utf8')],
  });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  console.log(
    `load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  try {
    // As in run.ts: the server has served the page once (its gzipped bodies are made).
    const first = await browser.newContext();
    await (await first.newPage()).goto(server.url, { waitUntil: 'networkidle' });
    await first.close();
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await browser.startTracing(page, {
      categories: [
        'toplevel',
        'devtools.timeline',
        'blink.user_timing',
        'v8',
        'v8.wasm',
        'disabled-by-default-v8.compile',
        'loading',
        'netlog',
      ],
    });
    const t0 = Date.now();
    await page.goto(`${server.url}?package=/packages/paddleocr-v4.xpkg`);
    await page.setInputFiles('#image-file', image);
    await page.waitForSelector('#results li', { timeout: 120_000, state: 'attached' });
    const wall = Date.now() - t0;
    console.log(`first result ${wall} ms after goto; page's stages: ${await page.textContent('#timings')}`);
    await page.waitForTimeout(300);
    const trace = await browser.stopTracing();
    await writeFile(join(OUT, 'cold-trace.json'), trace);
    report(JSON.parse(trace.toString()).traceEvents as TraceEvent[]);
    await ctx.close();
  } finally {
    await browser.close();
    await server.close();
  }
}

function report(events: TraceEvent[]): void {
  const names = new Map<string, string>();
  for (const e of events)
    if (e.ph === 'M' && e.name === 'thread_name') names.set(`${e.pid}:${e.tid}`, e.args?.name ?? '?');
  // The navigation's start, as the zero of the timeline.
  const nav = events.find((e) => e.name === 'navigationStart' || e.name === 'NavigationTiming');
  const zero = nav?.ts ?? Math.min(...events.filter((e) => e.ts > 0).map((e) => e.ts));
  const byThread = new Map<string, TraceEvent[]>();
  for (const e of events) {
    if (e.ph !== 'X' || e.tdur === undefined) continue;
    const k = `${e.pid}:${e.tid}`;
    byThread.set(k, [...(byThread.get(k) ?? []), e]);
  }
  const rows: { thread: string; cpu: number; first: number; last: number; top: [string, number][] }[] = [];
  for (const [k, list] of byThread) {
    list.sort((a, b) => a.ts - b.ts);
    // CPU of the outermost events only (a nested event's time is its parent's).
    let cpu = 0;
    let end = -1;
    const totals = new Map<string, number>();
    for (const e of list) {
      totals.set(e.name, (totals.get(e.name) ?? 0) + (e.tdur ?? 0));
      if (e.ts >= end) {
        cpu += e.tdur ?? 0;
        end = e.ts + (e.dur ?? 0);
      }
    }
    const top = [...totals].sort((a, b) => b[1] - a[1]).slice(0, TOP);
    rows.push({ thread: names.get(k) ?? k, cpu, first: list[0].ts - zero, last: end - zero, top });
  }
  rows.sort((a, b) => b.cpu - a.cpu);
  console.log(
    '\nthread                          CPU ms   active from–to (ms)   events (CPU ms, nested counted in each)',
  );
  for (const r of rows.filter((r) => r.cpu > 20_000 / 1000)) {
    console.log(
      `${r.thread.slice(0, 30).padEnd(30)} ${(r.cpu / 1000).toFixed(0).padStart(7)}   ${(r.first / 1000).toFixed(0).padStart(6)}–${(r.last / 1000).toFixed(0).padEnd(6)}        ` +
        r.top.map(([n, t]) => `${n} ${(t / 1000).toFixed(0)}`).join(' · '),
    );
  }
  const total = rows.reduce((n, r) => n + r.cpu, 0);
  console.log(`all threads: ${(total / 1000).toFixed(0)} ms CPU`);
  const marks = events
    .filter(
      (e) => e.cat.includes('blink.user_timing') && (e.ph === 'R' || e.ph === 'I' || e.ph === 'n' || e.ph === 'b'),
    )
    .filter((e) => e.name.startsWith('xpkg:'))
    .sort((a, b) => a.ts - b.ts);
  console.log('\nmarks (ms from navigation):');
  for (const m of marks)
    console.log(
      `  ${((m.ts - zero) / 1000).toFixed(0).padStart(6)}  ${m.name}  [${names.get(`${m.pid}:${m.tid}`) ?? m.tid}]`,
    );
}

await main();
