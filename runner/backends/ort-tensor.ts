/**
 * Between xpkg's neutral tensors and onnxruntime's, shared by the onnxruntime-node backend and the
 * browser's onnxruntime-web one (both take onnxruntime-common's Tensor).
 */
import type { Tensor as OrtTensor } from 'onnxruntime-common';
import { RunnerError } from '../../spec/errors.js';
import type { DType, Tensor, TypedData } from '../types.js';

type TypedCtor = {
  new (buf: ArrayBufferLike, off: number, len: number): TypedData;
  readonly BYTES_PER_ELEMENT: number;
};
/** The typed array that holds each element type (float16 as raw bits). */
export const TYPED: Record<DType, TypedCtor> = {
  float32: Float32Array,
  float16: Uint16Array,
  int64: BigInt64Array,
  int32: Int32Array,
  uint8: Uint8Array,
  int8: Int8Array,
  bool: Uint8Array,
};

/** Checks a neutral tensor before it reaches native code (clear errors, no native asserts). */
export function checkTensor(name: string, t: Tensor): void {
  // own keys only: a type named `constructor` must not find Object (every array is an instance of it)
  const ctor = Object.hasOwn(TYPED, t.type) ? TYPED[t.type] : undefined;
  if (!ctor) throw new RunnerError('E_RUN_INPUT', `input ${name}: unsupported dtype ${String(t.type)}`);
  if (!(t.data instanceof ctor))
    throw new RunnerError(
      'E_RUN_INPUT',
      `input ${name}: ${t.type} data must be a ${ctor.name}, not ${t.data?.constructor?.name}`,
    );
  if (!t.dims.every((d) => Number.isInteger(d) && d >= 0))
    throw new RunnerError('E_RUN_INPUT', `input ${name}: dims must be non-negative integers`, { dims: [...t.dims] });
  const n = t.dims.reduce((a, b) => a * b, 1);
  if (n !== t.data.length)
    throw new RunnerError(
      'E_RUN_INPUT',
      `input ${name}: dims [${t.dims.join(', ')}] hold ${n} elements, data has ${t.data.length}`,
      { dims: [...t.dims], length: t.data.length },
    );
}

/** ort tensor → neutral tensor, sharing the data array (no copy). */
export function fromOrtTensor(name: string, t: OrtTensor): Tensor {
  const type = t.type as string;
  if (!(type in TYPED))
    throw new RunnerError('E_RUN_BACKEND', `output ${name} has dtype ${type}, which xpkg tensors do not carry`, {
      output: name,
      type,
    });
  const ctor = TYPED[type as DType];
  const data = t.data as unknown as TypedData;
  // ort hands bool as Uint8Array and float16 as Uint16Array already; anything else is re-viewed, not copied
  const view =
    data instanceof ctor ? data : new ctor(data.buffer, data.byteOffset, data.byteLength / ctor.BYTES_PER_ELEMENT);
  return { type: type as DType, dims: t.dims, data: view };
}
