/**
 * What the repository knows of each file in its folder, and the model_repository extension's index
 * made from it: `name` and `state` always, `reason` a string (the extension's types); the error
 * itself, with its code, is `error`. A file whose manifest could not be read is named by its file
 * name, as the load API names it. Entries come in file name order.
 */
import type { ErrorJson } from '../spec/errors.js';

/**
 * `standby`: verified, not serving (held by an API unload, or a copy of what serves). `superseded`: the
 * file was replaced while this package loaded; not a refusal (its newer contents load next).
 */
export type FileStatus = 'loading' | 'serving' | 'refused' | 'standby' | 'superseded';

export interface FileState {
  /** The file's identity when it was handled (folder.ts's fileKey); '' to have it looked at again. */
  key: string;
  status: FileStatus;
  name?: string;
  id?: string;
  sequence?: number;
  reason?: ErrorJson;
}

export interface IndexEntry {
  file: string;
  name: string;
  version?: string;
  sequence?: number;
  state: string;
  reason?: string;
  error?: ErrorJson;
}

const STATE = {
  loading: 'LOADING',
  serving: 'READY',
  refused: 'UNAVAILABLE',
  standby: 'UNAVAILABLE',
  superseded: 'UNAVAILABLE',
} as const;

/** The reason of a file set aside without a fault: a string, as the extension's `reason`, and no `error`. */
const SUPERSEDED = 'superseded: the file was replaced while this package loaded; its newer contents load next';

export function repositoryIndex(files: ReadonlyMap<string, FileState>): IndexEntry[] {
  return [...files]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([file, s]) => ({
      file,
      name: s.name ?? file.replace(/\.xpkg$/, ''),
      ...(s.id ? { version: s.id } : {}),
      ...(s.sequence !== undefined ? { sequence: s.sequence } : {}),
      state: STATE[s.status],
      ...(s.reason ? { reason: s.reason.summary, error: s.reason } : {}),
      ...(s.status === 'superseded' ? { reason: SUPERSEDED } : {}),
    }));
}
