/**
 * 1080p RGBA -> 1x3x640x640 f32 letterbox (bilinear, /255, NCHW), side by side:
 *   native addon (default threads and 1 thread), portable TypeScript kernel, a hand-fused
 *   single-pass JS loop, and sharp resize + JS normalise loop.
 * Goal (issue 5): native <= 2 ms on the 2-core dev machine and >= 10x faster than sharp + JS.
 * Run: npx tsx bench/native-preprocess.ts [iterations]
 */
import sharp from 'sharp';
import { nativeInfo, type PreprocessOptions, preprocess, preprocessSync, setNativeBackend } from '../native/index.js';

const W = 1920,
  H = 1080,
  S = 640;
const iterations = Number(process.argv[2] ?? 40);
const rgba = new Uint8Array(W * H * 4);
// A smooth image with detail, not noise: gradients plus stripes.
for (let y = 0; y < H; y++)
  for (let x = 0; x < W; x++) {
    const i = (y * W + x) * 4;
    rgba[i] = (x * 255) / W;
    rgba[i + 1] = (y * 255) / H;
    rgba[i + 2] = ((x >> 3) ^ (y >> 3)) & 1 ? 220 : 30;
    rgba[i + 3] = 255;
  }
const image = { data: rgba, width: W, height: H, format: 'rgba' as const };
const rgb = new Uint8Array(W * H * 3);
for (let p = 0; p < W * H; p++) rgb.set(rgba.subarray(4 * p, 4 * p + 3), 3 * p);
const imageRgb = { data: rgb, width: W, height: H, format: 'rgb' as const };
const opts: PreprocessOptions = { resize: { mode: 'letterbox', width: S, height: S }, interpolation: 'bilinear' };
const out = new Float32Array(3 * S * S);

/** The fused single-pass JS loop: per output pixel, bilinear from the source, normalise, NCHW. */
function fusedJs(): void {
  const scale = Math.min(S / W, S / H),
    nw = Math.round(W * scale),
    nh = Math.round(H * scale);
  const px = Math.floor((S - nw) / 2),
    py = Math.floor((S - nh) / 2);
  const sx = W / nw,
    sy = H / nh,
    plane = S * S,
    pad = 114 / 255,
    inv = 1 / 255;
  out.fill(pad);
  const x0s = new Int32Array(nw),
    x1s = new Int32Array(nw),
    fxs = new Float32Array(nw);
  for (let x = 0; x < nw; x++) {
    const c = Math.max((x + 0.5) * sx - 0.5, 0),
      i = Math.min(Math.floor(c), W - 1);
    x0s[x] = i * 4;
    x1s[x] = Math.min(i + 1, W - 1) * 4;
    fxs[x] = c - i;
  }
  for (let y = 0; y < nh; y++) {
    const c = Math.max((y + 0.5) * sy - 0.5, 0),
      j = Math.min(Math.floor(c), H - 1),
      fy = c - j;
    const r0 = j * W * 4,
      r1 = Math.min(j + 1, H - 1) * W * 4;
    let o = (py + y) * S + px;
    for (let x = 0; x < nw; x++, o++) {
      const a = r0 + x0s[x],
        b = r0 + x1s[x],
        cc = r1 + x0s[x],
        d = r1 + x1s[x],
        fx = fxs[x];
      const w00 = (1 - fx) * (1 - fy),
        w01 = fx * (1 - fy),
        w10 = (1 - fx) * fy,
        w11 = fx * fy;
      out[o] = (rgba[a] * w00 + rgba[b] * w01 + rgba[cc] * w10 + rgba[d] * w11) * inv;
      out[o + plane] = (rgba[a + 1] * w00 + rgba[b + 1] * w01 + rgba[cc + 1] * w10 + rgba[d + 1] * w11) * inv;
      out[o + 2 * plane] = (rgba[a + 2] * w00 + rgba[b + 2] * w01 + rgba[cc + 2] * w10 + rgba[d + 2] * w11) * inv;
    }
  }
}

async function sharpJs(): Promise<void> {
  const raw = await sharp(rgba, { raw: { width: W, height: H, channels: 4 } })
    .resize(S, S, { fit: 'contain', background: { r: 114, g: 114, b: 114, alpha: 1 }, kernel: 'linear' })
    .removeAlpha()
    .raw()
    .toBuffer();
  const plane = S * S,
    inv = 1 / 255;
  for (let i = 0, p = 0; p < plane; p++, i += 3) {
    out[p] = raw[i] * inv;
    out[p + plane] = raw[i + 1] * inv;
    out[p + 2 * plane] = raw[i + 2] * inv;
  }
}

async function time(name: string, fn: () => unknown): Promise<{ name: string; median: number; min: number }> {
  for (let i = 0; i < 3; i++) await fn();
  const t: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const s = process.hrtime.bigint();
    await fn();
    t.push(Number(process.hrtime.bigint() - s) / 1e6);
  }
  t.sort((a, b) => a - b);
  return { name, median: t[t.length >> 1], min: t[0] };
}

const info = nativeInfo();
console.log(
  `native: ${info.backend} (${info.simd}, ${info.threads} threads, ${info.compiler}); ${iterations} iterations; 1080p RGBA -> 1x3x640x640 f32`,
);
const rows = [
  await time('native (auto: area for 3x shrink)', () => preprocessSync(image, { ...opts, interpolation: 'auto', out })),
  await time('native bilinear', () => preprocessSync(image, { ...opts, out })),
  await time('native bilinear, 1 thread', () => preprocessSync(image, { ...opts, out, threads: 1 })),
  // Async calls copy the input into native memory and the output back (issue 10: a buffer detached
  // while a worker runs must not be read); these rows show what that costs on 1080p RGB.
  await time('native bilinear, RGB source, sync (in place)', () => preprocessSync(imageRgb, { ...opts, out })),
  await time('native bilinear, RGB source, async (copies in and out)', () => preprocess(imageRgb, { ...opts, out })),
];
setNativeBackend('portable');
rows.push(await time('portable TS kernel', () => preprocessSync(image, { ...opts, out })));
setNativeBackend('auto');
rows.push(await time('fused single-pass JS loop', fusedJs));
rows.push(await time('sharp resize + JS normalise', sharpJs));
const base = rows[1].median;
console.log('\n| path | median ms | min ms | × native bilinear |\n| --- | ---: | ---: | ---: |');
for (const r of rows)
  console.log(`| ${r.name} | ${r.median.toFixed(3)} | ${r.min.toFixed(3)} | ${(r.median / base).toFixed(1)} |`);
const sharpRow = rows[rows.length - 1];
console.log(
  `\ngoal <= 2 ms: ${base <= 2 ? 'met' : 'MISSED'} (${base.toFixed(3)} ms); goal >= 10x vs sharp+JS: ${sharpRow.median / base >= 10 ? 'met' : 'MISSED'} (${(sharpRow.median / base).toFixed(1)}x)`,
);
