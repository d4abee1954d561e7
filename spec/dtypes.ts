/** Tensor element types of the format (a manifest's `dtype`), and their sizes: one table for every layer. */
export type ElementType = 'float32' | 'float16' | 'int64' | 'int32' | 'uint8' | 'int8' | 'bool';

/** Bytes per element of each type. */
export const DTYPE_BYTES: Readonly<Record<ElementType, number>> = Object.freeze({
  float32: 4,
  float16: 2,
  int64: 8,
  int32: 4,
  uint8: 1,
  int8: 1,
  bool: 1,
});
