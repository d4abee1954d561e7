/**
 * The image decoder's worker (runner/pipeline/image-decoder.ts) gives what decoding in this thread
 * gives: the same pixels, and the same errors (code, message, detail), for real images and bad ones;
 * asked to, it starts onnxruntime (its library loads in the worker, not the main thread).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { resolveBudget } from '../runner/pipeline/budget.js';
import { decodeHere, probeHere } from '../runner/pipeline/decode-sharp.js';
import { decodeImage, decodeInputsAhead, probeImage, startImageDecoder } from '../runner/pipeline/image-decoder.js';
import { tempDir } from './helpers/source.js';

const png = readFileSync('fixtures/images/example.png');
const budget = resolveBudget();

/** What a promise settles with, errors as their code, message and detail. */
const outcome = (p: Promise<unknown>) =>
  p.then(
    (v) => ({ ok: v }),
    (e: { code?: string; message: string; detail?: unknown }) => ({
      error: { code: e.code, message: e.message, detail: e.detail },
    }),
  );

describe('image decoding in the worker', () => {
  it("a program using the library starts it from the package's entry (its exports map allows no deep import)", async () => {
    const lib = await import('../index.js');
    expect(lib.startImageDecoder).toBe(startImageDecoder);
  });

  it('starts, and decodes to the pixels this thread decodes (RGB, grey, alpha flattened, a pooled Buffer view)', async () => {
    expect(startImageDecoder()).toBe(true);
    const rgba = await sharp({
      create: { width: 31, height: 17, channels: 4, background: { r: 200, g: 10, b: 90, alpha: 0.4 } },
    })
      .png()
      .toBuffer();
    // a view into a larger buffer: only its own bytes may be decoded
    const padded = Buffer.concat([Buffer.from('junk'), png, Buffer.from('more junk')]);
    const view = padded.subarray(4, 4 + png.length);
    const cases: [Uint8Array, 1 | 3, number[]][] = [
      [png, 3, [255]],
      [png, 1, [255]],
      [rgba, 3, [0, 128, 255]],
      [view, 3, [255]],
    ];
    for (const [bytes, channels, background] of cases) {
      const here = await decodeHere(Buffer.from(bytes), channels, background, budget);
      const there = await decodeImage(bytes, channels, background, budget);
      expect({ ...there, data: undefined }).toEqual({ ...here, data: undefined });
      expect(Buffer.from(there.data).equals(Buffer.from(here.data))).toBe(true);
    }
  });

  it('a damaged image, a non-image and an image above the pixel budget fail as they do in this thread', async () => {
    startImageDecoder();
    const damaged = png.subarray(0, png.length >> 1);
    const text = Buffer.from('not an image at all');
    const small = resolveBudget({ maxPixels: 1000 });
    for (const [bytes, b, code] of [
      [damaged, budget, 'E_RUN_INPUT'],
      [text, budget, 'E_RUN_INPUT_FORMAT'],
      [png, small, 'E_RUN_INPUT'],
    ] as const) {
      const there = await outcome(decodeImage(bytes, 3, [255], b));
      expect(there).toHaveProperty('error.code', code);
      expect(there).toEqual(await outcome(decodeHere(Buffer.from(bytes), 3, [255], b)));
    }
    expect(await outcome(probeImage(text))).toEqual(await outcome(probeHere(text)));
    expect(await outcome(probeImage(png))).toEqual({ ok: undefined });
  });

  it('a decode started ahead for a pipeline input is the one the decode-image step gets', async () => {
    startImageDecoder();
    const manifest = {
      pipeline: { steps: [{ op: 'decode-image', params: { input: 'image', output: 'rgb', channels: 1 as const } }] },
    };
    const bytes = Buffer.from(png);
    decodeInputsAhead(manifest as never, { image: bytes }, budget);
    const here = await decodeHere(bytes, 1, [255], budget);
    // other options than the step's are decoded anew; the step's own options take the early result
    const rgb = await decodeImage(bytes, 3, [255], budget);
    expect(rgb.channels).toBe(3);
    const grey = await decodeImage(bytes, 1, [255], budget);
    expect(Buffer.from(grey.data).equals(Buffer.from(here.data))).toBe(true);
    // taken once: a second run decodes again, to the same pixels
    const again = await decodeImage(bytes, 1, [255], budget);
    expect(again).not.toBe(grey);
    expect(Buffer.from(again.data).equals(Buffer.from(here.data))).toBe(true);
  });
});

describe.skipIf(process.platform !== 'linux')("onnxruntime's start in the worker", () => {
  // A fresh process of the built library: it decodes one image (the worker is up, sharp loaded),
  // then waits until onnxruntime's library is mapped or 5 s have passed, never importing it itself.
  const probe = (options: string) => {
    // a file, not --eval: workers inherit node's flags, and --input-type fails a worker's start
    const script = join(tempDir('xpkg-ort-start-'), 'probe.mjs');
    writeFileSync(
      script,
      `const d = await import(${JSON.stringify(pathToFileURL(resolve('dist/runner/pipeline/image-decoder.js')).href)});
const { resolveBudget } = await import(${JSON.stringify(pathToFileURL(resolve('dist/runner/pipeline/budget.js')).href)});
const { readFileSync } = await import('node:fs');
if (!d.startImageDecoder(${options})) throw new Error('no worker');
await d.decodeImage(readFileSync('fixtures/images/example.png'), 3, [255], resolveBudget());
const mapped = () => /libonnxruntime\\.so/.test(readFileSync('/proc/self/maps', 'utf8'));
for (let i = 0; i < 100 && !mapped(); i++) await new Promise((r) => setTimeout(r, 50));
console.log(JSON.stringify({ mapped: mapped() }));`,
    );
    return spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 20_000 });
  };

  // each process must also end by itself: the idle worker and its hash port hold nothing open
  it('with onnxruntime: true the worker loads and starts it (the main thread imports nothing of it)', () => {
    const r = probe('{ onnxruntime: true }');
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout), r.stderr).toEqual({ mapped: true });
  });

  it('without it, onnxruntime is never loaded', () => {
    const r = probe('');
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ mapped: false });
  });
});
