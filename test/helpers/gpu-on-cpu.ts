/**
 * Runs GPU variants on this CPU machine, for checking their graphs: a registry whose onnxruntime
 * backend loads every variant on onnxruntime's CPU provider, whatever providers the variant
 * names. With a GPU host profile (fixtures/hosts/h100.json) selection picks the GPU variants,
 * and the real onnxruntime runs their real models (the in-graph pre/post-processing, half
 * precision) on the CPU. The backend also counts the bytes each variant's runs return: on a GPU
 * those are the bytes copied from the device to the host.
 */
import { BackendRegistry, OnnxruntimeBackend } from '../../runner/backends/index.js';
import type { Backend, ModelSession, SessionOptions, Tensor, VariantFiles } from '../../runner/types.js';
import type { Variant } from '../../spec/schema.js';

export interface OutputBytes {
  /** Bytes of the outputs returned, per variant id, since the last `reset`. */
  readonly byVariant: Map<string, number>;
  reset(): void;
}

class CpuStandIn implements Backend {
  readonly name = 'onnxruntime-cpu-stand-in';
  readonly runtimes = ['onnxruntime'] as const;
  readonly #ort = new OnnxruntimeBackend();
  constructor(
    private readonly counted: Map<string, number>,
    private readonly loads: { variant: string; options: SessionOptions }[],
  ) {}
  init() {
    return this.#ort.init();
  }
  async load(
    variant: Variant,
    files: VariantFiles | ReadonlyMap<string, Buffer>,
    options: SessionOptions,
  ): Promise<ModelSession> {
    this.loads.push({ variant: variant.id, options });
    const requires = { ...variant.requires, executionProviders: ['cpu'] };
    const session = await this.#ort.load({ ...variant, requires }, files, options);
    const counted = this.counted;
    // a plain object reading through to the session (its getters use private fields)
    return {
      inputNames: session.inputNames,
      outputNames: session.outputNames,
      inputShapes: session.inputShapes,
      get provider() {
        return session.provider;
      },
      get providerFallbacks() {
        return session.providerFallbacks;
      },
      get nodesByProvider() {
        return session.nodesByProvider;
      },
      get sessions() {
        return session.sessions;
      },
      async run(feeds: Record<string, Tensor>) {
        const out = await session.run(feeds);
        const bytes = Object.values(out).reduce((n, t) => n + t.data.byteLength, 0);
        counted.set(variant.id, (counted.get(variant.id) ?? 0) + bytes);
        return out;
      },
      release: () => session.release(),
    };
  }
}

/** A registry running every variant on the CPU provider, its output byte counts, and the session options of each load. */
export function gpuVariantsOnCpu(): {
  registry: BackendRegistry;
  bytes: OutputBytes;
  loads: { variant: string; options: SessionOptions }[];
} {
  const byVariant = new Map<string, number>();
  const loads: { variant: string; options: SessionOptions }[] = [];
  const r = new BackendRegistry();
  r.register(new CpuStandIn(byVariant, loads), 100);
  return { registry: r, bytes: { byVariant, reset: () => byVariant.clear() }, loads };
}
