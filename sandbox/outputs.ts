/**
 * Checks a hook's result against declared outputs (manifest IoSpec). The result must be an object
 * with exactly the declared fields; each field's value has the shape its type defines here:
 *
 *   tensor          a tensor; `dtype` and `shape` (ints exact, -1 or a name = any) checked when declared
 *   image           uint8 tensor [H, W, C], C ∈ {1, 3, 4}
 *   mask            int32 / uint8 / bool tensor [H, W]
 *   text            string
 *   text-lines      [{ text, score, box: [[x, y] × 4] }]
 *   classification  [{ index, score, label? }]
 *   boxes           [{ box: [x1, y1, x2, y2], score, class?, label? }]
 *   json            any JSON value (no tensors, no typed arrays)
 *
 * Array items may not carry other fields: a package's format is what it declares.
 */
import { SandboxError } from '../spec/errors.js';
import type { IoSpec } from '../spec/schema.js';
import { looksLikeTensor } from './codec.js';
import type { SandboxTensor } from './types.js';

class Mismatch extends Error {}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v) && !looksLikeTensor(v);
const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function expect(ok: boolean, reason: string): asserts ok {
  if (!ok) throw new Mismatch(reason);
}

function fields(
  v: unknown,
  required: readonly string[],
  optional: readonly string[],
  what: string,
): Record<string, unknown> {
  expect(isPlainObject(v), `${what} must be an object`);
  for (const k of required) expect(Object.hasOwn(v, k), `${what} lacks '${k}'`);
  for (const k of Object.keys(v))
    expect(required.includes(k) || optional.includes(k), `${what} has an undeclared field '${k}'`);
  return v;
}

function list(v: unknown, what: string, each: (item: unknown, what: string) => void): void {
  expect(Array.isArray(v), `${what} must be an array`);
  v.forEach((item, i) => each(item, `${what}[${i}]`));
}

function tensor(v: unknown, spec: Pick<IoSpec, 'dtype' | 'shape'>, what: string): SandboxTensor {
  expect(looksLikeTensor(v), `${what} must be a tensor`);
  if (spec.dtype) expect(v.type === spec.dtype, `${what} must be ${spec.dtype}, got ${v.type}`);
  if (spec.shape) {
    expect(
      v.dims.length === spec.shape.length,
      `${what} must have rank ${spec.shape.length}, got [${v.dims.join(', ')}]`,
    );
    spec.shape.forEach((d, i) =>
      expect(typeof d === 'string' || d === -1 || v.dims[i] === d, `${what} dim ${i} must be ${d}, got ${v.dims[i]}`),
    );
  }
  return v;
}

function jsonOnly(v: unknown, what: string, depth = 0): void {
  expect(depth < 256, `${what} is nested too deeply`);
  if (v === null || typeof v === 'string' || typeof v === 'boolean' || finite(v)) return;
  expect(typeof v === 'object' && !ArrayBuffer.isView(v) && !looksLikeTensor(v), `${what} must be plain JSON`);
  for (const x of Object.values(v as object)) jsonOnly(x, what, depth + 1);
}

const point = (v: unknown, what: string) =>
  expect(Array.isArray(v) && v.length === 2 && v.every(finite), `${what} must be [x, y]`);

function checkValue(spec: IoSpec, v: unknown): void {
  const what = `output '${spec.name}'`;
  switch (spec.type) {
    case 'tensor':
      tensor(v, spec, what);
      return;
    case 'image': {
      const t = tensor(v, { dtype: 'uint8', shape: spec.shape }, what);
      expect(t.dims.length === 3 && [1, 3, 4].includes(t.dims[2]), `${what} must be [height, width, 1|3|4]`);
      return;
    }
    case 'mask': {
      const t = tensor(v, { shape: spec.shape }, what);
      expect(
        t.dims.length === 2 && ['int32', 'uint8', 'bool'].includes(t.type),
        `${what} must be an int32, uint8 or bool [height, width] tensor`,
      );
      return;
    }
    case 'text':
      expect(typeof v === 'string', `${what} must be a string`);
      return;
    case 'text-lines':
      // biome-ignore lint/correctness/noVoidTypeReturn: returning the void check ends the case
      return list(v, what, (item, w) => {
        const o = fields(item, ['text', 'score', 'box'], [], w);
        expect(typeof o.text === 'string' && finite(o.score), `${w} needs a string text and a finite score`);
        expect(Array.isArray(o.box) && o.box.length === 4, `${w}.box must have 4 points`);
        (o.box as unknown[]).forEach((p, i) => point(p, `${w}.box[${i}]`));
      });
    case 'classification':
      // biome-ignore lint/correctness/noVoidTypeReturn: returning the void check ends the case
      return list(v, what, (item, w) => {
        const o = fields(item, ['index', 'score'], ['label'], w);
        expect(
          Number.isSafeInteger(o.index) && (o.index as number) >= 0 && finite(o.score),
          `${w} needs a non-negative integer index and a finite score`,
        );
        expect(o.label === undefined || typeof o.label === 'string', `${w}.label must be a string`);
      });
    case 'boxes':
      // biome-ignore lint/correctness/noVoidTypeReturn: returning the void check ends the case
      return list(v, what, (item, w) => {
        const o = fields(item, ['box', 'score'], ['class', 'label'], w);
        expect(
          Array.isArray(o.box) && o.box.length === 4 && o.box.every(finite) && finite(o.score),
          `${w} needs box [x1, y1, x2, y2] and a finite score`,
        );
        expect(o.class === undefined || Number.isSafeInteger(o.class), `${w}.class must be an integer`);
        expect(o.label === undefined || typeof o.label === 'string', `${w}.label must be a string`);
      });
    case 'json':
      jsonOnly(v, what);
      return;
    default:
      throw new Mismatch(`${what} has unknown type '${String(spec.type)}'`);
  }
}

/** Throws E_SANDBOX_OUTPUT unless `result` matches `outputs`. */
export function validateOutputs(result: unknown, outputs: readonly IoSpec[]): Record<string, unknown> {
  const names = outputs.map((o) => o.name);
  try {
    expect(isPlainObject(result), 'the result must be an object with the declared outputs');
    for (const k of Object.keys(result)) expect(names.includes(k), `the result has an undeclared output '${k}'`);
    for (const spec of outputs) {
      if (!Object.hasOwn(result, spec.name) || result[spec.name] === undefined) {
        expect(spec.optional === true, `the result lacks output '${spec.name}'`);
        continue;
      }
      checkValue(spec, result[spec.name]);
    }
    return result;
  } catch (e) {
    if (e instanceof Mismatch) throw new SandboxError('E_SANDBOX_OUTPUT', e.message, { outputs: names });
    throw e;
  }
}
