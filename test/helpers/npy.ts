/** A v1 .npy file (the layout NumPy writes): float32 (little or big endian) or int32 values. */
export function npyFile(
  values: ArrayLike<number>,
  shape: number[],
  o: { descr?: '<f4' | '>f4' | '<i4'; fortran?: boolean } = {},
): Buffer {
  const descr = o.descr ?? '<f4';
  let h = `{'descr': '${descr}', 'fortran_order': ${o.fortran ? 'True' : 'False'}, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  // the header pads to a multiple of 64 bytes with the magic, version and length before it
  h += `${' '.repeat((64 - ((10 + h.length + 1) % 64)) % 64)}\n`;
  const len = Buffer.alloc(2);
  len.writeUInt16LE(h.length);
  const body =
    descr === '<i4' ? Buffer.from(Int32Array.from(values).buffer) : Buffer.from(Float32Array.from(values).buffer);
  if (descr === '>f4') body.swap32();
  return Buffer.concat([Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]), len, Buffer.from(h, 'latin1'), body]);
}
