/** Messages between the browser entry (browser/index.ts) and its worker (browser/worker.ts). */
import type { ErrorJson } from '../spec/errors.js';
import type { PackageInput, Progress, SessionOptions } from './session.js';

export type Request =
  | { id: number; op: 'open'; input: PackageInput; options: SessionOptions }
  | { id: number; op: 'verify'; pkg: number }
  | { id: number; op: 'prepare'; pkg: number }
  | { id: number; op: 'run'; pkg: number; inputs: Record<string, unknown> }
  | { id: number; op: 'close'; pkg: number }
  | { id: number; op: 'runtime'; options: Pick<SessionOptions, 'threads'> };

export type Reply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: ErrorJson }
  | { id: number; progress: Progress };
