/**
 * A temporary PipelineContext over a plain package source folder (`xpkg.json` + files), so the
 * pipeline can run before packages are packed and verified. It trusts the folder: the runner's
 * verified-archive context replaces it for anything that isn't a developer's own staging dir.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RunnerError } from '../../spec/errors.js';
import { validateManifestSource } from '../../spec/manifest.js';
import type { Manifest } from '../../spec/schema.js';
import { OnnxruntimeBackend } from '../backends/onnxruntime.js';
import type { ModelSession, PipelineContext, SessionOptions, Timings } from '../types.js';

export interface LocalContext extends PipelineContext, AsyncDisposable {
  /** Stage totals reported through `time()` since the last `resetTimings()`. */
  readonly timings: Timings;
  resetTimings(): void;
  /** Releases every loaded session. */
  release(): Promise<void>;
}

let backend: Promise<OnnxruntimeBackend> | undefined;

async function ortBackend(): Promise<OnnxruntimeBackend> {
  backend ??= (async () => {
    const b = new OnnxruntimeBackend();
    const init = await b.init();
    if (!init.ok) throw new RunnerError('E_RUN_BACKEND', `onnxruntime-node does not load: ${init.reason}`);
    return b;
  })();
  return backend;
}

/**
 * Opens `dir/xpkg.json`. Each model runs its first `onnxruntime` variant, loaded on first use
 * through the onnxruntime backend with `options`.
 */
export async function openLocalContext(dir: string, options: SessionOptions = {}): Promise<LocalContext> {
  const source = validateManifestSource(JSON.parse(await readFile(join(dir, 'xpkg.json'), 'utf8')));
  // A source has no file records yet; the pipeline reads only models, assets, inputs, outputs, steps.
  const manifest = source as unknown as Manifest;
  const sessions = new Map<string, Promise<ModelSession>>();
  const variantOf = (modelId: string) => {
    const model = manifest.models.find((m) => m.id === modelId);
    const variant = model?.variants.find((v) => v.runtime === 'onnxruntime');
    if (!model || !variant)
      throw new RunnerError('E_RUN_NO_VARIANT', `model ${modelId} has no onnxruntime variant`, { model: modelId });
    return variant;
  };
  let timings: Timings = {};
  const ctx: LocalContext = {
    manifest,
    get timings() {
      return timings;
    },
    resetTimings() {
      timings = {};
    },
    session(modelId) {
      let s = sessions.get(modelId);
      if (!s) {
        s = (async () => {
          const variant = variantOf(modelId);
          const files = new Map<string, Buffer>();
          for (const f of variant.files) files.set(f, await readFile(join(dir, f)));
          return (await ortBackend()).load(variant, files, options);
        })();
        sessions.set(modelId, s);
        s.catch(() => sessions.delete(modelId));
      }
      return s;
    },
    async variant(modelId) {
      return variantOf(modelId);
    },
    async asset(assetId) {
      const a = manifest.assets?.find((x) => x.id === assetId);
      if (!a) throw new RunnerError('E_RUN_PIPELINE', `unknown asset ${assetId}`, { asset: assetId });
      return readFile(join(dir, a.path));
    },
    time(stage, ms) {
      timings[stage] = (timings[stage] ?? 0) + ms;
    },
    async release() {
      const all = [...sessions.values()];
      sessions.clear();
      for (const s of all) await (await s.catch(() => undefined))?.release();
    },
    async [Symbol.asyncDispose]() {
      await ctx.release();
    },
  };
  return ctx;
}
