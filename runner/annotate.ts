/**
 * Pictures of a run: the input image with the outputs drawn on it, composed by sharp from an SVG
 * overlay (boxes, quads, text) and a raw RGBA layer (masks).
 *
 * - boxes: outlined, with `label score` in a tag at the box's top-left;
 * - text-lines (OCR): the quad outlined and veiled in white, the recognised text written in it
 *   along the line's direction;
 * - mask: every non-zero label as a translucent colour.
 *
 * Everything is drawn inside the shapes (each shape clips its own drawing), so pixels outside
 * every box, quad and masked pixel are the input's. Other output types draw nothing.
 */
import { realpath, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { writeAtomic } from '../pack/atomic.js';
import { readFileBytes } from '../platform/index.js';
import { RunnerError, UsageError } from '../spec/errors.js';
import type { Manifest } from '../spec/schema.js';
import { resolveBudget } from './pipeline/budget.js';
import { checkInputSize, profiledToSrgb } from './pipeline/decode-sharp.js';
import type { RunnerBudget } from './types.js';

const PALETTE = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6', '#9a6324'];
const MASK_RGB = [
  [230, 25, 75],
  [60, 180, 75],
  [67, 99, 216],
  [245, 130, 49],
  [145, 30, 180],
  [66, 212, 244],
  [240, 50, 230],
  [154, 99, 36],
];
const MASK_ALPHA = 110;

type Pt = [number, number];

const esc = (s: string) =>
  s
    // biome-ignore lint/suspicious/noControlCharactersInRegex: XML 1.0 cannot hold these characters; drop them
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '')
    .replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const num = (n: number) => (Number.isFinite(n) ? Math.round(n * 100) / 100 : 0);
const points = (q: Pt[]) => q.map(([x, y]) => `${num(x)},${num(y)}`).join(' ');

function quadOf(box: unknown): Pt[] | null {
  if (Array.isArray(box) && box.length === 4 && box.every((p) => Array.isArray(p) && p.length === 2))
    return box as Pt[];
  if (Array.isArray(box) && box.length === 4 && box.every((v) => typeof v === 'number')) {
    const [x1, y1, x2, y2] = box as number[];
    return [
      [x1, y1],
      [x2, y1],
      [x2, y2],
      [x1, y2],
    ];
  }
  return null;
}

/** One shape: its outline (half of the stroke shows, the rest is clipped), plus what goes inside. */
function shape(id: number, q: Pt[], color: string, stroke: number, inside: string, veil = false): string {
  const poly = points(q);
  return (
    `<clipPath id="c${id}"><polygon points="${poly}"/></clipPath><g clip-path="url(#c${id})">` +
    (veil ? `<polygon points="${poly}" fill="#ffffff" fill-opacity="0.82"/>` : '') +
    inside +
    `<polygon points="${poly}" fill="none" stroke="${color}" stroke-width="${stroke * 2}"/></g>`
  );
}

function svgFor(manifest: Manifest, outputs: Record<string, unknown>, width: number, height: number): string {
  // At least 2 px inside the shape: a whole pixel row is covered whatever the fractional edge.
  const stroke = Math.max(2, Math.round(Math.min(width, height) / 300));
  const parts: string[] = [];
  let id = 0;
  for (const spec of manifest.outputs) {
    const v = outputs[spec.name];
    if (!Array.isArray(v)) continue;
    if (spec.type === 'boxes') {
      for (const b of v as { box: unknown; score?: number; class?: number; label?: string }[]) {
        const q = quadOf(b.box);
        if (!q) continue;
        const color = PALETTE[(b.class ?? 0) % PALETTE.length];
        const tag =
          `${b.label ?? (b.class !== undefined ? String(b.class) : '')} ${typeof b.score === 'number' ? b.score.toFixed(2) : ''}`.trim();
        const x = Math.min(...q.map((p) => p[0])),
          y = Math.min(...q.map((p) => p[1]));
        const font = Math.max(9, Math.min(16, Math.round(Math.min(width, height) / 40)));
        const label = tag
          ? `<rect x="${num(x)}" y="${num(y)}" width="${num(tag.length * font * 0.62 + 4)}" height="${font + 4}" fill="${color}"/>` +
            `<text x="${num(x + 2)}" y="${num(y + font)}" font-family="DejaVu Sans, sans-serif" font-size="${font}" fill="#ffffff">${esc(tag)}</text>`
          : '';
        parts.push(shape(id++, q, color, stroke, label));
      }
    } else if (spec.type === 'text-lines') {
      for (const l of v as { text?: string; box?: unknown }[]) {
        const q = quadOf(l.box);
        if (!q) continue;
        const [tl, tr, , bl] = q;
        const len = Math.hypot(tr[0] - tl[0], tr[1] - tl[1]),
          h = Math.hypot(bl[0] - tl[0], bl[1] - tl[1]);
        const deg = (Math.atan2(tr[1] - tl[1], tr[0] - tl[0]) * 180) / Math.PI;
        const text = esc(l.text ?? '');
        // librsvg ignores textLength: size the font so the line fits (DejaVu Sans averages ~0.6 em a glyph).
        const font = Math.max(1, Math.min(h * 0.72, (len - h * 0.2) / (0.6 * Math.max(1, [...(l.text ?? '')].length))));
        const body = text
          ? `<text transform="translate(${num(tl[0])},${num(tl[1])}) rotate(${num(deg)})" x="${num(h * 0.1)}" y="${num(h / 2 + font * 0.36)}" font-family="DejaVu Sans, sans-serif" font-size="${num(font)}" fill="#c00000">${text}</text>`
          : '';
        parts.push(shape(id++, q, '#0050ff', stroke, body, true));
      }
    }
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">${parts.join('')}</svg>`;
}

/** The masks among the outputs as one RGBA layer of the image's size (null when there are none). */
function maskLayer(
  manifest: Manifest,
  outputs: Record<string, unknown>,
): { data: Buffer; width: number; height: number } | null {
  for (const spec of manifest.outputs) {
    const m = outputs[spec.name] as { width?: number; height?: number; data?: ArrayLike<number> } | undefined;
    if (spec.type !== 'mask' || !m?.data || !m.width || !m.height || m.data.length !== m.width * m.height) continue;
    const rgba = Buffer.alloc(m.width * m.height * 4);
    for (let i = 0; i < m.data.length; i++) {
      const label = m.data[i];
      if (!label) continue;
      const c = MASK_RGB[(label - 1) % MASK_RGB.length];
      rgba[4 * i] = c[0];
      rgba[4 * i + 1] = c[1];
      rgba[4 * i + 2] = c[2];
      rgba[4 * i + 3] = MASK_ALPHA;
    }
    return { data: rgba, width: m.width, height: m.height };
  }
  return null;
}

/**
 * PNG bytes of `image` (a path or encoded bytes; EXIF orientation applied, as the pipeline does) with
 * `outputs` drawn on it. `budget` is the run's: an image the run took is drawn, a larger one refused
 * (E_RUN_INPUT) as the run refuses it.
 */
export async function annotate(
  image: string | Buffer,
  manifest: Manifest,
  outputs: Record<string, unknown>,
  budget?: RunnerBudget,
): Promise<Buffer> {
  const { default: sharp } = await import('sharp');
  // a path is read here, never opened by libvips (a pipe would block it), and an SVG is refused as
  // the runner refuses it (decode-sharp.ts): its filters can take a core for minutes
  const bytes = typeof image === 'string' ? await readFileBytes(image) : image;
  // sharp's own pixel limit (268 MP) is off, the run's budget checked instead: with --max-pixels
  // above it, a picture the run took was an internal error here
  const unlimited = { limitInputPixels: false } as const;
  const input = sharp(bytes, { failOn: 'error', ...unlimited });
  const meta = await input.metadata();
  const { format } = meta;
  if (format === 'svg')
    throw new RunnerError('E_RUN_INPUT_FORMAT', 'an SVG drawing is not annotated; give the raster image that ran', {
      reason: 'vector',
      format,
    });
  if (meta.width && meta.height) checkInputSize(meta.width, meta.height, resolveBudget(budget));
  // the same pixels the run decoded (a 16-bit image with a profile through 8-bit sRGB first)
  const { data, info } = await profiledToSrgb(input, meta)
    .autoOrient()
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  const layers: {
    input: Buffer;
    raw?: { width: number; height: number; channels: 4 };
    limitInputPixels: false;
  }[] = [];
  const mask = maskLayer(manifest, outputs);
  if (mask) {
    const fit =
      mask.width === info.width && mask.height === info.height
        ? mask.data
        : await sharp(mask.data, { raw: { width: mask.width, height: mask.height, channels: 4 }, ...unlimited })
            .resize(info.width, info.height, { kernel: 'nearest' })
            .raw()
            .toBuffer();
    layers.push({ input: fit, raw: { width: info.width, height: info.height, channels: 4 }, ...unlimited });
  }
  layers.push({ input: Buffer.from(svgFor(manifest, outputs, info.width, info.height)), ...unlimited });
  const drawn = await sharp(data, {
    raw: { width: info.width, height: info.height, channels: info.channels },
    ...unlimited,
  })
    .composite(layers)
    .raw()
    .toBuffer({ resolveWithObject: true });
  // Composing adds an alpha channel; an opaque input stays opaque (and smaller).
  const out = sharp(drawn.data, {
    raw: { width: drawn.info.width, height: drawn.info.height, channels: drawn.info.channels },
    ...unlimited,
  });
  return (info.channels === 4 || info.channels === 2 ? out : out.removeAlpha()).png().toBuffer();
}

/** The real path of `p`, or of its folder joined with its name when it does not exist yet. */
async function canonical(p: string): Promise<string> {
  return realpath(p).catch(async () =>
    join(await realpath(dirname(resolve(p))).catch(() => dirname(resolve(p))), basename(p)),
  );
}

/**
 * Writes `png` to `dest` atomically (pack/atomic.ts: a temp file beside it, removed on Ctrl-C, then
 * renamed). Refuses (E_USAGE) when `dest` is one of `inputs` (the run's input files, and the files
 * it reads besides: the package, trust keys, the host profile): none is ever overwritten; and when
 * `dest` exists but is not a regular file (a device, a pipe: the rename would replace it).
 */
export async function writeAnnotation(dest: string, png: Buffer, inputs: readonly string[]): Promise<void> {
  const target = await canonical(dest);
  for (const i of inputs) {
    if ((await canonical(i)) === target)
      throw new UsageError('E_USAGE', `--annotate would overwrite the input ${i}`, { input: i, annotate: dest });
  }
  // The temp file is renamed over the target: a device (/dev/null), a pipe or a socket there would be
  // replaced by a regular file, not written to.
  const st = await stat(target).catch(() => null);
  if (st && !st.isFile())
    throw new UsageError(
      'E_USAGE',
      `--annotate ${dest} is ${st.isDirectory() ? 'a folder' : 'not a regular file'}; a picture is written as a new file`,
      { annotate: dest, reason: 'not-a-file' },
    );
  await writeAtomic(target, (fh) => fh.writeFile(png));
}
