/**
 * `runner.runMany(items)`: the package run once per item, in order, in this process (models are
 * loaded once). Each item is loaded and run on its own: a bad file yields an error entry and the
 * next item still runs.
 */
import { toXpkgError, type XpkgError } from '../spec/errors.js';
import type { Manifest } from '../spec/schema.js';
import { loadInputFiles, primaryInput } from './inputs/load.js';
import type { RunResult } from './runner.js';

/**
 * One run's inputs: a file path for the package's first input; or `files` (input name → path, read
 * per the input's declaration) and/or ready `inputs` values. `source` names the item in results
 * (default: the path, or the first file).
 */
export type ManyInput = string | { source?: string; files?: Record<string, string>; inputs?: Record<string, unknown> };

export type ManyResult =
  | { index: number; source: string; ok: true; result: RunResult; inputs: Record<string, unknown> }
  | { index: number; source: string; ok: false; error: XpkgError };

interface Runs {
  readonly manifest: Manifest;
  run(inputs: Record<string, unknown>): Promise<RunResult>;
  /** Loads the models (Runner.warmUp); a load that fails here is tried again, and reported, by `run`. */
  warmUp?(): Promise<void>;
}

export async function* runMany(
  runner: Runs,
  items: Iterable<ManyInput> | AsyncIterable<ManyInput>,
): AsyncGenerator<ManyResult, void, undefined> {
  let index = 0;
  for await (const item of items) {
    // the models load while the first item's files are read and checked (images in the decoder's worker)
    if (index === 0) runner.warmUp?.().catch(() => {});
    const it = typeof item === 'string' ? { files: { [primaryInput(runner.manifest).name]: item } } : item;
    const source = it.source ?? Object.values(it.files ?? {})[0] ?? `#${index}`;
    try {
      const inputs = { ...(it.inputs ?? {}), ...(await loadInputFiles(runner.manifest, it.files ?? {})) };
      const result = await runner.run(inputs);
      yield { index, source, ok: true, result, inputs };
    } catch (e) {
      yield { index, source, ok: false, error: toXpkgError(e) };
    }
    index++;
  }
}
