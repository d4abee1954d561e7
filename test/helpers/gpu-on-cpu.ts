/**
 * Runs GPU variants on this CPU machine, for checking their graphs: a registry whose onnxruntime
 * backend loads every variant on onnxruntime's CPU provider, whatever providers the variant
 * names. With a GPU host profile (fixtures/hosts/h100.json) selection picks the GPU variants,
 * and the real onnxruntime runs their real models (the in-graph pre/post-processing, half
 * precision) on the CPU.
 */
import { BackendRegistry, OnnxruntimeBackend } from '../../runner/backends/index.js';
import type { Backend, SessionOptions, VariantFiles } from '../../runner/types.js';
import type { Variant } from '../../spec/schema.js';

class CpuStandIn implements Backend {
  readonly name = 'onnxruntime-cpu-stand-in';
  readonly runtimes = ['onnxruntime'] as const;
  readonly #ort = new OnnxruntimeBackend();
  init() {
    return this.#ort.init();
  }
  load(variant: Variant, files: VariantFiles | ReadonlyMap<string, Buffer>, options: SessionOptions) {
    const requires = { ...variant.requires, executionProviders: ['cpu'] };
    return this.#ort.load({ ...variant, requires }, files, options);
  }
}

export function gpuVariantsOnCpu(): BackendRegistry {
  const r = new BackendRegistry();
  r.register(new CpuStandIn(), 100);
  return r;
}
