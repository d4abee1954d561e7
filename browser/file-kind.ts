/**
 * Whether a dropped or chosen file is an image (to run) rather than a package (to open). A system
 * gives no type to a file of no or an unknown extension (`shot`, `photo.jfif`): such a file is told
 * apart by its first bytes, so an image is run instead of being opened, and refused, as a package.
 */
import { anyImageSignature, imageSignature } from '../runner/inputs/image-signatures.js';

/**
 * An image by its first bytes: a format sharp reads (the signatures `xpkg run` tells images by,
 * runner/inputs/image-signatures.ts), or BMP, which browsers decode too.
 */
export function isImageBytes(head: Uint8Array): boolean {
  return imageSignature(head) !== undefined || anyImageSignature(head) === 'BMP';
}

export async function isImageFile(file: File): Promise<boolean> {
  if (/\.xpkg$/i.test(file.name)) return false;
  if (file.type.startsWith('image/')) return true;
  if (file.type || /\.zip$/i.test(file.name)) return false;
  return isImageBytes(new Uint8Array(await file.slice(0, 16).arrayBuffer()));
}
