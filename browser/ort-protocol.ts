/** Messages between the onnxruntime-web backend (browser/ort-web.ts) and its worker (browser/ort-host.ts). */
import type { InferenceSession } from 'onnxruntime-web';
import type { ModelSession, Tensor } from '../runner/types.js';

export type HostRequest = { id: number } & (
  | { op: 'start'; webgpu: boolean; threads: number; wasmBase: string; precompiled: boolean }
  /** The runtime's WASM compiled by the caller (null: it could not, the worker fetches it itself). */
  | { op: 'module'; module: WebAssembly.Module | null }
  | { op: 'ready' }
  | { op: 'create'; model: Uint8Array; options: InferenceSession.SessionOptions }
  | { op: 'run'; sid: number; feeds: Record<string, Tensor> }
  | { op: 'release'; sid: number }
);

export type HostReply = { id: number; ok: true; value: unknown } | { id: number; ok: false; message: string };

/** What 'create' answers: the session's handle and what the runner asks of a ModelSession. */
export interface CreatedSession {
  sid: number;
  inputNames: string[];
  outputNames: string[];
  inputShapes: NonNullable<ModelSession['inputShapes']>;
  outputShapes: NonNullable<ModelSession['outputShapes']>;
}

/** onnxruntime-web's WASM build (its CPU provider), served beside the bundle. */
export const ORT_WASM = 'ort-wasm-simd-threaded.wasm';

/** Where the runtime's worker leaves a module compiled ahead for browser/ort-factory.ts's loader. */
export const PRECOMPILED = Symbol.for('xpkg.ort.precompiled');

export interface Precompiled {
  /** The compiled module, or null: the loader fetches and compiles it itself. */
  module: Promise<WebAssembly.Module | null>;
  /** Called when instantiating failed (the loader has no way to say so itself: its start would never end). */
  failed(error: unknown): void;
}
