/** Small helpers the bench scripts share: command-line values, medians, a synthetic 1080p image. */

/** The value after `--name` on the command line, if given. */
export function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** A 1920×1080 RGB image of gradients and stripes (detail, not noise), for the image kernels' benches. */
export function image1080p(): { data: Uint8Array; width: number; height: number; format: 'rgb' } {
  const W = 1920,
    H = 1080;
  const rgb = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 3;
      rgb[i] = (x * 255) / W;
      rgb[i + 1] = (y * 255) / H;
      rgb[i + 2] = ((x >> 3) ^ (y >> 3)) & 1 ? 220 : 30;
    }
  return { data: rgb, width: W, height: H, format: 'rgb' };
}
