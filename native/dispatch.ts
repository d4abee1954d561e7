/**
 * Call plumbing of native/index.ts: sync and async forms of each kernel over whichever backend is
 * active, and kernel errors turned into NativeError carrying the caller's stack (captured before
 * the call, since the addon's own stack ends in a libuv worker).
 */
import { NativeError } from '../spec/errors.js';
import type { Kernels } from './index.js';

export type Prepared<R> = { kernel: keyof Kernels; raw: unknown; finish: (r: any) => R };

// The call site is an Error made before the call; its stack is only formatted (the costly part,
// tens of µs) when a kernel actually fails.
function wrap(kernel: string, e: unknown, site: Error | undefined): NativeError {
  if (e instanceof NativeError) return e;
  const message = e instanceof Error ? e.message : String(e);
  // The addon codes a detached or shrunk buffer (the caller's argument) itself; the rest are kernel errors.
  const code = (e as { code?: unknown } | null)?.code === 'E_NATIVE_ARGUMENT' ? 'E_NATIVE_ARGUMENT' : 'E_NATIVE_KERNEL';
  const err = new NativeError(code, `${kernel}: ${message}`, { kernel }, { cause: e });
  const stack = site?.stack;
  if (stack) err.stack = `${err.name}: ${err.message}\n${stack.split('\n').slice(2).join('\n')}`;
  return err;
}

export function runSync<O, R, T>(
  ks: Kernels,
  kernel: keyof Kernels,
  o: O,
  then: (r: R) => T,
  site: Error | undefined,
): T {
  let r: R;
  try {
    r = (ks[kernel] as unknown as (o: O) => R)(o);
  } catch (e) {
    // Synchronous: the caller's frames are still on the stack, so the site can be taken now.
    throw wrap(kernel, e, site ?? new Error());
  }
  return then(r);
}

/** Async form: the addon runs the kernel on a libuv worker; the portable kernels run inline. */
export async function runAsync<O, R, T>(
  ks: Kernels,
  kernel: keyof Kernels,
  o: O,
  then: (r: R) => T,
  site: Error | undefined,
): Promise<T> {
  let r: R;
  try {
    r = await (ks[kernel] as unknown as (o: O, async: true) => Promise<R>)(o, true);
  } catch (e) {
    throw wrap(kernel, e, site);
  }
  return then(r);
}

/** Sync and async forms of one kernel entry: validate and plan (prepare), then run on `kernels()`. */
export function bothForms<A extends unknown[], R>(
  kernels: () => Kernels,
  prepare: (...a: A) => Prepared<R>,
): { sync: (...a: A) => R; async: (...a: A) => Promise<R> } {
  return {
    sync: (...a: A) => {
      const p = prepare(...a);
      return runSync(kernels(), p.kernel, p.raw, p.finish, undefined);
    },
    async: (...a: A) => {
      const site = new Error();
      try {
        const p = prepare(...a);
        return runAsync(kernels(), p.kernel, p.raw, p.finish, site);
      } catch (e) {
        return Promise.reject(e);
      }
    },
  };
}
