/**
 * Host side of the value encoding: tensors become handle ids in a per-call scope, small typed
 * arrays are copied, everything else is JSON. What the guest sends is untrusted: every id is
 * looked up, every marker checked, `__proto__` keys refused.
 */
import { SandboxError } from '../spec/errors.js';
import { DTYPE_ARRAY, DTYPE_BYTES, MAX_DEPTH, MAX_RANK, SMALL_ARRAYS, type SmallArrayName } from './protocol.js';
import type { SandboxDType, SandboxTensor } from './types.js';

const SMALL_CTORS: Readonly<
  Record<SmallArrayName, new (src: ArrayLike<number>) => ArrayBufferView & ArrayLike<number>>
> = {
  Float32Array,
  Float64Array,
  Int32Array,
  Uint32Array,
  Int16Array,
  Uint16Array,
  Int8Array,
  Uint8Array,
};
const TENSOR_CTORS = { Float32Array, Uint16Array, BigInt64Array, Int32Array, Uint8Array, Int8Array } as const;

const typedTag = (v: ArrayBufferView): string | undefined =>
  (v as unknown as { [Symbol.toStringTag]?: string })[Symbol.toStringTag];

function isDType(v: unknown): v is SandboxDType {
  return typeof v === 'string' && Object.hasOwn(DTYPE_BYTES, v);
}

/** Element count of valid dims, or -1. */
export function elementCount(dims: unknown): number {
  if (!Array.isArray(dims) || dims.length > MAX_RANK) return -1;
  let n = 1;
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) return -1;
    n *= d;
  }
  return Number.isSafeInteger(n) ? n : -1;
}

/** A tensor-shaped host value: the test is structural, as runner tensors are plain objects. */
export function looksLikeTensor(v: unknown): v is SandboxTensor {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as SandboxTensor).type === 'string' &&
    Array.isArray((v as SandboxTensor).dims) &&
    ArrayBuffer.isView((v as SandboxTensor).data)
  );
}

/** Throws TypeError unless `t` is a consistent tensor (a host or kernel bug, not the guest's). */
export function checkTensor(t: SandboxTensor, where: string): void {
  if (!isDType(t.type)) throw new TypeError(`${where}: unknown tensor type '${String(t.type)}'`);
  const n = elementCount(t.dims);
  if (n < 0) throw new TypeError(`${where}: tensor dims must be at most ${MAX_RANK} non-negative integers`);
  if (typedTag(t.data) !== DTYPE_ARRAY[t.type])
    throw new TypeError(`${where}: a ${t.type} tensor must hold a ${DTYPE_ARRAY[t.type]}`);
  if ((t.data as ArrayLike<unknown>).length !== n)
    throw new TypeError(`${where}: tensor has ${(t.data as ArrayLike<unknown>).length} elements, dims say ${n}`);
}

export function tensorBytes(t: SandboxTensor): number {
  return t.data.byteLength;
}

/**
 * Tensors the guest can name during one call. Ids come from a per-sandbox counter and are never
 * reused, so a handle kept from an earlier call cannot alias a newer tensor.
 */
export class CallScope {
  private readonly live = new Map<number, { tensor: SandboxTensor; owned: boolean }>();
  private readonly borrowed = new WeakSet<SandboxTensor>();
  private readonly adopted = new Set<number>();
  private ownedBytes = 0;

  constructor(
    private readonly nextId: () => number,
    private readonly maxOwnedBytes: number,
    private readonly onCount: (delta: number) => void,
  ) {}

  /** Registers a caller's tensor: the guest may use it, the sandbox never counts or frees it. */
  borrow(t: SandboxTensor): number {
    this.borrowed.add(t);
    return this.put(t, false);
  }

  /** Registers a tensor the guest created (through a kernel or ctx.tensor). */
  own(t: SandboxTensor): number {
    if (this.borrowed.has(t)) return this.put(t, false);
    this.ownedBytes += tensorBytes(t);
    const id = this.put(t, true);
    if (this.ownedBytes > this.maxOwnedBytes) {
      throw new SandboxError('E_SANDBOX_MEMORY', `tensors alive in this call exceed ${this.maxOwnedBytes} bytes`, {
        limitBytes: this.maxOwnedBytes,
        bytes: this.ownedBytes,
      });
    }
    return id;
  }

  /**
   * Registers a queued kernel's result under the provisional id the guest gave it (negative, never
   * used before in this call); anything else is a forged id.
   */
  adopt(id: unknown, t: SandboxTensor): void {
    if (
      !Number.isSafeInteger(id) ||
      (id as number) >= 0 ||
      this.live.has(id as number) ||
      this.adopted.has(id as number)
    ) {
      throw new SandboxError('E_SANDBOX_HANDLE', 'invalid provisional tensor id from the sandbox', { id: String(id) });
    }
    this.adopted.add(id as number);
    const owned = !this.borrowed.has(t);
    if (owned) this.ownedBytes += tensorBytes(t);
    this.live.set(id as number, { tensor: t, owned });
    this.onCount(1);
    if (this.ownedBytes > this.maxOwnedBytes) {
      throw new SandboxError('E_SANDBOX_MEMORY', `tensors alive in this call exceed ${this.maxOwnedBytes} bytes`, {
        limitBytes: this.maxOwnedBytes,
        bytes: this.ownedBytes,
      });
    }
  }

  private put(t: SandboxTensor, owned: boolean): number {
    const id = this.nextId();
    this.live.set(id, { tensor: t, owned });
    this.onCount(1);
    return id;
  }

  get(id: unknown): SandboxTensor {
    const e = typeof id === 'number' ? this.live.get(id) : undefined;
    if (!e)
      throw new SandboxError('E_SANDBOX_HANDLE', 'unknown, disposed or expired tensor handle', {
        id: typeof id === 'number' ? id : String(id),
      });
    return e.tensor;
  }

  drop(id: unknown): void {
    const t = this.get(id);
    const e = this.live.get(id as number)!;
    if (e.owned) this.ownedBytes -= tensorBytes(t);
    this.live.delete(id as number);
    this.onCount(-1);
  }

  get size(): number {
    return this.live.size;
  }

  /** Bytes of new tensors the call may still hold. */
  get bytesLeft(): number {
    return Math.max(0, this.maxOwnedBytes - this.ownedBytes);
  }

  clear(): void {
    this.onCount(-this.live.size);
    this.live.clear();
    this.ownedBytes = 0;
  }
}

/**
 * JSON has no NaN, infinities or -0 (they came out 0): typed array elements that are go as the
 * strings typed array constructors read back.
 */
const NON_FINITE = new Set(['NaN', 'Infinity', '-Infinity', '-0']);
const element = (x: number): number | string =>
  x - x === 0 && (x !== 0 || 1 / x > 0) ? x : Object.is(x, -0) ? '-0' : String(x);

function encodeSmall(
  v: ArrayBufferView,
  copyBytes: number,
  where: string,
): { $xpkg: 'array'; type: string; data: (number | string)[] } {
  const tag = typedTag(v);
  if (!tag || !(SMALL_ARRAYS as readonly string[]).includes(tag))
    throw new TypeError(`${where}: cannot copy a ${tag ?? 'DataView'}; pass a tensor`);
  if (v.byteLength > copyBytes)
    throw new RangeError(
      `${where}: a typed array of ${v.byteLength} bytes exceeds the copy budget of ${copyBytes}; pass a tensor`,
    );
  return { $xpkg: 'array', type: tag, data: Array.from(v as unknown as ArrayLike<number>, element) };
}

/**
 * Host value → JSON for the guest. `register` turns each tensor into an id (borrowed for call
 * arguments, owned for kernel results).
 */
export function encodeForGuest(
  value: unknown,
  register: (t: SandboxTensor) => number,
  copyBytes: number,
  where: string,
): string {
  const s = JSON.stringify(value === undefined ? null : value, function (this: unknown, _key, v: unknown) {
    if (typeof v !== 'object' || v === null) return v;
    if (looksLikeTensor(v)) {
      checkTensor(v, where);
      return { $xpkg: 'tensor', id: register(v), dtype: v.type, shape: [...v.dims] };
    }
    if (ArrayBuffer.isView(v)) return encodeSmall(v, copyBytes, where);
    if (Object.hasOwn(v, '$xpkg')) throw new TypeError(`${where}: the key '$xpkg' is reserved`);
    return v;
  });
  return s;
}

/** Whether JSON text nests arrays and objects deeper than `max` (brackets inside strings skipped). */
export function nestsDeeper(json: string, max: number): boolean {
  if (json.length <= 2 * max) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (inString) {
      if (c === 92) i++;
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 91 || c === 123) {
      if (++depth > max) return true;
    } else if (c === 93 || c === 125) depth--;
  }
  return false;
}

/**
 * Whether a decoded guest object would pass for a tensor: it carries `type` and `dims` beside a
 * typed array `data` (the runner's test needs no more). Only handles may be tensors on the host.
 */
function isForgedTensor(v: object): boolean {
  const o = v as { data?: unknown };
  return Object.hasOwn(v, 'data') && ArrayBuffer.isView(o.data) && Object.hasOwn(v, 'type') && Object.hasOwn(v, 'dims');
}

/**
 * Guest JSON → host value. Tensor markers resolve in `scope` (E_SANDBOX_HANDLE when unknown, as
 * is a tensor-shaped plain object), array markers are size-checked, `__proto__` keys and nesting
 * deeper than MAX_DEPTH refused (E_SANDBOX_OUTPUT).
 */
export function decodeFromGuest(json: string, scope: CallScope, copyBytes: number): unknown {
  if (nestsDeeper(json, MAX_DEPTH))
    throw new SandboxError('E_SANDBOX_OUTPUT', `a value from the sandbox nests deeper than ${MAX_DEPTH} levels`, {
      maxDepth: MAX_DEPTH,
    });
  return JSON.parse(json, (key, v: unknown) => {
    if (key === '__proto__')
      throw new SandboxError('E_SANDBOX_OUTPUT', "the key '__proto__' is not allowed in values from the sandbox");
    if (typeof v !== 'object' || v === null) return v;
    if (!Object.hasOwn(v, '$xpkg')) {
      // A plain object shaped like a tensor ({type, dims, data: a copied typed array}) would pass
      // the host's structural tensor tests with dims that need not match its data: kernels sized
      // their work by those dims (25 s of the host thread for 5·10⁷ channels), and results reached
      // the runner as tensors.
      if (isForgedTensor(v))
        throw new SandboxError('E_SANDBOX_HANDLE', 'a tensor-shaped object from the sandbox is not a tensor handle');
      return v;
    }
    const m = v as { $xpkg: unknown; id?: unknown; type?: unknown; data?: unknown };
    if (m.$xpkg === 'tensor') return scope.get(m.id);
    if (
      m.$xpkg === 'array' &&
      typeof m.type === 'string' &&
      Object.hasOwn(SMALL_CTORS, m.type) &&
      Array.isArray(m.data)
    ) {
      const C = SMALL_CTORS[m.type as SmallArrayName];
      if (m.data.length * (C as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT > copyBytes)
        throw new SandboxError('E_SANDBOX_MEMORY', `a typed array exceeds the copy budget of ${copyBytes} bytes`);
      if (!m.data.every((x) => x === null || typeof x === 'number' || NON_FINITE.has(x)))
        throw new SandboxError('E_SANDBOX_OUTPUT', 'malformed typed array from the sandbox');
      return new C(m.data as number[]);
    }
    throw new SandboxError('E_SANDBOX_HANDLE', 'forged value marker from the sandbox');
  });
}

/** A tensor from bytes the guest copied in (ctx.tensor). */
export function tensorFromBytes(dtype: unknown, shape: unknown, bytes: unknown, copyBytes: number): SandboxTensor {
  if (!isDType(dtype)) throw new TypeError(`ctx.tensor: unknown dtype '${String(dtype)}'`);
  const n = elementCount(shape);
  if (n < 0) throw new TypeError(`ctx.tensor: shape must be at most ${MAX_RANK} non-negative integers`);
  if (!(bytes instanceof Uint8Array)) throw new TypeError('ctx.tensor: data missing');
  if (bytes.byteLength > copyBytes)
    throw new SandboxError(
      'E_SANDBOX_MEMORY',
      `ctx.tensor: ${bytes.byteLength} bytes exceeds the copy budget of ${copyBytes}`,
    );
  if (bytes.byteLength !== n * DTYPE_BYTES[dtype])
    throw new TypeError(
      `ctx.tensor: ${bytes.byteLength} bytes do not fill shape [${(shape as number[]).join(', ')}] of ${dtype}`,
    );
  // A fresh, aligned buffer: the transferred one may not be aligned for the element size.
  const buf = new Uint8Array(bytes.byteLength);
  buf.set(bytes);
  const C = TENSOR_CTORS[DTYPE_ARRAY[dtype]];
  return { type: dtype, dims: [...(shape as number[])], data: new C(buf.buffer) };
}
