/**
 * Images the browser decodes with its own decoders rather than sharp: EXIF-rotated JPEG, 16-bit PNG
 * with a colour profile, CMYK JPEG, animated GIF (first frame counts), AVIF, and a PNG over the pixel
 * budget that compresses to a few hundred KiB. Made from one PNG with sharp, in memory.
 */
import sharp from 'sharp';

export interface SweepImage {
  name: string;
  type: string;
  bytes: Buffer;
}

export async function sweepImages(png: Buffer): Promise<SweepImage[]> {
  const base = sharp(png).removeAlpha();
  const { width, height } = await base.metadata();
  const rgb = await base.clone().raw().toBuffer();
  // Stored turned a quarter to the left, tagged "rotate 90° clockwise to show" (EXIF 6): it shows as the PNG.
  const rotated = await sharp(png)
    .removeAlpha()
    .rotate(-90)
    .jpeg({ quality: 95 })
    .withMetadata({ orientation: 6 })
    .toBuffer();
  // Two frames, the PNG first and a black one after: a decoder takes the first.
  const frames = Buffer.concat([rgb, Buffer.alloc(rgb.length)]);
  const gif = await sharp(frames, {
    raw: { width: width!, height: height! * 2, channels: 3, pageHeight: height! } as never,
  })
    .gif({ delay: [100, 100], loop: 0 })
    .toBuffer();
  return [
    { name: 'exif-rotated.jpg', type: 'image/jpeg', bytes: rotated },
    {
      name: 'p3-16bit.png',
      type: 'image/png',
      bytes: await sharp(png).removeAlpha().toColourspace('rgb16').withIccProfile('p3').png().toBuffer(),
    },
    {
      name: 'cmyk.jpg',
      type: 'image/jpeg',
      bytes: await sharp(png).removeAlpha().toColourspace('cmyk').jpeg({ quality: 95 }).toBuffer(),
    },
    { name: 'animated.gif', type: 'image/gif', bytes: gif },
    { name: 'image.avif', type: 'image/avif', bytes: await sharp(png).removeAlpha().avif({ quality: 90 }).toBuffer() },
  ];
}

/** A 12000×12000 grey PNG (144 M pixels, above the default budget of 100 M), a few hundred KiB. */
export function hugePng(side = 12000): Promise<Buffer> {
  return sharp({ create: { width: side, height: side, channels: 3, background: { r: 90, g: 90, b: 90 } } })
    .png({ compressionLevel: 9 })
    .toBuffer();
}
