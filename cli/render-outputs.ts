/**
 * `xpkg run`'s outputs for a person (without `--json`). A tensor is shown the way numpy and torch
 * print a large array: dtype and shape, its first and last few values, and min / max / mean — a few
 * lines whatever its size, never megabytes of numbers (`--json` has every value).
 */
import { halfToNumber } from '../runner/outputs-json.js';
import type { Classification } from '../runner/pipeline/outputs.js';
import type { Manifest } from '../spec/schema.js';

/** Values shown in full up to this many; beyond it the first HEAD and last TAIL, with `…` between. */
const FULL = 16;
const HEAD = 6;
const TAIL = 3;

interface TensorLike {
  type: string;
  dims: readonly number[];
  data: ArrayBufferView & { length: number };
}

export function isTensorLike(v: unknown): v is TensorLike {
  const o = v as Partial<TensorLike> | null;
  return (
    typeof o === 'object' &&
    o !== null &&
    typeof o.type === 'string' &&
    Array.isArray(o.dims) &&
    ArrayBuffer.isView(o.data) &&
    typeof (o.data as { length?: unknown }).length === 'number'
  );
}

/** Element i as a number or bigint (float16 lives in a Uint16Array, bool in a Uint8Array). */
function valueAt(t: TensorLike, i: number): number | bigint {
  const x = (t.data as unknown as ArrayLike<number | bigint>)[i];
  return t.type === 'float16' ? halfToNumber(x as number) : x;
}

function fmt(t: TensorLike, x: number | bigint): string {
  if (typeof x === 'bigint') return x.toString();
  if (t.type === 'bool') return x ? 'true' : 'false';
  if (Number.isInteger(x) || !Number.isFinite(x)) return String(x);
  // six significant digits, as numpy's default print precision
  return String(Number(x.toPrecision(6)));
}

/** `float32 [1,3,4] [0.1, 0.2, …, 0.9]  min 0.1  max 0.9  mean 0.5` (with NaN counted apart). */
export function summarizeTensor(t: TensorLike): string {
  const n = t.data.length;
  const head = `${t.type} [${t.dims.join(',')}]`;
  if (n === 0) return `${head} []`;
  const idx =
    n <= FULL ? [...Array(n).keys()] : [...Array(HEAD).keys(), ...Array.from({ length: TAIL }, (_, k) => n - TAIL + k)];
  const shown = idx.map((i) => fmt(t, valueAt(t, i)));
  if (n > FULL) shown.splice(HEAD, 0, '…');
  let min: number | bigint | undefined;
  let max: number | bigint | undefined;
  let sum = 0;
  let nan = 0;
  for (let i = 0; i < n; i++) {
    const x = valueAt(t, i);
    if (typeof x === 'number' && Number.isNaN(x)) {
      nan++;
      continue;
    }
    if (min === undefined || x < min) min = x;
    if (max === undefined || x > max) max = x;
    sum += Number(x);
  }
  const stats =
    min === undefined || max === undefined
      ? ''
      : `  min ${fmt(t, min)}  max ${fmt(t, max)}  mean ${String(Number((sum / (n - nan)).toPrecision(6)))}`;
  return `${head} [${shown.join(', ')}]${stats}${nan ? `  nan ${nan}` : ''}`;
}

/** JSON of anything else, typed arrays shortened (a mask's labels, an image's pixels). */
function shortJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    isTensorLike(x)
      ? summarizeTensor(x)
      : ArrayBuffer.isView(x)
        ? `<${(x as Uint8Array).length} values>`
        : typeof x === 'bigint'
          ? x.toString()
          : x,
  );
}

/** `{labels, indices, scores}` (runner/pipeline/outputs.ts Classification). */
const isClassification = (c: unknown): c is Classification =>
  typeof c === 'object' &&
  c !== null &&
  Array.isArray((c as Classification).labels) &&
  Array.isArray((c as Classification).scores);

/** Human rendering of typed outputs. */
export function renderOutputs(manifest: Manifest, outputs: Record<string, unknown>): string {
  const out: string[] = [];
  for (const spec of manifest.outputs) {
    const v = outputs[spec.name] as any;
    if (spec.type === 'text-lines' && Array.isArray(v)) out.push(...v.map((l: { text: string }) => l.text));
    else if (
      spec.type === 'classification' &&
      (isClassification(v) || (Array.isArray(v) && v.every(isClassification)))
    ) {
      // one image's classes, or a batch's (a [N, C] head): each item's rows prefixed with its index
      const list: Classification[] = Array.isArray(v) ? v : [v];
      list.forEach((c, i) =>
        out.push(
          ...c.labels.map((l, k) => `${list.length > 1 ? `${i}\t` : ''}${l}\t${Number(c.scores[k]).toFixed(4)}`),
        ),
      );
    } else if (spec.type === 'text' && typeof v === 'string') out.push(v.replace(/\n$/, ''));
    else if (spec.type === 'boxes' && Array.isArray(v))
      out.push(
        `${v.length} boxes`,
        ...v.map(
          (b: any) => `${b.label ?? b.class}\t${Number(b.score).toFixed(3)}\t${JSON.stringify(b.box ?? b.bbox)}`,
        ),
      );
    else if (isTensorLike(v)) out.push(`${spec.name}: ${summarizeTensor(v)}`);
    else out.push(`${spec.name}: ${shortJson(v)}`);
  }
  return out.join('\n');
}
