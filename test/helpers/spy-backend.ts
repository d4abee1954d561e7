/**
 * A backend for tests that loads and runs every model with the real onnxruntime backend and writes
 * down what happened: each load (variant) and each run (variant, input dims). `provider` makes its
 * sessions report another execution provider name than the CPU they run on, for the runner logic
 * that depends only on that name (counting bytes crossing to an accelerator); nothing of
 * onnxruntime itself is replaced.
 */
import { OnnxruntimeBackend } from '../../runner/backends/onnxruntime.js';
import { BackendRegistry } from '../../runner/backends/registry.js';
import type { Backend, BackendInit, ModelSession, SessionOptions, Tensor, VariantFiles } from '../../runner/types.js';
import type { Variant } from '../../spec/schema.js';

export interface SpyEvent {
  kind: 'load' | 'run';
  variant: string;
  /** Input name → dims, for runs. */
  dims?: Record<string, number[]>;
}

export class SpyBackend implements Backend {
  readonly name = 'spy-onnxruntime';
  readonly runtimes = ['onnxruntime'] as const;
  readonly events: SpyEvent[] = [];
  /** The session options of each load, in order. */
  readonly loadOptions: SessionOptions[] = [];
  readonly #real = new OnnxruntimeBackend({ placement: 'never' });

  constructor(readonly provider?: string) {}

  init(): Promise<BackendInit> {
    return this.#real.init();
  }

  async load(
    variant: Variant,
    files: VariantFiles | ReadonlyMap<string, Buffer>,
    options: SessionOptions,
  ): Promise<ModelSession> {
    this.loadOptions.push(options);
    const real = await this.#real.load(variant, files, options);
    this.events.push({ kind: 'load', variant: variant.id });
    const events = this.events;
    const provider = this.provider ?? real.provider;
    return {
      inputNames: real.inputNames,
      outputNames: real.outputNames,
      inputShapes: real.inputShapes,
      provider,
      async run(feeds: Record<string, Tensor>) {
        events.push({
          kind: 'run',
          variant: variant.id,
          dims: Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, [...t.dims]])),
        });
        return real.run(feeds);
      },
      release: () => real.release(),
    };
  }

  /** The runs so far, as `variant dims` lines (one input: its dims only). */
  runs(): string[] {
    return this.events
      .filter((e) => e.kind === 'run')
      .map(
        (e) =>
          `${e.variant} ${Object.values(e.dims ?? {})
            .map((d) => d.join('x'))
            .join(',')}`,
      );
  }

  registry(): BackendRegistry {
    const r = new BackendRegistry();
    r.register(this, 100);
    return r;
  }
}
