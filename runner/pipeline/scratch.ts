/**
 * Reused arrays for a pipeline's intermediate tensors (a model's pre-processed input): a run takes
 * them from its runner's pool and gives back, when it has finished, every one its result does not
 * refer to. Without it each run allocated its input tensor anew (the detector: 1.2 MB a run), and
 * V8 collected every ~30 runs; on the H200 each of the 4 slowest of 200 detector runs (p99 1.54×
 * p50) held a collection of 0.6–1.7 ms.
 *
 * What is never given back: an array a run's outputs refer to (any view of its buffer), every array
 * of a run that failed (a step may still hold it), and one that was detached meanwhile.
 */
import { OUT_ARRAYS as CTOR, type OutArray, type TensorData, type TensorDtype } from '../../native/index.js';

export type ScratchArray = TensorData;
export type ScratchType = TensorDtype;
export type ScratchOf<T extends ScratchType> = OutArray<T>;

/** Free arrays by type and length, up to `maxBytes` in all and `perKey` of one type and length. */
export class ScratchPool {
  readonly #free = new Map<string, ScratchArray[]>();
  #bytes = 0;
  constructor(
    readonly maxBytes = 64 << 20,
    readonly perKey = 4,
  ) {}

  /** Bytes held free. */
  get bytes(): number {
    return this.#bytes;
  }

  take<T extends ScratchType>(type: T, length: number): ScratchOf<T> {
    const list = this.#free.get(`${type}:${length}`);
    const a = list?.pop();
    if (a) {
      this.#bytes -= a.byteLength;
      return a as ScratchOf<T>;
    }
    return new CTOR[type](length) as ScratchOf<T>;
  }

  give(type: ScratchType, length: number, a: ScratchArray): void {
    // detached (transferred) or not what it was taken as: dropped
    if (a.length !== length || !(a instanceof CTOR[type]) || this.#bytes + a.byteLength > this.maxBytes) return;
    const key = `${type}:${length}`;
    let list = this.#free.get(key);
    if (!list) this.#free.set(key, (list = []));
    if (list.length >= this.perKey) return;
    list.push(a);
    this.#bytes += a.byteLength;
  }
}

/** One run's arrays from a pool. */
export class ScratchLease {
  readonly #taken: [ScratchType, number, ScratchArray][] = [];
  constructor(private readonly pool: ScratchPool) {}

  take<T extends ScratchType>(type: T, length: number): ScratchOf<T> {
    const a = this.pool.take(type, length);
    this.#taken.push([type, length, a]);
    return a;
  }

  /** After the run succeeded: gives back every array `result` does not refer to. */
  release(result: unknown): void {
    const held = buffersIn(result);
    for (const [type, length, a] of this.#taken.splice(0)) if (!held.has(a.buffer)) this.pool.give(type, length, a);
  }
}

/** The buffers of every typed array in `v` (objects, arrays, maps and sets, to any depth). */
export function buffersIn(
  v: unknown,
  found = new Set<ArrayBufferLike>(),
  seen = new Set<object>(),
): Set<ArrayBufferLike> {
  if (v === null || typeof v !== 'object' || seen.has(v)) return found;
  seen.add(v);
  if (ArrayBuffer.isView(v)) found.add(v.buffer);
  else if (v instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && v instanceof SharedArrayBuffer))
    found.add(v);
  else if (v instanceof Map) for (const [k, x] of v) buffersIn(k, found, seen), buffersIn(x, found, seen);
  else if (v instanceof Set) for (const x of v) buffersIn(x, found, seen);
  else if (Array.isArray(v)) {
    for (const x of v) if (x !== null && typeof x === 'object') buffersIn(x, found, seen);
  } else for (const x of Object.values(v)) buffersIn(x, found, seen);
  return found;
}
