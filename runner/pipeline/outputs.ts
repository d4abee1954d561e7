/**
 * Typed outputs: after the last step, each manifest output is read from the environment value
 * of the same name and converted to the plain shape its declared type promises.
 */
import type { IoSpec } from '../../spec/schema.js';
import type { Tensor } from '../types.js';
import type { TextLine, Value } from './values.js';

export interface Classification {
  labels: string[];
  indices: number[];
  scores: number[];
}

export interface DetectedBox {
  /** `[x1, y1, x2, y2]` for boxes; four `[x, y]` corners for rotated regions. */
  box: number[] | [number, number][];
  score: number;
  class?: number;
  label?: string;
}

export interface Mask {
  width: number;
  height: number;
  data: Int32Array;
  labels?: string[];
}

/** What each declared output type comes back as. */
export type OutputValue =
  | TextLine[]
  | string
  | Classification
  | Classification[]
  | DetectedBox[]
  | Mask
  | Tensor
  | unknown;

function classifications(v: Extract<Value, { kind: 'classes' }>): Classification[] {
  return Array.from({ length: v.count }, (_, i) => {
    const indices = Array.from(v.indices.subarray(i * v.k, (i + 1) * v.k));
    return {
      indices,
      labels: indices.map((j) => v.labels?.[j] ?? String(j)),
      scores: Array.from(v.scores.subarray(i * v.k, (i + 1) * v.k)),
    };
  });
}

/** Returns the converted value, or a reason it can't be converted. */
export function convertOutput(spec: IoSpec, v: Value): { value: OutputValue } | { problem: string } {
  const bad = { problem: `output ${spec.name} is declared ${spec.type} but the pipeline produced ${v.kind}` };
  switch (spec.type) {
    case 'text-lines':
      return v.kind === 'text-lines' ? { value: v.lines } : bad;
    case 'text':
      if (v.kind === 'texts') return { value: v.texts.join('\n') };
      if (v.kind === 'text-lines') return { value: v.lines.map((l) => l.text).join('\n') };
      if (v.kind === 'raw' && typeof v.value === 'string') return { value: v.value };
      return bad;
    case 'classification': {
      if (v.kind !== 'classes') return bad;
      const all = classifications(v);
      // One input image → one classification; batches keep the list.
      return { value: all.length === 1 ? all[0] : all };
    }
    case 'boxes':
      if (v.kind === 'boxes') {
        return {
          value: Array.from({ length: v.count }, (_, i): DetectedBox => {
            const b: DetectedBox = { box: Array.from(v.boxes.subarray(4 * i, 4 * i + 4)), score: v.scores[i] };
            if (v.classes) {
              b.class = v.classes[i];
              b.label = v.labels?.[v.classes[i]] ?? String(v.classes[i]);
            }
            return b;
          }),
        };
      }
      if (v.kind === 'regions') {
        return {
          value: Array.from(
            { length: v.count },
            (_, i): DetectedBox => ({
              box: [0, 1, 2, 3].map((k) => [v.quads[8 * i + 2 * k], v.quads[8 * i + 2 * k + 1]] as [number, number]),
              score: v.scores[i],
            }),
          ),
        };
      }
      return bad;
    case 'mask':
      return v.kind === 'mask'
        ? { value: { width: v.width, height: v.height, data: v.data, ...(v.labels ? { labels: v.labels } : {}) } }
        : bad;
    case 'tensor':
      return v.kind === 'tensor' ? { value: { type: v.type, dims: v.dims, data: v.data } satisfies Tensor } : bad;
    case 'image':
      return v.kind === 'image'
        ? { value: { data: v.data, width: v.width, height: v.height, channels: v.channels } }
        : bad;
    default: {
      // json: the value without its tag
      const { kind: _kind, ...rest } = v as Value & Record<string, unknown>;
      return { value: v.kind === 'raw' ? v.value : rest };
    }
  }
}
