/**
 * Where a cold page's first OCR result goes: one cold run of bench/browser/cold.ts (a browser on a
 * new profile, `?package=` URL, one image; with --repeat the same profile's second visit, after a
 * first one in a browser since closed) under Chromium's tracing, printed per thread (CPU
 * milliseconds of its top-level tasks, and the events that took most of it) and as a timeline of
 * the page's and its workers' `performance.mark`s (xpkg:* marks, from browser/) with the CPU of
 * each thread between them; --profile adds V8's sampling profiler (self time by function, per
 * thread). The trace is kept in bench/out/browser/cold-trace.json for chrome://tracing or Perfetto.
 *
 *   npm run build && npm run fixtures && npx tsx bench/browser/cold-trace.ts [--dist DIR] [--top 6] [--repeat] [--profile]
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startWebServer } from '../../web/server.js';
import { arg } from '../util.js';
import { CHROMIUM, servedFolder, shownSince, watchShown } from './cold.js';

const ROOT = join(import.meta.dirname, '..', '..');
const OUT = join(ROOT, 'bench', 'out', 'browser');
const TOP = Number(arg('top') ?? 6);
/** Trace a repeat visit: the same profile, after a first visit in a browser since closed. */
const REPEAT = process.argv.includes('--repeat');
const PROFILE = process.argv.includes('--profile');

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
  const { folder, image } = await servedFolder('trace-served');
  const server = await startWebServer({
    port: 0,
    root: arg('dist') ?? join(ROOT, 'dist'),
    packages: folder,
    trust: [readFileSync(join(ROOT, 'fixtures', 'keys', 'test.pub'), 'utf8')],
  });
  // A profile on disk, as a user's browser has (its caches persist across starts: --repeat).
  const profile = await mkdtemp(join(tmpdir(), 'xpkg-browser-profile-'));
  const launch = () =>
    chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  console.log(
    `load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const url = `${server.url}?package=/packages/paddleocr-v4.xpkg`;
  try {
    // As in bench/browser/cold.ts: the server has served the page once (its gzipped bodies are made),
    // and with --repeat a first visit ran to its result (and stayed 5 s) in a browser since closed.
    let ctx = await launch();
    const first = ctx.pages()[0] ?? (await ctx.newPage());
    if (REPEAT) {
      await first.goto(url);
      await first.setInputFiles('#image-file', image);
      await first.waitForSelector('#results li', { timeout: 120_000, state: 'attached' });
      await first.waitForTimeout(5000);
    } else await first.goto(server.url, { waitUntil: 'networkidle' });
    await ctx.close();
    ctx = await launch();
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    const cdp = await ctx.newCDPSession(page);
    const chunks: TraceEvent[] = [];
    cdp.on('Tracing.dataCollected', (e) => void chunks.push(...(e.value as unknown as TraceEvent[])));
    const done = new Promise<void>((resolve) => cdp.once('Tracing.tracingComplete', () => resolve()));
    await cdp.send('Tracing.start', {
      transferMode: 'ReportEvents',
      traceConfig: {
        includedCategories: [
          'toplevel',
          'devtools.timeline',
          'blink.user_timing',
          'v8',
          'v8.wasm',
          'disabled-by-default-v8.compile',
          'loading',
          'netlog',
          // --profile: V8's sampling profiler in every thread (JS and WASM functions by self time).
          ...(PROFILE ? ['disabled-by-default-v8.cpu_profiler'] : []),
        ],
      },
    });
    await watchShown(page);
    const t0 = Date.now();
    await page.goto(url);
    await page.setInputFiles('#image-file', image);
    const { result } = await shownSince(page, t0);
    console.log(
      `${REPEAT ? 'repeat' : 'first'} visit: first result ${result} ms after goto; page's stages: ${await page.textContent('#timings')}`,
    );
    await page.waitForTimeout(300);
    await cdp.send('Tracing.end');
    await done;
    await writeFile(join(OUT, 'cold-trace.json'), JSON.stringify({ traceEvents: chunks }));
    report(chunks);
    if (PROFILE) profileReport(chunks);
    await ctx.close();
  } finally {
    await server.close();
    await rm(profile, { recursive: true, force: true });
  }
}

/** Which thread is which: the page's, the xpkg worker's and onnxruntime-web's (by the marks they made), else its name. */
function threadNames(events: TraceEvent[]): (pid: number, tid: number) => string {
  const names = new Map<string, string>();
  for (const e of events)
    if (e.ph === 'M' && e.name === 'thread_name') names.set(`${e.pid}:${e.tid}`, e.args?.name ?? '?');
  const roles: Record<string, string> = {
    'xpkg:page-script': 'page',
    'xpkg:open': 'xpkg worker',
    'xpkg:runtime': 'onnxruntime-web worker',
  };
  for (const e of events) if (roles[e.name]) names.set(`${e.pid}:${e.tid}`, roles[e.name]);
  return (pid, tid) => {
    const n = names.get(`${pid}:${tid}`) ?? String(tid);
    return n.startsWith('ThreadPoolForegroundWorker') ? 'thread pool (V8 compiler…)' : n;
  };
}

/** The navigation's start, as the zero of the timeline. */
function zeroOf(events: TraceEvent[]): number {
  const nav = events.find((e) => e.name === 'navigationStart' || e.name === 'NavigationTiming');
  return nav?.ts ?? Math.min(...events.filter((e) => e.ts > 0).map((e) => e.ts));
}

function report(events: TraceEvent[]): void {
  const name = threadNames(events);
  const zero = zeroOf(events);
  const byThread = new Map<string, TraceEvent[]>();
  for (const e of events) {
    if (e.ph !== 'X' || e.tdur === undefined) continue;
    const k = `${e.pid}:${e.tid}`;
    byThread.set(k, [...(byThread.get(k) ?? []), e]);
  }
  const rows: { thread: string; cpu: number; first: number; last: number; top: [string, number][] }[] = [];
  /** Outermost events (a nested event's time is its parent's): thread, start, end, CPU. */
  const spans: [string, number, number, number][] = [];
  for (const list of byThread.values()) {
    list.sort((a, b) => a.ts - b.ts);
    const thread = name(list[0].pid, list[0].tid);
    let cpu = 0;
    let end = -1;
    const totals = new Map<string, number>();
    for (const e of list) {
      totals.set(e.name, (totals.get(e.name) ?? 0) + (e.tdur ?? 0));
      if (e.ts >= end) {
        cpu += e.tdur ?? 0;
        end = e.ts + (e.dur ?? 0);
        spans.push([thread, e.ts, end, e.tdur ?? 0]);
      }
    }
    const top = [...totals].sort((a, b) => b[1] - a[1]).slice(0, TOP);
    rows.push({ thread, cpu, first: list[0].ts - zero, last: end - zero, top });
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
  console.log(
    `all threads: ${(total / 1000).toFixed(0)} ms CPU (a thread's task still running at the end is not counted)`,
  );
  const marks = events
    .filter(
      (e) => e.cat.includes('blink.user_timing') && (e.ph === 'R' || e.ph === 'I' || e.ph === 'n' || e.ph === 'b'),
    )
    .filter((e) => e.name.startsWith('xpkg:'))
    .sort((a, b) => a.ts - b.ts);
  // Each mark, then the CPU of the busiest threads until the next one (a span cut by a mark is shared pro rata).
  console.log('\nmarks (ms from navigation), and the CPU ms of the busiest threads until the next mark:');
  for (const [i, m] of marks.entries()) {
    const to = marks[i + 1]?.ts ?? m.ts;
    const cpu = new Map<string, number>();
    for (const [thread, a, b, c] of spans) {
      const overlap = Math.min(b, to) - Math.max(a, m.ts);
      if (overlap > 0 && b > a) cpu.set(thread, (cpu.get(thread) ?? 0) + (c * overlap) / (b - a));
    }
    const busy = [...cpu]
      .filter(([, c]) => c >= 10_000)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 4)
      .map(([t, c]) => `${t} ${(c / 1000).toFixed(0)}`);
    console.log(
      `  ${((m.ts - zero) / 1000).toFixed(0).padStart(6)}  ${m.name.padEnd(28)} [${name(m.pid, m.tid)}]${busy.length ? `  → ${busy.join(' · ')}` : ''}`,
    );
  }
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

/** --profile: self time by function in each thread that ran JS or WASM (samples of V8's profiler; wall time while on the CPU). */
function profileReport(events: TraceEvent[]): void {
  const name = threadNames(events);
  const profiles = new Map<string, { thread: string; nodes: Map<number, ProfileNode>; self: Map<string, number> }>();
  for (const e of events) {
    const id = (e as { id?: string }).id;
    if (e.name === 'Profile')
      profiles.set(`${e.pid}:${id}`, { thread: name(e.pid, e.tid), nodes: new Map(), self: new Map() });
    if (e.name !== 'ProfileChunk') continue;
    const p = profiles.get(`${e.pid}:${id}`);
    const d = e.args?.data as
      | { cpuProfile?: { nodes?: ProfileNode[]; samples?: number[] }; timeDeltas?: number[] }
      | undefined;
    if (!p || !d) continue;
    for (const n of d.cpuProfile?.nodes ?? []) p.nodes.set(n.id, n);
    const samples = d.cpuProfile?.samples ?? [];
    for (const [k, s] of samples.entries()) {
      const f = p.nodes.get(s)?.callFrame;
      if (!f || f.functionName === '(idle)' || f.functionName === '(program)') continue;
      const key = `${f.functionName || '(anonymous)'} ${(f.url ?? '').split('/').pop()}:${f.lineNumber}`;
      p.self.set(key, (p.self.get(key) ?? 0) + (d.timeDeltas?.[k] ?? 0));
    }
  }
  for (const p of profiles.values()) {
    const total = [...p.self.values()].reduce((a, b) => a + b, 0);
    if (total < 50_000) continue;
    console.log(`\n${p.thread}: ${(total / 1000).toFixed(0)} ms sampled`);
    for (const [f, t] of [...p.self].sort((a, b) => b[1] - a[1]).slice(0, TOP * 2))
      console.log(`  ${(t / 1000).toFixed(0).padStart(6)}  ${f.slice(0, 100)}`);
  }
}

await main();
