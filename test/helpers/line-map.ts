/**
 * A text detector's probability map with line-shaped blocks at 0.9 (rows y0..y1, columns x0..x1),
 * for pipelines that start at db-postprocess (crop-batch tests).
 */
export function lineMap(
  width: number,
  height: number,
  lines: readonly (readonly [number, number, number])[],
  x0 = 5,
): Float32Array {
  const map = new Float32Array(width * height);
  for (const [y0, y1, x1] of lines)
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) map[y * width + x] = 0.9;
  return map;
}
