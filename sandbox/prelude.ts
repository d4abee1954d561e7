/**
 * The guest half of the capability API, evaluated in each fresh QuickJS context before any
 * package code. It receives the raw host functions as an argument (they never appear on the
 * global object), keeps them in its closure, and returns `invoke`, `poll`, `functions`, `warm`
 * and `describe` to the worker.
 *
 * It captures the intrinsics it uses before guest code runs, so a script that later patches
 * `JSON`, `Array.prototype` or `Function.prototype.call` only confuses itself. Security does
 * not rest on this file: the worker and the host validate everything the guest sends.
 *
 * Guest view: a hook is `export function name(input, ctx)` (may be async) where `ctx` is
 *   ctx.kernels.<name>(...args)   host kernel on tensor handles → value with new handles
 *   ctx.tensor(dtype, shape, data) copies a small array in as a tensor handle
 *   ctx.asset(id) / ctx.assetText(id)  package asset bytes / UTF-8 text
 *   ctx.isTensor(v)
 * and a tensor handle is a frozen object with dtype, shape, size, read() (copy out) and dispose().
 * Handles are valid for one call. Kernels that declare their results are queued: they return
 * handles at once and the host runs them as they come, while the hook goes on (see types.ts
 * `Kernel`).
 */
import { DTYPE_ARRAY, MAX_QUEUED, MAX_RANK, SMALL_ARRAYS } from './protocol.js';

export interface PreludeConfig {
  /** Kernel names, with the declared results of queued kernels (null: synchronous). */
  kernels: readonly (readonly [string, 'tensor' | readonly string[] | null])[];
  outputChars: number;
  copyBytes: number;
  /** Four random 32-bit words seeding the guest's Math.random. */
  seed: readonly number[];
}

export function preludeSource(c: PreludeConfig): string {
  const constants = `const KERNELS = ${JSON.stringify(c.kernels)};
  const MAX_QUEUED = ${MAX_QUEUED};
  const OUTPUT = ${c.outputChars};
  const COPY = ${c.copyBytes};
  const MAX_RANK = ${MAX_RANK};
  const MAX_ID = 1024;
  const DTYPE_ARRAY = ${JSON.stringify(DTYPE_ARRAY)};
  const SMALL = ${JSON.stringify(Object.fromEntries(SMALL_ARRAYS.map((n) => [n, true])))};`;
  return `(function (host) {
  'use strict';
  ${constants}
  const O = Object, freeze = O.freeze, create = O.create, defineProperty = O.defineProperty;
  const getPrototypeOf = O.getPrototypeOf, getOwnPropertyDescriptor = O.getOwnPropertyDescriptor;
  const uncurry = Function.prototype.bind.bind(Function.prototype.call);
  const hasOwn = uncurry(O.prototype.hasOwnProperty);
  const hasInstance = uncurry(Function.prototype[Symbol.hasInstance]);
  const TypedProto = getPrototypeOf(Uint8Array.prototype);
  const typedTag = uncurry(getOwnPropertyDescriptor(TypedProto, Symbol.toStringTag).get);
  const typedByteLength = uncurry(getOwnPropertyDescriptor(TypedProto, 'byteLength').get);
  const typedBuffer = uncurry(getOwnPropertyDescriptor(TypedProto, 'buffer').get);
  const strSlice = uncurry(String.prototype.slice);
  const promiseResolve = uncurry(Promise.resolve), promiseThen = uncurry(Promise.prototype.then);
  const PromiseCtor = Promise, ErrorCtor = Error, TypeErrorCtor = TypeError, StringCtor = String;
  const parse = JSON.parse, stringify = JSON.stringify, isArray = Array.isArray, isView = ArrayBuffer.isView;
  const keys = O.keys, arrayPush = uncurry(Array.prototype.push), arraySort = uncurry(Array.prototype.sort), arrayJoin = uncurry(Array.prototype.join);
  const ARR = create(null);
  for (const C of [Float32Array, Float64Array, Int32Array, Uint32Array, Int16Array, Uint16Array, Int8Array, Uint8Array, BigInt64Array]) ARR[C.name] = C;
  const hostKernel = host.kernel, hostQueue = host.queue, hostSync = host.sync, hostRead = host.read, hostTensor = host.tensor, hostDispose = host.dispose;
  const hostAsset = host.asset, hostAssetText = host.assetText, hostFail = host.fail;

  // QuickJS seeds Math.random with the time in microseconds when the context is made: a script
  // inverting one output read the clock without the grant. xoshiro128** from the host's seed.
  let r0 = ${c.seed[0] | 0}, r1 = ${c.seed[1] | 0}, r2 = ${c.seed[2] | 0}, r3 = ${c.seed[3] | 0} || 1;
  const imul = Math.imul;
  function next32() {
    const r = imul(((imul(r1, 5) << 7) | (imul(r1, 5) >>> 25)), 9);
    const t = r1 << 9;
    r2 ^= r0; r3 ^= r1; r1 ^= r2; r0 ^= r3; r2 ^= t; r3 = (r3 << 11) | (r3 >>> 21);
    return r >>> 0;
  }
  defineProperty(Math, 'random', {
    value: function random() { return ((next32() >>> 5) * 67108864 + (next32() >>> 6)) / 9007199254740992; },
    writable: true, enumerable: false, configurable: true,
  });

  // Index loop rather than Array.from: iterators are patchable by the script.
  function toArray(v) {
    const out = [];
    for (let i = 0; i < v.length; i++) out[i] = v[i];
    return out;
  }
  // JSON has no NaN, infinities or -0 (they came out 0): such elements go as the strings the
  // typed array constructors read back ('NaN', 'Infinity', '-Infinity', '-0').
  function toElements(v) {
    const out = [];
    for (let i = 0; i < v.length; i++) {
      const x = v[i];
      out[i] = x - x === 0 && (x !== 0 || 1 / x > 0) ? x : x === 0 ? '-0' : StringCtor(x);
    }
    return out;
  }
  // Records the failure on the host side first: the call then fails with this code even if the
  // script catches what is thrown here.
  function fail(code, message) {
    message = strSlice(message, 0, 2000);
    hostFail(code, message);
    throw new ErrorCtor(message);
  }

  // Handles carry their id in a private field: unforgeable (only this class body can read or set
  // it, proxies do not forward it) and freed with the handle, unlike a WeakMap entry, which
  // QuickJS keeps until its next cycle collection.
  const TOKEN = freeze(create(null));
  let isHandle, idOf, known, describeTensor;
  class Tensor {
    #id;
    #dtype;
    #shape;
    constructor(token, id, dtype, shape) {
      if (token !== TOKEN) throw new TypeErrorCtor('tensor handles come from kernels or ctx.tensor()');
      this.#id = id;
      if (dtype !== undefined) describeTensor(this, dtype, shape);
      freeze(this);
    }
    get dtype() { known(this); return this.#dtype; }
    get shape() { known(this); return this.#shape; }
    get size() {
      known(this);
      let n = 1;
      for (let i = 0; i < this.#shape.length; i++) n *= this.#shape[i];
      return n;
    }
    read() { known(this); return new ARR[DTYPE_ARRAY[this.#dtype]](hostCall(hostRead, this.#id)); }
    dispose() { hostCall(hostDispose, idOf(this)); }
    static {
      isHandle = (t) => typeof t === 'object' && t !== null && #id in t;
      idOf = (t) => {
        if (!isHandle(t)) fail('E_SANDBOX_HANDLE', 'not a tensor handle');
        return t.#id;
      };
      // A queued kernel's result learns its dtype and shape when the batch runs.
      known = (t) => {
        if (!isHandle(t)) fail('E_SANDBOX_HANDLE', 'not a tensor handle');
        if (t.#dtype === undefined) flush();
        if (t.#dtype === undefined) fail('E_SANDBOX_HANDLE', 'the kernel that was to produce this tensor failed');
      };
      describeTensor = (t, dtype, shape) => {
        t.#dtype = dtype;
        t.#shape = freeze(shape);
      };
    }
  }
  const TensorProto = freeze(Tensor.prototype);
  freeze(Tensor);
  const makeTensor = (id, dtype, shape) => new Tensor(TOKEN, id, dtype, shape);

  // Queued kernel calls ({ k: name, a: arguments JSON, o: result ids }) go to the host as they are
  // made (it runs them while the hook goes on); the handles awaiting their dtype and shape wait for
  // a sync. Provisional ids are negative; the host adopts them as the calls run.
  let queued = 0;
  let queuedChars = 0;
  let waiting = [];
  let nextId = -1;
  function flush() {
    if (queued === 0) return;
    const handles = waiting;
    queued = 0;
    queuedChars = 0;
    waiting = [];
    const meta = parse(hostSync());
    for (let i = 0; i < handles.length; i++) {
      const m = meta[handles[i][0]];
      if (m !== undefined) describeTensor(handles[i][1], m[0], m[1]);
    }
  }
  // Every other host call syncs first: the host has then run every queued call before it.
  function hostCall(fn, a, b, c) {
    flush();
    return fn(a, b, c);
  }
  function provisional() {
    const id = nextId--;
    const t = new Tensor(TOKEN, id);
    arrayPush(waiting, [id, t]);
    return [id, t];
  }

  // Guest → host: handles become their ids, small typed arrays are copied, '$xpkg' is reserved.
  function replacer(key, v) {
    if (typeof v === 'object' && v !== null) {
      if (isHandle(v)) return { $xpkg: 'tensor', id: idOf(v) };
      if (getPrototypeOf(v) === TensorProto) fail('E_SANDBOX_HANDLE', 'forged tensor handle');
      if (isView(v)) {
        const tag = typedTag(v);
        if (tag === undefined || SMALL[tag] !== true) fail('E_SANDBOX_OUTPUT', 'cannot copy a ' + (tag || 'DataView') + '; use a tensor');
        if (typedByteLength(v) > COPY) fail('E_SANDBOX_MEMORY', 'typed array of ' + typedByteLength(v) + ' bytes exceeds the copy budget of ' + COPY);
        return { $xpkg: 'array', type: tag, data: toElements(v) };
      }
      if (hasOwn(v, '$xpkg')) fail('E_SANDBOX_HANDLE', "forged value: the key '$xpkg' is reserved");
    }
    return v;
  }
  function isFatal(e) {
    return typeof e === 'object' && e !== null && hasInstance(ErrorCtor, e) && (e.message === 'out of memory' || e.message === 'stack overflow');
  }
  function encode(v, what) {
    let s;
    try {
      s = stringify(v, replacer);
    } catch (e) {
      if (isFatal(e)) throw e;
      fail('E_SANDBOX_OUTPUT', what + ' cannot be serialized: ' + (hasInstance(ErrorCtor, e) ? e.message : typeof e));
    }
    if (s === undefined) s = 'null';
    if (s.length > OUTPUT) fail('E_SANDBOX_OUTPUT', what + ' is ' + s.length + ' characters of JSON, over the limit of ' + OUTPUT);
    return s;
  }
  // Host → guest: trusted JSON; markers become handles and typed arrays.
  function reviver(key, v) {
    if (typeof v === 'object' && v !== null && hasOwn(v, '$xpkg')) {
      if (v.$xpkg === 'tensor') return makeTensor(v.id, v.dtype, v.shape);
      if (v.$xpkg === 'array') return new ARR[v.type](v.data);
    }
    return v;
  }

  const kernels = create(null);
  for (const [name, returns] of KERNELS) {
    const what = 'arguments of kernel ' + name;
    const f = returns === null
      ? function (...args) { return parse(hostCall(hostKernel, name, encode(args, what)), reviver); }
      : function (...args) {
          const a = encode(args, what);
          let o, result;
          if (returns === 'tensor') {
            const p = provisional();
            o = p[0];
            result = p[1];
          } else {
            o = create(null);
            result = {};
            for (let i = 0; i < returns.length; i++) {
              const p = provisional();
              o[returns[i]] = p[0];
              defineProperty(result, returns[i], { value: p[1], enumerable: true, writable: true, configurable: true });
            }
          }
          const op = stringify({ k: name, a, o });
          hostQueue(op);
          queued++;
          queuedChars += op.length;
          if (queued >= MAX_QUEUED || queuedChars > OUTPUT) flush();
          return result;
        };
    defineProperty(f, 'name', { value: name });
    kernels[name] = freeze(f);
  }
  freeze(kernels);

  function tensor(dtype, shape, data) {
    if (typeof dtype !== 'string' || !hasOwn(DTYPE_ARRAY, dtype)) throw new TypeErrorCtor('ctx.tensor: unknown dtype ' + StringCtor(dtype));
    if (!isArray(shape) || shape.length > MAX_RANK) throw new TypeErrorCtor('ctx.tensor: shape must be an array of at most ' + MAX_RANK + ' dims');
    const copy = new ARR[DTYPE_ARRAY[dtype]](data);
    if (typedByteLength(copy) > COPY) fail('E_SANDBOX_MEMORY', 'ctx.tensor: ' + typedByteLength(copy) + ' bytes exceeds the copy budget of ' + COPY);
    return parse(hostCall(hostTensor, dtype, stringify(toArray(shape)), typedBuffer(copy)), reviver);
  }
  function assetId(id) {
    const s = StringCtor(id);
    if (s.length > MAX_ID) throw new TypeErrorCtor('ctx.asset: an asset id is at most ' + MAX_ID + ' characters');
    return s;
  }
  const ctx = freeze({
    kernels,
    tensor,
    asset: function asset(id) { return new ARR.Uint8Array(hostCall(hostAsset, assetId(id))); },
    assetText: function assetText(id) { return hostCall(hostAssetText, assetId(id)); },
    isTensor: function isTensor(v) { return isHandle(v); },
  });

  function str(x) { return typeof x === 'string' ? strSlice(x, 0, 2000) : undefined; }
  // Describes a thrown value without calling into it more than reading name/message/stack.
  function describe(e) {
    const d = create(null);
    try {
      if (typeof e === 'object' && e !== null && hasInstance(ErrorCtor, e)) {
        d.error = true;
        d.name = str(e.name);
        d.message = str(e.message);
        d.stack = str(e.stack);
      } else {
        d.error = false;
        d.type = typeof e;
        if (typeof e !== 'object' && typeof e !== 'function') d.value = str(StringCtor(e));
      }
    } catch (x) {
      d.error = false;
      d.type = 'unreadable';
    }
    return stringify(d);
  }

  let pending = null;
  function settle(v) {
    try { return 'R' + encode(v, 'result'); } catch (e) { return 'E' + describe(e); }
  }
  // Returns 'R'+json (result), 'E'+json (thrown value) or 'P' (a promise: drive jobs, then poll).
  function invoke(ns, hook, argsJson) {
    pending = null;
    queued = 0;
    queuedChars = 0;
    waiting = [];
    const fn = ns[hook];
    if (typeof fn !== 'function') fail('E_SANDBOX_SCRIPT', 'hook ' + hook + ' is not an exported function');
    const input = parse(argsJson, reviver);
    let r;
    try {
      r = fn(input, ctx);
      if (r !== null && (typeof r === 'object' || typeof r === 'function') && typeof r.then === 'function') {
        const st = (pending = { s: 'P' });
        promiseThen(promiseResolve(PromiseCtor, r), (v) => { st.s = settle(v); }, (e) => { st.s = 'E' + describe(e); });
        return 'P';
      }
    } catch (e) {
      return 'E' + describe(e);
    }
    return settle(r);
  }
  function poll() { return pending === null ? 'N' : pending.s; }
  // Names of a module's exported functions, as JSON.
  function functions(ns) {
    const out = [];
    const ks = keys(ns);
    for (let i = 0; i < ks.length; i++) {
      let v;
      try { v = ns[ks[i]]; } catch (e) { continue; }
      if (typeof v === 'function') arrayPush(out, ks[i]);
    }
    return stringify(arraySort(out));
  }
  // What a call does first (JSON through the reviver and the replacer), on throwaway data: run on
  // the host's nudge to bring the interpreter back into the caches. Touches no state, and reaches
  // no script code: objects without a prototype and no arrays, so a toJSON or getter a script put
  // on Object.prototype or Array.prototype is never looked up (it would run between calls).
  function bare(o) { const b = create(null); for (const k of keys(o)) b[k] = o[k]; return freeze(b); }
  const WARM = bare({ a: 1, b: bare({ x: 0.5, y: 0.25 }), c: 'x', d: bare({ e: null }) });
  function warm() {
    parse(stringify(WARM, replacer), reviver);
  }
  return freeze({ invoke, poll, functions, warm, describe });
})`;
}
