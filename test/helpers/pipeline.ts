/** The manifest and context a pipeline test runs `runPipeline` with (no package, no signing). */
import type { PipelineContext } from '../../runner/types.js';
import type { Manifest, Step } from '../../spec/schema.js';

export interface PipelineManifestOptions {
  name: string;
  /** Tensor inputs beside the image input `image`. */
  tensors?: string[];
  outputs: string[];
  /** The outputs' declared type (default json). */
  outputType?: string;
  steps: Step[];
  models?: unknown[];
  assets?: unknown[];
}

/** A manifest of `steps` over the image input `image` and the named tensor inputs. */
export function pipelineManifest(o: PipelineManifestOptions): Manifest {
  return {
    name: o.name,
    version: '1.0.0',
    sequence: 1,
    license: 'MIT',
    task: 'test',
    inputs: [{ name: 'image', type: 'image' }, ...(o.tensors ?? []).map((t) => ({ name: t, type: 'tensor' }))],
    outputs: o.outputs.map((name) => ({ name, type: o.outputType ?? 'json' })),
    models: o.models ?? [],
    ...(o.assets ? { assets: o.assets } : {}),
    pipeline: { steps: o.steps },
  } as unknown as Manifest;
}

/** A context for `manifest`: no model and no assets unless `over` gives them. */
export function pipelineContext(manifest: Manifest, over: Partial<PipelineContext> = {}): PipelineContext {
  return {
    manifest,
    session: async () => {
      throw new Error('no model');
    },
    asset: async () => Buffer.alloc(0),
    time: () => {},
    ...over,
  };
}
