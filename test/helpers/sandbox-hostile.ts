/**
 * A hostile package script for test/sandbox-escape.test.ts: one exported hook per attack.
 * Hooks take `input.x`, a float32 [2, 3] tensor handle, where they need one.
 */
export const HOSTILE = `
const MiB = 1 << 20;
let stashed = null;
export function ok() { return 'ok'; }
export function busy(input, ctx) { const r = ctx.kernels.argmax(input.x); const t = ctx.tensor('int32', [2], [1, 2]); return { idx: Array.from(r.indices.read()), t, s: ctx.assetText('small') }; }
export function typed(input) {
  const r = input.result;
  if (r && typeof r === 'object') for (const k of Object.keys(r)) {
    if (r[k] === '$x') r[k] = input.x;
    if (r[k] === '$arr') r[k] = new Int32Array([1]);
  }
  return r;
}

// time
export function loop() { for (;;) {} }
export function loopCatch() { for (;;) { try { for (;;) {} } catch (e) {} } }
export async function asyncLoop() { await null; for (;;) {} }
export function jobChain() { (function f() { Promise.resolve().then(f); })(); return 1; }
export function thenableLoop() { return { then() { for (;;) {} } }; }
export function regex() { return /(a+)+$/.test('a'.repeat(64) + 'b'); }
export function recursionCaught() { function f() { try { return f(); } catch (e) { return f(); } } return f(); }
export function getterLoop() { return { get x() { for (;;) {} } }; }
export function proxyLoop() { return new Proxy({}, { ownKeys() { for (;;) {} } }); }
export function toJSONLoop() { return { toJSON() { for (;;) {} } }; }
export function queueFlood(input, ctx) { for (;;) ctx.kernels.softmax(input.x); }
export function kernelLoop(input, ctx) { for (;;) { const r = ctx.kernels.argmax(input.x); r.indices.dispose(); r.values.dispose(); } }
export function messageLoop() { const e = new Error('x'); Object.defineProperty(e, 'message', { get() { for (;;) {} } }); throw e; }
export function hangKernel(input, ctx) { return ctx.kernels.hang(); }
export function neverSettles() { return new Promise(() => {}); }
export function nativeSlow() { const s = 'a'.repeat(1 << 20); return s.indexOf('a'.repeat(1 << 19) + 'b'); }

// stack
export function recursion() { function f(n) { return f(n + 1) + 1; } return f(0); }
export function deepJson() { return JSON.parse('['.repeat(200000) + ']'.repeat(200000)); }
export function deepResult() { let a = []; for (let i = 0; i < 200000; i++) a = [a]; return a; }

// memory
export function typedBomb() { const a = []; for (;;) a.push(new Uint8Array(MiB)); }
export function stringBomb() { const a = []; for (;;) a.push('x'.repeat(MiB) + a.length); }
export function arrayBomb() { const a = []; for (;;) a.push(new Array(100000).fill(1.5)); }
export function objectBomb() { const a = []; for (;;) a.push({ a: a.length, b: [1, 2], c: 'x' + a.length }); }
export function bufferHuge() { return new ArrayBuffer(1 << 30).byteLength; }
export function oomCaught() { const a = []; try { for (;;) a.push(new Uint8Array(MiB)); } catch (e) {} return a.length; }
export function hostTensorBomb(input, ctx) { const keep = []; for (;;) keep.push(ctx.tensor('float32', [16384], new Float32Array(16384))); }
export function readBig(input, ctx) { return ctx.kernels.big().read().length; }
export function assetBig(input, ctx) { return ctx.asset('big').length; }
export function copyInBig(input, ctx) { return ctx.tensor('uint8', [MiB], new Uint8Array(MiB)); }
export function copyOutBig() { return new Float64Array(100000); }

// host realm
export function routes(input, ctx) {
  const F = (function () {}).constructor;
  const tries = {
    fnCtor: () => F('return typeof process')(),
    fnGlobalProcess: () => typeof F('return this')().process,
    ctxCtor: () => ctx.constructor.constructor('return typeof process')(),
    kernelCtor: () => ctx.kernels.argmax.constructor('return typeof require')(),
    handleCtor: () => Object.getPrototypeOf(input.x).constructor.constructor('return typeof process')(),
    inputCtor: () => input.constructor.constructor('return this')() === globalThis,
    errorCtor: () => { try { ctx.kernels.boom(); } catch (e) { return e.constructor.constructor('return typeof process')() + ':' + (e instanceof Error); } return 'no error'; },
    evalGlobal: () => (0, eval)('typeof process + typeof require + typeof module + typeof Buffer + typeof global'),
    asyncFnCtor: () => (async function () {}).constructor('return 1').constructor.name,
    ctxKeys: () => Reflect.ownKeys(ctx).map(String).sort().join(','),
    kernelKeys: () => Reflect.ownKeys(ctx.kernels).map(String).sort().join(','),
    handleKeys: () => Reflect.ownKeys(input.x).map(String).sort().join(','),
    handleProtoKeys: () => Reflect.ownKeys(Object.getPrototypeOf(input.x)).map(String).sort().join(','),
    assetFnKeys: () => Reflect.ownKeys(ctx.asset).map(String).sort().join(','),
    caller: () => { try { return typeof ctx.asset.caller; } catch (e) { return 'throws'; } },
    frozen: () => Object.isFrozen(ctx) && Object.isFrozen(ctx.kernels) && Object.isFrozen(input.x) && Object.isFrozen(ctx.kernels.argmax),
    timers: () => [typeof setTimeout, typeof setInterval, typeof setImmediate, typeof queueMicrotask, typeof fetch, typeof XMLHttpRequest, typeof WebAssembly, typeof Atomics, typeof Date, typeof performance, typeof console, typeof print, typeof std, typeof os, typeof require, typeof process].join(','),
    importMeta: () => Object.keys(import.meta).join(','),
    globals: () => Object.getOwnPropertyNames(globalThis).sort().join(','),
  };
  const out = {};
  for (const k of Object.keys(tries)) { try { out[k] = tries[k](); } catch (e) { out[k] = 'threw ' + e.name; } }
  globalThis.polluted = 1;
  return out;
}
export function processViaConstructor(input) { return input.constructor.constructor('return process')(); }
export function processViaFunction() { return Function('return process')(); }
export function requireViaEval() { return (0, eval)('require("fs")'); }

// prototype pollution
export function pollute(input) {
  input.__proto__.polluted = 1;
  Object.prototype.polluted = 1;
  Array.prototype.polluted = 1;
  input.obj.__proto__.x = 2;
  const inner = { b: 2 };
  Object.setPrototypeOf(inner, { polluted: 1 });
  const out = { a: 1, inner };
  delete Object.prototype.polluted;
  delete Array.prototype.polluted;
  return out;
}
export function protoKeyResult() { return JSON.parse('{"__proto__": {"polluted": 1}}'); }
export function protoKeyKernel(input, ctx) { return ctx.kernels.threshold(input.x, JSON.parse('{"__proto__": {"value": 0.5}, "value": 1}')); }
export function patchIntrinsics(input, ctx) {
  const trap = () => { throw new Error('patched intrinsic called'); };
  JSON.parse = trap; JSON.stringify = trap; Object.keys = trap; Object.freeze = trap; Object.defineProperty = trap; Object.create = trap;
  WeakMap.prototype.get = trap; WeakMap.prototype.set = trap;
  Function.prototype.call = trap; Function.prototype.apply = trap; Function.prototype.bind = trap;
  Array.prototype.push = trap; Array.prototype[Symbol.iterator] = trap; Array.from = trap; Array.isArray = trap;
  Promise.prototype.then = trap; Promise.resolve = trap; String.prototype.slice = trap; ArrayBuffer.isView = trap;
  const r = ctx.kernels.argmax(input.x);
  const idx = r.indices.read();
  return { idx: [idx[0], idx[1]], t: r.values };
}

// tensor handles
export function forgedHandle(input, ctx) { return ctx.kernels.argmax(Object.create(Object.getPrototypeOf(input.x))); }
export function forgedMarkerKernel(input, ctx) { return ctx.kernels.argmax({ $xpkg: 'tensor', id: 1 }); }
export function forgedMarkerResult() { return { t: { $xpkg: 'tensor', id: 1 } }; }
export function forgedCaught(input, ctx) { try { ctx.kernels.argmax({ $xpkg: 'tensor', id: 1, dtype: 'float32', shape: [1] }); } catch (e) {} return 'swallowed'; }
export function readForeign(input) { return input.x.read.call({ dtype: 'float32' }); }
export function readAfterDispose(input, ctx) { const r = ctx.kernels.argmax(input.x); r.indices.dispose(); return r.indices.read(); }
export function kernelAfterDispose(input, ctx) { const r = ctx.kernels.argmax(input.x); r.values.dispose(); return ctx.kernels.softmax(r.values); }
export function kernelAfterDisposeCaught(input, ctx) { const r = ctx.kernels.argmax(input.x); r.values.dispose(); try { ctx.kernels.softmax(r.values).shape; } catch (e) {} return 'caught'; }
export function doubleDispose(input) { input.x.dispose(); input.x.dispose(); }
export function returnDisposed(input) { input.x.dispose(); return input.x; }
export function useFailedResult(input, ctx) { const t = ctx.kernels.threshold(input.x, { value: 'x' }); try { t.read(); } catch (e) {} return t.shape; }
export function stash(input) { stashed = input.x; return 'kept'; }
export function useStash() { return stashed.read(); }

// outputs
export function hugeString() { return 'x'.repeat(MiB); }
export function hugeArray() { return new Array(100000).fill(12345.678); }
export function cyclic() { const a = {}; a.a = a; return a; }
export function bigint() { return { n: 1n }; }
export function dataView() { return new DataView(new ArrayBuffer(4)); }
export function hugeKernelArgs(input, ctx) { return ctx.kernels.argmax(input.x, 'x'.repeat(MiB)); }

// thrown values
export function throwNumber() { throw 42; }
export function throwString() { throw 'just a string'; }
export function throwNull() { throw null; }
export function throwUndefined() { throw undefined; }
export function throwSymbol() { throw Symbol('s'); }
export function throwObjectLoopingToString() { throw { toString() { for (;;) {} }, valueOf() { for (;;) {} } }; }
export function throwProxy() { throw new Proxy({}, { get() { for (;;) {} }, getPrototypeOf() { return null; } }); }
export function throwFunction() { throw function evil() { for (;;) {} }; }
export async function rejectNonError() { await null; throw { code: 1 }; }
export function throwErrorBadGetters() { const e = new Error('x'); Object.defineProperty(e, 'name', { get() { throw 1; } }); throw e; }

// imports
export async function dynamicImport() { return await import('node:fs'); }
export function dynamicImportCaught() { import('node:fs').catch(() => {}); return 'ignored'; }
`;

export const ROUTES = {
  expected: {
    fnCtor: 'undefined',
    fnGlobalProcess: 'undefined',
    ctxCtor: 'undefined',
    kernelCtor: 'undefined',
    handleCtor: 'undefined',
    inputCtor: true,
    errorCtor: 'undefined:true',
    evalGlobal: 'undefinedundefinedundefinedundefinedundefined',
    asyncFnCtor: 'AsyncFunction',
    ctxKeys: 'asset,assetText,isTensor,kernels,tensor',
    kernelKeys: 'argmax,big,boom,gather,hang,nms,normalize,resize,softmax,threshold',
    handleKeys: '',
    handleProtoKeys: 'constructor,dispose,dtype,read,shape,size',
    assetFnKeys: 'length,name,prototype',
    caller: 'throws',
    frozen: true,
    timers: new Array(16).fill('undefined').join(','),
  },
  /** ECMAScript's own globals (QuickJS's set); anything else would be a host leak. */
  standardGlobals:
    'AggregateError,Array,ArrayBuffer,BigInt,BigInt64Array,BigUint64Array,Boolean,DataView,Error,EvalError,FinalizationRegistry,Float16Array,Float32Array,Float64Array,Function,Infinity,Int16Array,Int32Array,Int8Array,InternalError,Iterator,JSON,Map,Math,NaN,Number,Object,Promise,Proxy,RangeError,ReferenceError,Reflect,RegExp,Set,SharedArrayBuffer,String,Symbol,SyntaxError,TypeError,URIError,Uint16Array,Uint32Array,Uint8Array,Uint8ClampedArray,WeakMap,WeakRef,WeakSet,decodeURI,decodeURIComponent,encodeURI,encodeURIComponent,escape,eval,globalThis,isFinite,isNaN,parseFloat,parseInt,undefined,unescape,polluted'.split(
      ',',
    ),
};
