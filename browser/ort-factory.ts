/**
 * The loader onnxruntime-web imports in place of its own `ort-wasm-simd-threaded.mjs` when the
 * runtime's WASM was compiled ahead (browser/ort-web.ts, browser/ort-host.ts): onnxruntime-web
 * offers no way to hand it a compiled module, its Emscripten loader does (`instantiateWasm`). The
 * module comes from the runtime's worker (PRECOMPILED on its global scope); the loader's pthread
 * workers still load the real file, and get the module from it as they always do.
 */

import { ORT_WASM, PRECOMPILED, type Precompiled } from './ort-protocol.js';

type Factory = (config: Record<string, unknown>) => Promise<unknown>;
type Done = (instance: WebAssembly.Instance, module: WebAssembly.Module) => void;

export default async function ortWasmFactory(config: Record<string, unknown>): Promise<unknown> {
  const real = (await import(new URL('./ort-wasm-simd-threaded.mjs', import.meta.url).href)) as { default: Factory };
  const given = (globalThis as { [PRECOMPILED]?: Precompiled })[PRECOMPILED];
  if (given) {
    const locate = config.locateFile as ((file: string, prefix: string) => string) | undefined;
    const url = locate?.(ORT_WASM, '') ?? new URL(ORT_WASM, import.meta.url).href;
    config.instantiateWasm = (imports: WebAssembly.Imports, done: Done) => {
      void given.module
        .then(async (module) => {
          if (module) return done(await WebAssembly.instantiate(module, imports), module);
          const r = await WebAssembly.instantiateStreaming(fetch(url, { credentials: 'same-origin' }), imports);
          done(r.instance, r.module);
        })
        .catch((e: unknown) => given.failed(e));
      return {};
    };
  }
  return real.default(config);
}
