/** Browser twin of native/env.ts: no addon exists here, so native/index.ts runs the portable kernels. */
import { NativeError } from '../../spec/errors.js';

const none = (what: string) => () => {
  throw new NativeError('E_NATIVE_UNAVAILABLE', `${what}: no native addon in the browser`);
};

export const nativeEnv = {
  dir: '/',
  join: (...parts: string[]): string => parts.join('/').replace(/\/+/g, '/'),
  resolve: (path: string): string => path,
  exists: (_path: string): boolean => false,
  read: none('read') as (path: string) => Buffer,
  requireAddon: none('require') as (path: string) => unknown,
  hardwareThreads: (): number => Math.max(1, globalThis.navigator?.hardwareConcurrency ?? 1),
  // The kernels run on the calling thread here: 'portable' without the missing-addon warning.
  getenv: (name: string): string | undefined => (name === 'XPKG_NATIVE' ? 'portable' : undefined),
  platform: 'browser' as string,
  arch: 'wasm32' as string,
  warn: (_line: string): void => {},
};
