/**
 * Per-call cost of the native image kernels as the pipelines call them (async, libuv worker, default
 * threads), median wall ms and CPU ms (all threads, process.cpuUsage) per call or batch:
 *   letterbox   detector 1080p RGB → 320² letterbox, u8 NHWC
 *   limit-side  OCR det 1080p → limit side 960, multiple 32, BGR, u8 NHWC
 *   30 crops    30 concurrent cropBatch calls, one line each on its window of the 1080p image (as
 *               runner/pipeline/ops-fused.ts cropParts calls them), 48 px high, u8 NHWC, widths 100–900
 *   letterbox sync  the letterbox again through preprocessSync (the kernel without the async plumbing)
 * With `--baseline <other xpkg_native.node>` both builds run, each in its own child process
 * (XPKG_NATIVE_PATH), rounds alternating between them so drift in the machine's load hits both
 * alike; their outputs are checked byte-equal first, and the table shows this build / baseline.
 * Run: npx tsx bench/native-calls.ts [--baseline /tmp/xpkg-baseline/xpkg_native.node] [--rounds 6] [--runs 40]
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { loadavg } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  cropBatch,
  type ImageInput,
  nativeInfo,
  type PreprocessOptions,
  preprocess,
  preprocessSync,
} from '../native/index.js';
import { regionWindow } from '../runner/pipeline/ops-crop.js';
import { arg, image1080p, median } from './util.js';

const runs = Number(arg('runs') ?? 40);
const rounds = Number(arg('rounds') ?? 6);
const baseline = arg('baseline');

interface Stat {
  wall: number;
  cpu: number;
}
type Cases = Record<string, { run: () => Promise<unknown> | unknown; digest: () => Promise<string> }>;

function cases(): Cases {
  const image: ImageInput = image1080p();
  const letterbox: PreprocessOptions = {
    resize: { mode: 'letterbox', width: 320, height: 320, padPixel: 114 },
    scale: 1,
    layout: 'nhwc',
    dtype: 'u8',
  };
  const limitSide: PreprocessOptions = {
    resize: { mode: 'limitSide', limit: 960, multiple: 32 },
    channelOrder: 'bgr',
    scale: 1,
    layout: 'nhwc',
    dtype: 'u8',
  };
  // 30 text lines as a DB detector returns them: rotated rectangles (a few degrees), 36 px high,
  // 75–675 px long (48 px output: widths 100–900); every fifth one slightly perspective.
  const quads: number[][] = [];
  for (let i = 0; i < 30; i++) {
    const len = 75 + ((i * 7) % 30) * 20.7,
      h = 36;
    const a = (((i * 5) % 9) - 4) * 0.01;
    const cx = 80 + len / 2 + ((i * 37) % 200),
      cy = 40 + i * 34;
    const c = Math.cos(a),
      s = Math.sin(a);
    const pt = (dx: number, dy: number) => [cx + dx * c - dy * s, cy + dx * s + dy * c];
    const k = i % 5 === 0 ? 3 : 0;
    quads.push([
      ...pt(-len / 2, -h / 2),
      ...pt(len / 2, -h / 2 + k),
      ...pt(len / 2, h / 2 - k),
      ...pt(-len / 2, h / 2),
    ]);
  }
  const cropOpts = { height: 48, maxWidth: 3200, layout: 'nhwc', dtype: 'u8', scale: 1 } as const;
  const crops = () => Promise.all(quads.map((q) => cropBatch(...regionWindow(image, q), cropOpts)));
  const hash = (parts: Uint8Array[]) => {
    const h = createHash('sha256');
    for (const p of parts) h.update(p);
    return h.digest('hex').slice(0, 16);
  };
  const data = (r: { data: ArrayBufferView }) => new Uint8Array(r.data.buffer, r.data.byteOffset, r.data.byteLength);
  return {
    letterbox: {
      run: () => preprocess(image, letterbox),
      digest: async () => hash([data(await preprocess(image, letterbox))]),
    },
    'limit-side': {
      run: () => preprocess(image, limitSide),
      digest: async () => hash([data(await preprocess(image, limitSide))]),
    },
    '30 crops': { run: crops, digest: async () => hash((await crops()).map(data)) },
    'letterbox sync': {
      run: () => preprocessSync(image, letterbox),
      digest: async () => hash([data(preprocessSync(image, letterbox))]),
    },
  };
}

async function measure(f: () => unknown): Promise<Stat> {
  const walls: number[] = [],
    cpus: number[] = [];
  for (let i = 0; i < runs; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await f();
    walls.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpus.push((c.user + c.system) / 1000);
  }
  return { wall: median(walls), cpu: median(cpus) };
}

/** Child: waits for "round" lines on stdin, answers each with one JSON line of stats per case. */
async function child(): Promise<void> {
  const cs = cases();
  const info = nativeInfo();
  const digests: Record<string, string> = {};
  for (const [name, c] of Object.entries(cs)) {
    digests[name] = await c.digest();
    for (let i = 0; i < 10; i++) await c.run();
  }
  process.stdout.write(
    `${JSON.stringify({ info: { backend: info.backend, path: info.path, threads: info.threads }, digests })}\n`,
  );
  for await (const line of createInterface({ input: process.stdin })) {
    if (line !== 'round') break;
    const out: Record<string, Stat> = {};
    for (const [name, c] of Object.entries(cs)) out[name] = await measure(c.run);
    process.stdout.write(`${JSON.stringify(out)}\n`);
  }
}

interface Child {
  ask(): Promise<Record<string, Stat>>;
  first: Promise<{ info: { backend: string; path?: string; threads: number }; digests: Record<string, string> }>;
  end(): void;
}
function start(env: NodeJS.ProcessEnv): Child {
  const p = spawn(
    process.execPath,
    [...process.execArgv, fileURLToPath(import.meta.url), '--child', '--runs', String(runs)],
    {
      env,
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  const lines = createInterface({ input: p.stdout! })[Symbol.asyncIterator]();
  const next = async () => {
    const r = await lines.next();
    if (r.done) throw new Error('bench child ended early');
    return JSON.parse(r.value);
  };
  return {
    first: next(),
    ask: async () => {
      p.stdin!.write('round\n');
      return next();
    },
    end: () => p.stdin!.end(),
  };
}

async function main(): Promise<void> {
  const envOf = (path?: string) => {
    const e: NodeJS.ProcessEnv = { ...process.env, XPKG_NATIVE: 'native' };
    if (path) e.XPKG_NATIVE_PATH = path;
    else delete e.XPKG_NATIVE_PATH;
    return e;
  };
  const sides = baseline ? [start(envOf()), start(envOf(baseline))] : [start(envOf(process.env.XPKG_NATIVE_PATH))];
  const firsts = [];
  for (const s of sides) firsts.push(await s.first);
  console.log(
    `${runs} calls a case a round, ${rounds} rounds${baseline ? ', alternating' : ''}; load ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  for (const [i, f] of firsts.entries())
    console.log(`${i ? 'baseline' : 'this    '}: ${f.info.backend} ${f.info.path ?? ''} (${f.info.threads} threads)`);
  if (baseline)
    for (const name of Object.keys(firsts[0].digests))
      if (firsts[0].digests[name] !== firsts[1].digests[name])
        throw new Error(`${name}: outputs differ between builds`);
  if (baseline) console.log('outputs byte-equal between the builds');
  const got: Record<string, Stat>[][] = sides.map(() => []);
  for (let r = 0; r < rounds; r++) {
    // Alternating which side goes first, so neither always runs on the warmer (or cooler) machine.
    const order = r % 2 ? [...sides.keys()].reverse() : [...sides.keys()];
    for (const i of order) got[i].push(await sides[i].ask());
  }
  for (const s of sides) s.end();
  const agg = (i: number, name: string, k: keyof Stat) => median(got[i].map((g) => g[name][k]));
  const names = Object.keys(got[0][0]);
  console.log(
    baseline
      ? 'case               this wall / cpu ms    baseline wall / cpu ms   wall ratio  cpu ratio'
      : 'case               wall / cpu ms',
  );
  for (const name of names) {
    const a = `${agg(0, name, 'wall').toFixed(3).padStart(8)} / ${agg(0, name, 'cpu').toFixed(3).padEnd(9)}`;
    if (!baseline) {
      console.log(`${name.padEnd(17)}${a}`);
      continue;
    }
    const b = `${agg(1, name, 'wall').toFixed(3).padStart(8)} / ${agg(1, name, 'cpu').toFixed(3).padEnd(9)}`;
    const rw = agg(0, name, 'wall') / agg(1, name, 'wall'),
      rc = agg(0, name, 'cpu') / agg(1, name, 'cpu');
    console.log(`${name.padEnd(17)}${a}    ${b}     ${rw.toFixed(2).padStart(6)}×    ${rc.toFixed(2).padStart(6)}×`);
  }
}

if (process.argv.includes('--child')) await child();
else await main();
