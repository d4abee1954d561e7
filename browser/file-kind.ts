/**
 * Whether a dropped or chosen file is an image (to run) rather than a package (to open). A system
 * gives no type to a file of no or an unknown extension (`shot`, `photo.jfif`): such a file is told
 * apart by its first bytes, so an image is run instead of being opened, and refused, as a package.
 */
/** The first bytes of raster images (PNG, JPEG, GIF, BMP, WebP, AVIF/HEIF, TIFF), a byte a character. */
export const IMAGE_MAGIC = [
  /^\x89PNG/,
  /^\xff\xd8\xff/,
  /^GIF8/,
  /^BM/,
  /^RIFF....WEBP/s,
  /^....ftyp(avi|hei|mif)/s,
  /^(II\*\0|MM\0\*)/,
];

export async function isImageFile(file: File): Promise<boolean> {
  if (/\.xpkg$/i.test(file.name)) return false;
  if (file.type.startsWith('image/')) return true;
  if (file.type || /\.zip$/i.test(file.name)) return false;
  const head = new Uint8Array(await file.slice(0, 16).arrayBuffer());
  return IMAGE_MAGIC.some((m) => m.test(String.fromCharCode(...head)));
}
