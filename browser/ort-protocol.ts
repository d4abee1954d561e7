/** Messages between the onnxruntime-web backend (browser/ort-web.ts) and its worker (browser/ort-host.ts). */
import type { InferenceSession } from 'onnxruntime-web';
import type { ModelSession, Tensor } from '../runner/types.js';

export type HostRequest = { id: number } & (
  | { op: 'start'; webgpu: boolean; threads: number; wasmBase: string }
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
}
