/** Messages between the daemon and a model worker (a child process or a worker thread running one Runner). */

import type { RunnerOptions } from '../runner/runner.js';
import type { ErrorJson } from '../spec/errors.js';
import type { Manifest } from '../spec/schema.js';
import type { BulkPart } from './bulk.js';

export type ToWorker =
  /**
   * Open (and so verify) the package; `expectId` makes a replacement worker refuse other bytes;
   * `nice`: the worker's CPU priority, set first (its model threads, started later, inherit it).
   */
  | { t: 'open'; path: string; options: RunnerOptions; expectId?: string; nice?: number }
  /** Load every model and run the package once on its example input, if it has one. */
  | { t: 'warm' }
  /**
   * `tail`: run only the tail of that split model (its head's id) on cut tensors (serve/routes-fabric.ts);
   * `bulk`: arrays cut out of `inputs` whose bytes are in the worker's bulk file (bulk.ts).
   */
  | { t: 'run'; rid: number; inputs: Record<string, unknown>; tail?: string; bulk?: BulkPart[] }
  /** Every thread of the worker to this niceness (a loaded version starts serving: serve/priority.ts). */
  | { t: 'nice'; nice: number }
  | { t: 'close' };

export interface Opened {
  t: 'opened';
  id: string;
  manifest: Manifest;
  /** At least one trusted signature verified (not merely allowed unsigned). */
  signed: boolean;
  /** Bytes of the files of every chosen variant: what the models will hold in memory at least. */
  variantBytes: number;
  /** The worker's resident memory now (null in a thread, where it is the whole process's). */
  rss: number | null;
  /** The niceness the worker opened the package at (its main thread's). */
  nice: number;
}

export interface RunReply {
  outputs: Record<string, unknown>;
  variant: Record<string, string>;
  actualProvider: Record<string, string>;
  fallbacks: Record<string, unknown[]>;
  nodes: Record<string, unknown>;
  timings: Record<string, number>;
  /** A thread worker's input memory handed back for the daemon's body pool (pool.ts). */
  recycle?: ArrayBuffer[];
}

export type FromWorker =
  | Opened
  | { t: 'warmed'; rss: number | null; ms: number; example: boolean }
  | { t: 'niced'; threads: number }
  | { t: 'result'; rid: number; result: RunReply }
  | { t: 'error'; rid?: number; error: ErrorJson }
  | { t: 'closed' };
