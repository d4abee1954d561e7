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

/**
 * A HEIC as a phone writes it, reduced to its boxes: one `hvc1` (HEVC) item of 4032×3024 with its
 * hvcC and ispe properties. sharp reads its header; its libvips has no HEVC decoder.
 */
export function heic(): Buffer {
  const box = (type: string, data: Buffer) => {
    const h = Buffer.alloc(8);
    h.writeUInt32BE(8 + data.length);
    h.write(type, 4, 'latin1');
    return Buffer.concat([h, data]);
  };
  const full = (type: string, version: number, data: Buffer) =>
    box(type, Buffer.concat([Buffer.from([version, 0, 0, 0]), data]));
  const u16 = (...v: number[]) => Buffer.from(v.flatMap((x) => [x >> 8, x & 255]));
  const u32 = (...v: number[]) => Buffer.concat(v.map((x) => u16(x >>> 16, x & 0xffff)));
  const payload = Buffer.concat([u32(16), Buffer.from([0x26, 0x01]), Buffer.alloc(14, 0xaf)]);
  const ftyp = box('ftyp', Buffer.from('heic\0\0\0\0mif1heic', 'latin1'));
  const props = box(
    'iprp',
    Buffer.concat([
      box(
        'ipco',
        Buffer.concat([
          box(
            'hvcC',
            Buffer.from([
              1, 1, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 0x5d, 0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0, 0x0f, 0,
            ]),
          ),
          full('ispe', 0, u32(4032, 3024)),
        ]),
      ),
      full('ipma', 0, Buffer.concat([u32(1), u16(1), Buffer.from([2, 0x81, 0x02])])),
    ]),
  );
  const meta = (at: number) =>
    full(
      'meta',
      0,
      Buffer.concat([
        full('hdlr', 0, Buffer.concat([Buffer.alloc(4), Buffer.from('pict', 'latin1'), Buffer.alloc(13)])),
        full('pitm', 0, u16(1)),
        full('iloc', 0, Buffer.concat([Buffer.from([0x44, 0]), u16(1, 1, 0, 1), u32(at, payload.length)])),
        full('iinf', 0, Buffer.concat([u16(1), full('infe', 2, Buffer.concat([u16(1, 0), Buffer.from('hvc1\0')]))])),
        props,
      ]),
    );
  const at = ftyp.length + meta(0).length + 8;
  return Buffer.concat([ftyp, meta(at), box('mdat', payload)]);
}
