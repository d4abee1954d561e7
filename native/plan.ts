/**
 * Geometry planning shared by both backends: validates the public options and turns them into the
 * flat raw options the kernels take (output size, letterbox placement, crop homographies,
 * normalisation constants rounded to float32). Native and portable code then run the same plan.
 */
import type {
  CropOptions,
  ImageInput,
  PixelFormat,
  PreprocessOptions,
  RawCrop,
  RawImage,
  RawPreprocess,
  TensorDtype,
} from './index.js';
import { bool, fail, int, num, oneOf, options, perChannel, typed } from './validate.js';

const FORMATS: Record<PixelFormat, { channels: number; r: number; g: number; b: number }> = {
  rgb: { channels: 3, r: 0, g: 1, b: 2 },
  rgba: { channels: 4, r: 0, g: 1, b: 2 },
  bgr: { channels: 3, r: 2, g: 1, b: 0 },
  bgra: { channels: 4, r: 2, g: 1, b: 0 },
  gray: { channels: 1, r: 0, g: 0, b: 0 },
};

export function planImage(image: ImageInput): RawImage & { format: PixelFormat } {
  const im = options<ImageInput>('image', image);
  const format = oneOf('image.format', im.format, Object.keys(FORMATS) as PixelFormat[]);
  const channels = FORMATS[format].channels;
  const width = int('image.width', im.width, 1, 1 << 16);
  const height = int('image.height', im.height, 1, 1 << 16);
  const stride = im.stride === undefined ? width * channels : int('image.stride', im.stride, width * channels);
  const data = typed('image.data', im.data, Uint8Array, (height - 1) * stride + width * channels);
  return { data, width, height, channels, stride, format };
}

interface NormPlan {
  outChannels: number;
  chanMap: Int32Array;
  norm: Float64Array;
  nhwc: boolean;
  dtype: TensorDtype;
}

/**
 * Normalisation and layout shared by preprocess and cropBatch; `pad` is in output units unless `padPixel`.
 * `dtypes`: the element types the kernel offers (u8 only where both backends write the same bytes).
 */
function planNorm(
  format: PixelFormat,
  o: PreprocessOptions | CropOptions,
  pad: { pixel?: [number, number, number]; value?: [number, number, number] },
  dtypes: readonly TensorDtype[],
): NormPlan {
  const f = FORMATS[format];
  const order = oneOf('channelOrder', o.channelOrder ?? 'rgb', ['rgb', 'bgr'] as const);
  const gray = format === 'gray';
  const outChannels = gray ? 1 : 3;
  const chanMap = Int32Array.from(gray ? [0, 0, 0] : order === 'rgb' ? [f.r, f.g, f.b] : [f.b, f.g, f.r]);
  const scale = num('scale', o.scale ?? 1 / 255);
  const mean = perChannel('mean', o.mean, 0);
  const std = perChannel('std', o.std, 1);
  const norm = new Float64Array(9);
  for (let k = 0; k < 3; k++) {
    if (std[k] === 0) fail(`std[${k}]`, 'must not be 0');
    // Rounded to float32 here so both backends normalise with the very same constants.
    norm[k] = Math.fround(scale / std[k]);
    norm[3 + k] = Math.fround(-mean[k] / std[k]);
    norm[6 + k] = Math.fround(pad.pixel ? pad.pixel[k] * norm[k] + norm[3 + k] : pad.value![k]);
  }
  const layout = oneOf('layout', o.layout ?? 'nchw', ['nchw', 'nhwc'] as const);
  const dtype = oneOf('dtype', o.dtype ?? 'f32', dtypes);
  return { outChannels, chanMap, norm, nhwc: layout === 'nhwc', dtype };
}

const INTERP = { bilinear: 0, area: 1, auto: 2 } as const;

export interface PreprocessPlan {
  raw: Omit<RawPreprocess, 'out' | 'outOffset' | 'threads'>;
  dtype: TensorDtype;
  dims: number[];
  resized: { width: number; height: number };
  pad: { x: number; y: number };
  scale: { x: number; y: number };
}

/** `padTo`: ascending integer sizes (at most 64), or none. */
function padSizes(v: unknown): number[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.length > 64) fail('resize.padTo', 'must be an array of at most 64 sizes');
  return v.map((b, i) => {
    const n = int(`resize.padTo[${i}]`, b, 1, 1 << 15);
    if (i > 0 && n <= v[i - 1]) fail('resize.padTo', 'must ascend');
    return n;
  });
}

export function planPreprocess(image: ImageInput, opts: PreprocessOptions): PreprocessPlan {
  const im = planImage(image);
  const o = options<PreprocessOptions>('options', opts);
  const rs = options<PreprocessOptions['resize']>('resize', o.resize);
  oneOf('resize.mode', rs.mode, ['stretch', 'letterbox', 'limitSide'] as const);
  const w = im.width,
    h = im.height;
  let planeW: number,
    planeH: number,
    roiX = 0,
    roiY = 0,
    roiW: number,
    roiH: number;
  let padPixel: [number, number, number] = [0, 0, 0];
  if (rs.mode === 'stretch' || rs.mode === 'letterbox') {
    planeW = int('resize.width', rs.width, 1, 1 << 15);
    planeH = int('resize.height', rs.height, 1, 1 << 15);
    roiW = planeW;
    roiH = planeH;
    if (rs.mode === 'letterbox') {
      padPixel = perChannel('resize.padPixel', rs.padPixel, 114);
      const anchor = oneOf('resize.anchor', rs.anchor ?? 'center', ['center', 'topLeft'] as const);
      const s = Math.min(planeW / w, planeH / h);
      roiW = Math.min(planeW, Math.max(1, Math.round(w * s)));
      roiH = Math.min(planeH, Math.max(1, Math.round(h * s)));
      if (anchor === 'center') {
        roiX = Math.floor((planeW - roiW) / 2);
        roiY = Math.floor((planeH - roiH) / 2);
      }
    }
  } else {
    // PaddleOCR's det resize: limit one side, then round each side to a multiple (at least one).
    const limit = int('resize.limit', rs.limit, 1, 1 << 15);
    const side = oneOf('resize.side', rs.side ?? 'max', ['max', 'min'] as const);
    const multiple = int('resize.multiple', rs.multiple ?? 32, 1, 1 << 15);
    const ratio =
      side === 'max'
        ? Math.max(w, h) > limit
          ? limit / Math.max(w, h)
          : 1
        : Math.min(w, h) < limit
          ? limit / Math.min(w, h)
          : 1;
    roiW = Math.max(Math.round((w * ratio) / multiple) * multiple, multiple);
    roiH = Math.max(Math.round((h * ratio) / multiple) * multiple, multiple);
    if (roiW > 1 << 15 || roiH > 1 << 15) fail('resize', `output ${roiW}x${roiH} is too large`);
    const sizes = padSizes(rs.padTo);
    planeW = sizes.find((b) => b >= roiW) ?? roiW;
    planeH = sizes.find((b) => b >= roiH) ?? roiH;
    if (sizes.length) padPixel = perChannel('resize.padPixel', rs.padPixel, 0);
  }
  const interp = INTERP[oneOf('interpolation', o.interpolation ?? 'auto', ['bilinear', 'area', 'auto'] as const)];
  const n = planNorm(im.format, o, { pixel: padPixel }, ['f32', 'f16', 'u8']);
  const c = n.outChannels;
  return {
    raw: {
      ...im,
      outChannels: c,
      chanMap: n.chanMap,
      norm: n.norm,
      nhwc: n.nhwc,
      planeWidth: planeW,
      planeHeight: planeH,
      roiX,
      roiY,
      roiWidth: roiW,
      roiHeight: roiH,
      interp,
    },
    dtype: n.dtype,
    dims: n.nhwc ? [1, planeH, planeW, c] : [1, c, planeH, planeW],
    resized: { width: roiW, height: roiH },
    pad: { x: roiX, y: roiY },
    scale: { x: roiW / w, y: roiH / h },
  };
}

export interface CropPlan {
  raw: Omit<RawCrop, 'out' | 'outOffset' | 'threads'>;
  dtype: 'f32' | 'f16' | 'u8';
  dims: number[];
  rotated: Uint8Array;
}

const dist = (q: ArrayLike<number>, a: number, b: number): number =>
  Math.hypot(q[2 * a] - q[2 * b], q[2 * a + 1] - q[2 * b + 1]);

/** Projective map taking (0,0),(w,0),(w,h),(0,h) to the quad's TL, TR, BR, BL (Heckbert's square-to-quad). */
export function homography(q: ArrayLike<number>, w: number, h: number): number[] {
  const [x0, y0, x1, y1, x2, y2, x3, y3] = [q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]];
  const sx = x0 - x1 + x2 - x3,
    sy = y0 - y1 + y2 - y3;
  const dx1 = x1 - x2,
    dx2 = x3 - x2,
    dy1 = y1 - y2,
    dy2 = y3 - y2;
  const den = dx1 * dy2 - dx2 * dy1;
  let g = 0,
    k = 0;
  if ((sx !== 0 || sy !== 0) && den !== 0) {
    g = (sx * dy2 - dx2 * sy) / den;
    k = (dx1 * sy - sx * dy1) / den;
  }
  const a = x1 - x0 + g * x1,
    b = x3 - x0 + k * x3,
    d = y1 - y0 + g * y1,
    e = y3 - y0 + k * y3;
  return [a / w, b / h, x0, d / w, e / h, y0, g / w, k / h, 1];
}

export function planCrop(image: ImageInput, quadsIn: ArrayLike<number>, opts: CropOptions): CropPlan {
  const im = planImage(image);
  const o = options<CropOptions>('options', opts);
  if (!Array.isArray(quadsIn) && !(quadsIn instanceof Float32Array) && !(quadsIn instanceof Float64Array))
    fail('quads', 'must be a number array or Float32Array/Float64Array');
  if (quadsIn.length % 8 !== 0) fail('quads', `length must be a multiple of 8, got ${quadsIn.length}`);
  const count = quadsIn.length / 8;
  for (let i = 0; i < quadsIn.length; i++) num(`quads[${i}]`, quadsIn[i]);
  const H = int('height', o.height, 1, 4096);
  const maxWidth = int('maxWidth', o.maxWidth ?? 4096, 1, 1 << 15);
  const minWidth = int('minWidth', o.minWidth ?? 1, 1, maxWidth);
  const multiple = int('widthMultiple', o.widthMultiple ?? 1, 1, 4096);
  const fixed = o.width === undefined ? undefined : int('width', o.width, 1, 1 << 15);
  const vertical = o.verticalRatio === undefined ? Infinity : num('verticalRatio', o.verticalRatio, { min: 0 });
  const supersample = o.supersample === undefined ? true : bool('supersample', o.supersample);
  const widths = new Int32Array(count),
    samples = new Int32Array(count),
    rotated = new Uint8Array(count);
  const homographies = new Float64Array(count * 9);
  const quads: number[][] = [];
  const sizes: [number, number][] = [];
  for (let r = 0; r < count; r++) {
    let q = Array.prototype.slice.call(quadsIn, r * 8, r * 8 + 8) as number[];
    let wq = Math.max(dist(q, 0, 1), dist(q, 3, 2));
    let hq = Math.max(dist(q, 0, 3), dist(q, 1, 2));
    if (hq > 0 && wq > 0 && hq / wq >= vertical) {
      // Tall region: read it rotated 90° counter-clockwise (TR, BR, BL, TL become the new corners).
      q = [q[2], q[3], q[4], q[5], q[6], q[7], q[0], q[1]];
      [wq, hq] = [hq, wq];
      rotated[r] = 1;
    }
    widths[r] = hq > 0 ? Math.max(minWidth, Math.min(maxWidth, Math.ceil((H * wq) / hq))) : minWidth;
    quads.push(q);
    sizes.push([wq, hq]);
  }
  let W = minWidth;
  for (const w of widths) W = Math.max(W, w);
  W = fixed ?? Math.min(maxWidth, Math.ceil(W / multiple) * multiple);
  for (let r = 0; r < count; r++) {
    // A region wider than the batch is squeezed into it, as PaddleOCR's recognizer resize does.
    if (widths[r] > W) widths[r] = W;
    const [wq, hq] = sizes[r];
    // Rounded, not ceiled: a shrink under 1.5× gains nothing visible from 2×2 samples but costs 4× the reads.
    samples[r] = supersample ? Math.max(1, Math.min(4, Math.round(Math.max(hq / H, wq / widths[r])))) : 1;
    homographies.set(homography(quads[r], widths[r], H), r * 9);
  }
  const n = planNorm(im.format, o, { value: perChannel('padValue', o.padValue, 0) }, ['f32', 'f16', 'u8']);
  const c = n.outChannels;
  return {
    raw: {
      ...im,
      outChannels: c,
      chanMap: n.chanMap,
      norm: n.norm,
      nhwc: n.nhwc,
      count,
      outWidth: W,
      outHeight: H,
      homographies,
      widths,
      samples,
    },
    dtype: n.dtype,
    dims: n.nhwc ? [count, H, W, c] : [count, c, H, W],
    rotated,
  };
}
