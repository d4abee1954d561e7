/**
 * Host pre-processing of the GPU variants (uint8 NHWC input), before vs after, side by side in one run:
 *   before: the kernel writes float32 (scale 1), then JS rounds it to uint8 (a Uint8ClampedArray pass)
 *   after:  the kernel writes uint8 itself (dtype 'u8'), no float plane, no JS pass
 * for the detector's 1080p RGB → 320² letterbox and the OCR det's 1080p → 960 limit-side, through
 * the async form the runner calls (libuv worker, default threads). Prints CPU time per call (all
 * threads, process.cpuUsage), wall time per call, and bytes allocated per call; the two outputs
 * are checked equal first.
 * Run: npx tsx bench/preprocess-u8.ts [--runs 200]   (or node dist-tools/bench/preprocess-u8.js)
 */
import { loadavg } from 'node:os';
import { nativeInfo, type PreprocessOptions, preprocess } from '../native/index.js';
import { arg, image1080p, median } from './util.js';

const runs = Number(arg('runs') ?? 200);
const image = image1080p();

const shapes: [string, PreprocessOptions][] = [
  ['detector 1080p→320² letterbox', { resize: { mode: 'letterbox', width: 320, height: 320, padPixel: 114 } }],
  ['OCR det 1080p→960 limit-side', { resize: { mode: 'limitSide', limit: 960, multiple: 32 }, channelOrder: 'bgr' }],
];

async function before(o: PreprocessOptions): Promise<Uint8Array> {
  const r = await preprocess(image, { ...o, scale: 1, layout: 'nhwc', dtype: 'f32' });
  const u = new Uint8ClampedArray(r.data as Float32Array);
  return new Uint8Array(u.buffer);
}
async function after(o: PreprocessOptions): Promise<Uint8Array> {
  return (await preprocess(image, { ...o, scale: 1, layout: 'nhwc', dtype: 'u8' })).data as Uint8Array;
}

interface Stat {
  cpu: number;
  wall: number;
  bytes: number;
}
async function measure(f: () => Promise<unknown>): Promise<Stat> {
  for (let i = 0; i < 10; i++) await f();
  const walls: number[] = [];
  let bytes = 0;
  const c0 = process.cpuUsage();
  for (let i = 0; i < runs; i++) {
    const m0 = process.memoryUsage().arrayBuffers;
    const t0 = performance.now();
    await f();
    walls.push(performance.now() - t0);
    bytes += Math.max(0, process.memoryUsage().arrayBuffers - m0);
  }
  const c = process.cpuUsage(c0);
  return { cpu: (c.user + c.system) / 1000 / runs, wall: median(walls), bytes: bytes / runs };
}

const info = nativeInfo();
console.log(
  `backend ${info.backend} (${info.simd}, ${info.threads} threads); ${runs} runs; load ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
);
console.log(
  'shape                             before cpu/wall ms   after cpu/wall ms   cpu ratio   MB/call before→after',
);
for (const [name, o] of shapes) {
  const a = await before(o),
    b = await after(o);
  if (!Buffer.from(a.buffer).equals(Buffer.from(b.buffer))) throw new Error(`${name}: outputs differ`);
  // Interleaved twice, so drift in the machine's load hits both sides alike.
  const s1 = await measure(() => before(o));
  const t1 = await measure(() => after(o));
  const s2 = await measure(() => before(o));
  const t2 = await measure(() => after(o));
  const s = { cpu: (s1.cpu + s2.cpu) / 2, wall: (s1.wall + s2.wall) / 2, bytes: (s1.bytes + s2.bytes) / 2 };
  const t = { cpu: (t1.cpu + t2.cpu) / 2, wall: (t1.wall + t2.wall) / 2, bytes: (t1.bytes + t2.bytes) / 2 };
  console.log(
    `${name.padEnd(34)}${s.cpu.toFixed(3).padStart(8)} / ${s.wall.toFixed(3).padEnd(9)}${t.cpu.toFixed(3).padStart(8)} / ${t.wall
      .toFixed(3)
      .padEnd(
        9,
      )}${(t.cpu / s.cpu).toFixed(2).padStart(6)}×     ${(s.bytes / 1e6).toFixed(2)} → ${(t.bytes / 1e6).toFixed(2)}`,
  );
}
