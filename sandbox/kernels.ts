/**
 * A small set of real kernels in TypeScript, usable as a sandbox's kernel table until the runner
 * passes its native ones. Each takes tensors plus one options object and returns fresh tensors;
 * inputs are never modified. Bad arguments throw (the guest sees a catchable error). Called by the
 * sandbox, each keeps to the call's budget (`this`, types.ts KernelBudget): results over the bytes
 * left are refused before they are allocated, and the long loops stop past the deadline.
 */
import { SandboxError } from '../spec/errors.js';
import { checkTensor } from './codec.js';
import type { Kernel, KernelBudget, KernelResults, KernelTable, SandboxTensor, SandboxValue } from './types.js';

/** `this` of a kernel: a KernelBudget when the sandbox calls it, anything when others do. */
type Budget = Partial<KernelBudget> | undefined | unknown;
const limits = (b: Budget): Partial<KernelBudget> => (typeof b === 'object' && b !== null ? b : {});

/** Refuses results of `bytes` over what the call has left (E_SANDBOX_MEMORY), before allocating them. */
function room(b: Budget, bytes: number, what: string): void {
  const { maxBytes } = limits(b);
  if (typeof maxBytes === 'number' && bytes > maxBytes)
    throw new SandboxError('E_SANDBOX_MEMORY', `${what}: results of ${bytes} bytes exceed the ${maxBytes} bytes left`, {
      kernel: what,
      bytes,
      limitBytes: maxBytes,
    });
}
/** Stops a long kernel once past the call's deadline (E_SANDBOX_TIMEOUT): nothing else can. */
function inTime(b: Budget, what: string): void {
  const { deadline } = limits(b);
  if (typeof deadline === 'number' && performance.now() > deadline)
    throw new SandboxError('E_SANDBOX_TIMEOUT', `kernel ${what} ran past the call's deadline`, { kernel: what });
}

type F32 = SandboxTensor & { data: Float32Array };

function tensorArg(v: SandboxValue | undefined, what: string, types: readonly string[]): SandboxTensor {
  const t = v as SandboxTensor;
  if (typeof t !== 'object' || t === null || !ArrayBuffer.isView(t.data) || !Array.isArray(t.dims))
    throw new TypeError(`${what} must be a tensor`);
  if (!types.includes(t.type)) throw new TypeError(`${what} must be ${types.join(' or ')}, got ${t.type}`);
  // Work and allocations are sized by dims: they must describe the data (a caller's bug otherwise).
  checkTensor(t, what);
  return t;
}
function opts(v: SandboxValue | undefined): Record<string, unknown> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v) || ArrayBuffer.isView(v))
    throw new TypeError('options must be an object');
  return v as Record<string, unknown>;
}
function int(v: unknown, what: string, min: number, max: number): number {
  if (!Number.isInteger(v) || (v as number) < min || (v as number) > max)
    throw new RangeError(`${what} must be an integer in ${min}..${max}`);
  return v as number;
}
function nums(v: unknown, n: number, what: string): number[] {
  if (!Array.isArray(v) || v.length !== n || !v.every((x) => typeof x === 'number' && Number.isFinite(x)))
    throw new TypeError(`${what} must be ${n} finite numbers`);
  return v;
}
const f32 = (dims: number[], data = new Float32Array(dims.reduce((a, b) => a * b, 1))): F32 => ({
  type: 'float32',
  dims,
  data,
});
/** Splits dims into rows × the last axis. */
function rowsCols(t: SandboxTensor): [number, number] {
  if (t.dims.length === 0) throw new RangeError('tensor must have at least one axis');
  const cols = t.dims[t.dims.length - 1];
  return [cols === 0 ? 0 : t.data.length / cols, cols];
}

/** Bilinear resize of an HWC image (uint8 or float32), half-pixel centres, edges clamped. */
export function resize(this: Budget, image: SandboxValue, options?: SandboxValue): SandboxTensor {
  const t = tensorArg(image, 'resize: image', ['uint8', 'float32']);
  if (t.dims.length !== 3) throw new RangeError('resize: image must be [height, width, channels]');
  const o = opts(options);
  const [h, w, c] = t.dims;
  const oh = int(o.height, 'resize: height', 1, 16384);
  const ow = int(o.width, 'resize: width', 1, 16384);
  room(this, oh * ow * c * t.data.BYTES_PER_ELEMENT, 'resize');
  const src = t.data as Uint8Array | Float32Array;
  const out = t.type === 'uint8' ? new Uint8Array(oh * ow * c) : new Float32Array(oh * ow * c);
  const sy = h / oh;
  const sx = w / ow;
  const x0s = new Int32Array(ow),
    x1s = new Int32Array(ow),
    fxs = new Float32Array(ow);
  for (let x = 0; x < ow; x++) {
    const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), w - 1);
    x0s[x] = Math.floor(fx);
    x1s[x] = Math.min(x0s[x] + 1, w - 1);
    fxs[x] = fx - x0s[x];
  }
  for (let y = 0; y < oh; y++) {
    inTime(this, 'resize');
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), h - 1);
    const y0 = Math.floor(fy),
      y1 = Math.min(y0 + 1, h - 1),
      wy = fy - y0;
    const r0 = y0 * w * c,
      r1 = y1 * w * c;
    let o2 = y * ow * c;
    for (let x = 0; x < ow; x++) {
      const a = x0s[x] * c,
        b = x1s[x] * c,
        wx = fxs[x];
      for (let k = 0; k < c; k++, o2++) {
        const top = src[r0 + a + k] + (src[r0 + b + k] - src[r0 + a + k]) * wx;
        const bot = src[r1 + a + k] + (src[r1 + b + k] - src[r1 + a + k]) * wx;
        out[o2] = top + (bot - top) * wy + (t.type === 'uint8' ? 0.5 : 0);
      }
    }
  }
  return { type: t.type, dims: [oh, ow, c], data: out };
}

/** HWC image → float32 [1, C, H, W] with `(x · scale − mean[c]) / std[c]`. */
export function normalize(this: Budget, image: SandboxValue, options?: SandboxValue): SandboxTensor {
  const t = tensorArg(image, 'normalize: image', ['uint8', 'float32']);
  if (t.dims.length !== 3) throw new RangeError('normalize: image must be [height, width, channels]');
  const [h, w, c] = t.dims;
  const o = opts(options);
  const mean = nums(o.mean ?? new Array(c).fill(0), c, 'normalize: mean');
  const std = nums(o.std ?? new Array(c).fill(1), c, 'normalize: std');
  const scale = o.scale === undefined ? 1 : nums([o.scale], 1, 'normalize: scale')[0];
  const src = t.data as Uint8Array | Float32Array;
  room(this, h * w * c * 4, 'normalize');
  const out = f32([1, c, h, w]);
  const plane = h * w;
  for (let k = 0; k < c; k++) {
    inTime(this, 'normalize');
    const m = mean[k],
      inv = 1 / std[k],
      dst = out.data,
      base = k * plane;
    for (let i = 0, s = k; i < plane; i++, s += c) dst[base + i] = (src[s] * scale - m) * inv;
  }
  return out;
}

/** Softmax along the last axis (float32). */
export function softmax(this: Budget, x: SandboxValue): SandboxTensor {
  const t = tensorArg(x, 'softmax: input', ['float32']);
  const [rows, cols] = rowsCols(t);
  const src = t.data as Float32Array;
  room(this, t.data.byteLength, 'softmax');
  const out = f32([...t.dims]);
  for (let r = 0; r < rows; r++) {
    if ((r & 1023) === 0) inTime(this, 'softmax');
    const o = r * cols;
    let max = -Infinity;
    for (let i = 0; i < cols; i++) if (src[o + i] > max) max = src[o + i];
    let sum = 0;
    for (let i = 0; i < cols; i++) sum += out.data[o + i] = Math.exp(src[o + i] - max);
    for (let i = 0; i < cols; i++) out.data[o + i] /= sum;
  }
  return out;
}

/** First maximum along the last axis (NaN skipped): `{ indices: int32, values: float32 }`, dims without the last axis. */
export function argmax(this: Budget, x: SandboxValue): { indices: SandboxTensor; values: SandboxTensor } {
  const t = tensorArg(x, 'argmax: input', ['float32']);
  const [rows, cols] = rowsCols(t);
  // The leading dims, not rows: an empty last axis ([2³¹, 0]) has no rows but a large result.
  room(this, t.dims.slice(0, -1).reduce((n, d) => n * d, 1) * 8, 'argmax');
  const src = t.data as Float32Array;
  const dims = t.dims.slice(0, -1);
  const indices = new Int32Array(rows);
  const values = f32(dims);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let best = -1,
      bv = NaN;
    for (let i = 0; i < cols; i++) {
      const v = src[o + i];
      if (v === v && (best < 0 || v > bv)) (best = i), (bv = v);
    }
    indices[r] = best < 0 ? 0 : best;
    values.data[r] = bv;
  }
  return { indices: { type: 'int32', dims, data: indices }, values };
}

/** 1 where `x > value`, else 0 (uint8, same dims). */
export function threshold(this: Budget, x: SandboxValue, options?: SandboxValue): SandboxTensor {
  const t = tensorArg(x, 'threshold: input', ['float32']);
  const v = nums([opts(options).value], 1, 'threshold: value')[0];
  const src = t.data as Float32Array;
  room(this, src.length, 'threshold');
  const out = new Uint8Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] > v ? 1 : 0;
  return { type: 'uint8', dims: [...t.dims], data: out };
}

/**
 * Indices of the scores ≥ `minScore` (NaN never is), best first, ties by index: a stable LSD radix
 * sort on order-preserving keys, two passes of 16 bits, the deadline checked every 64 Ki scores.
 * A comparator sort of millions of scores ran on the host for seconds past the deadline
 * (16 Mi boxes: 13 s), out of reach of any check.
 */
function byScore(b: Budget, s: Float32Array, minScore: number): Uint32Array {
  const check = (k: number) => (k & 0xffff) === 0 && inTime(b, 'nms');
  let n = 0;
  for (let i = 0; i < s.length; i++) if (s[i] >= minScore) n++;
  const bits = new Uint32Array(s.buffer, s.byteOffset, s.length);
  let idx = new Uint32Array(n);
  let key = new Uint32Array(n);
  for (let i = 0, k = 0; i < s.length; i++) {
    check(i);
    if (!(s[i] >= minScore)) continue;
    // Float bits → unsigned ascending order (-0 as +0), then inverted for best first.
    const u = s[i] === 0 ? 0 : bits[i];
    key[k] = (u & 0x80000000 ? u : ~(u | 0x80000000)) >>> 0;
    idx[k++] = i;
  }
  let idx2 = new Uint32Array(n);
  let key2 = new Uint32Array(n);
  const count = new Uint32Array(65537);
  for (const shift of [0, 16]) {
    count.fill(0);
    for (let k = 0; k < n; k++) count[((key[k] >>> shift) & 0xffff) + 1]++;
    for (let d = 1; d <= 65536; d++) count[d] += count[d - 1];
    for (let k = 0; k < n; k++) {
      check(k);
      const at = count[(key[k] >>> shift) & 0xffff]++;
      idx2[at] = idx[k];
      key2[at] = key[k];
    }
    [idx, idx2] = [idx2, idx];
    [key, key2] = [key2, key];
  }
  return idx;
}

/** Greedy NMS over float32 boxes [N, 4] (x1, y1, x2, y2) and scores [N] → kept indices, best first. */
export function nms(this: Budget, boxes: SandboxValue, scores: SandboxValue, options?: SandboxValue): SandboxTensor {
  const b = tensorArg(boxes, 'nms: boxes', ['float32']).data as Float32Array;
  const st = tensorArg(scores, 'nms: scores', ['float32']);
  const s = st.data as Float32Array;
  if (b.length !== s.length * 4) throw new RangeError('nms: boxes must be [N, 4] for N scores');
  const o = opts(options);
  const iouMax = nums([o.iouThreshold], 1, 'nms: iouThreshold')[0];
  const minScore = o.scoreThreshold === undefined ? -Infinity : nums([o.scoreThreshold], 1, 'nms: scoreThreshold')[0];
  const maxOut = o.maxOutput === undefined ? s.length : int(o.maxOutput, 'nms: maxOutput', 0, 1 << 30);
  const order = byScore(this, s, minScore);
  const area = (i: number) => Math.max(0, b[4 * i + 2] - b[4 * i]) * Math.max(0, b[4 * i + 3] - b[4 * i + 1]);
  const keep: number[] = [];
  const dead = new Uint8Array(s.length);
  // Quadratic in the boxes kept, and one pass over millions of boxes takes a while too: the
  // deadline is checked per kept box and every 64 Ki boxes of a pass. Boxes before the kept one
  // in `order` are kept or dead already, so a pass starts after it.
  for (let a = 0; a < order.length && keep.length < maxOut; a++) {
    if ((a & 0xffff) === 0) inTime(this, 'nms');
    const i = order[a];
    if (dead[i]) continue;
    inTime(this, 'nms');
    keep.push(i);
    for (let c = a + 1; c < order.length; c++) {
      if ((c & 0xffff) === 0) inTime(this, 'nms');
      const j = order[c];
      if (dead[j]) continue;
      const iw = Math.min(b[4 * i + 2], b[4 * j + 2]) - Math.max(b[4 * i], b[4 * j]);
      const ih = Math.min(b[4 * i + 3], b[4 * j + 3]) - Math.max(b[4 * i + 1], b[4 * j + 1]);
      const inter = iw > 0 && ih > 0 ? iw * ih : 0;
      const union = area(i) + area(j) - inter;
      if (union > 0 && inter / union > iouMax) dead[j] = 1;
    }
  }
  return { type: 'int32', dims: [keep.length], data: Int32Array.from(keep) };
}

/** Rows of `x` (along axis 0) at int32 `indices` [K] → [K, …rest]. */
export function gather(this: Budget, x: SandboxValue, indices: SandboxValue): SandboxTensor {
  const t = tensorArg(x, 'gather: input', ['float32', 'int32', 'uint8', 'int8', 'bool', 'float16', 'int64']);
  const idx = tensorArg(indices, 'gather: indices', ['int32']).data as Int32Array;
  if (t.dims.length === 0) throw new RangeError('gather: input must have at least one axis');
  const n = t.dims[0];
  const row = n === 0 ? 0 : t.data.length / n;
  const C = t.data.constructor as new (n: number) => typeof t.data;
  room(this, idx.length * row * t.data.BYTES_PER_ELEMENT, 'gather');
  const out = new C(idx.length * row);
  idx.forEach((i, k) => {
    if ((k & 1023) === 0) inTime(this, 'gather');
    if (!(i >= 0 && i < n)) throw new RangeError(`gather: index ${i} out of range 0..${n - 1}`);
    (out as unknown as { set(a: ArrayLike<unknown>, o: number): void }).set(
      t.data.subarray(i * row, (i + 1) * row) as ArrayLike<unknown>,
      k * row,
    );
  });
  return { type: t.type, dims: [idx.length, ...t.dims.slice(1)], data: out };
}

/**
 * A queued copy of a kernel that always returns `returns` (one tensor, or an object of named
 * tensors): scripts get its result handles without waiting for the host (see types.ts Kernel).
 */
export function queued(fn: (this: Budget, ...args: SandboxValue[]) => unknown, returns: KernelResults): Kernel {
  const k = function (this: Budget, ...args: SandboxValue[]) {
    return fn.apply(this, args);
  } as Kernel;
  k.returns = typeof returns === 'string' ? returns : Object.freeze([...returns]);
  return k;
}

/** The kernels above as a table for `Sandbox.create({ kernels })`, all queued. */
export const basicKernels: KernelTable = Object.freeze({
  resize: queued(resize, 'tensor'),
  normalize: queued(normalize, 'tensor'),
  softmax: queued(softmax, 'tensor'),
  argmax: queued(argmax, ['indices', 'values']),
  threshold: queued(threshold, 'tensor'),
  nms: queued(nms, 'tensor'),
  gather: queued(gather, 'tensor'),
});
