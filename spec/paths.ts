/**
 * The safe-path grammar for entry names (spec/FORMAT.md §3) and the collision key used to detect
 * names that would land on the same file on a case-insensitive or normalising file system.
 */
import { FormatError } from './errors.js';
import { LIMITS, RESERVED_PREFIX } from './limits.js';

// Windows also opens the device when spaces follow the name before an extension ("nul .txt"), and
// CONIN$ / CONOUT$ name the console.
const WINDOWS_RESERVED = /^(con|prn|aux|nul|conin\$|conout\$|com[0-9¹²³]|lpt[0-9¹²³]) *(\..*)?$/i;
// Controls, DEL, C1 controls, and characters that are special on common file systems or shells.
// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
const FORBIDDEN_CHAR = /[\u0000-\u001f\u007f-\u009f\\:*?"<>|\u2028\u2029\ufeff\ufff9-\ufffb]/u;
// Bidi overrides and isolates let a name display as something it is not.
const BIDI_CONTROL = /[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]/u;

/** Returns null when `path` is a valid payload or metadata name, else the reason. */
export function pathProblem(path: string): string | null {
  if (path.length === 0) return 'empty name';
  const bytes = Buffer.byteLength(path, 'utf8');
  if (bytes > LIMITS.pathBytes) return `name longer than ${LIMITS.pathBytes} bytes`;
  if (/[\uD800-\uDFFF]/.test(path) && !isWellFormed(path)) return 'lone surrogate';
  if (path !== path.normalize('NFC')) return 'not in Unicode NFC';
  if (path.startsWith('/')) return 'absolute path';
  if (/^[a-zA-Z]:/.test(path)) return 'drive letter';
  const m = FORBIDDEN_CHAR.exec(path);
  if (m) return `forbidden character U+${m[0].codePointAt(0)!.toString(16).padStart(4, '0')}`;
  if (BIDI_CONTROL.test(path)) return 'bidirectional control character';
  const segs = path.split('/');
  if (segs.length > LIMITS.pathDepth) return `deeper than ${LIMITS.pathDepth} segments`;
  for (const s of segs) {
    if (s === '') return 'empty segment (leading, trailing or doubled /)';
    if (s === '.' || s === '..') return `'${s}' segment`;
    if (Buffer.byteLength(s, 'utf8') > LIMITS.segmentBytes) return `segment longer than ${LIMITS.segmentBytes} bytes`;
    if (s !== s.trim()) return 'segment starts or ends with white space';
    if (s.endsWith('.')) return 'segment ends with a dot';
    if (WINDOWS_RESERVED.test(s)) return `reserved device name '${s}'`;
  }
  return null;
}

function isWellFormed(s: string): boolean {
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
}

export function assertSafePath(path: string, context: Record<string, unknown> = {}): void {
  const p = pathProblem(path);
  if (p)
    throw new FormatError('E_PATH_UNSAFE', `unsafe entry name ${JSON.stringify(path)}: ${p}`, {
      path,
      reason: p,
      ...context,
    });
}

/** True for names the format reserves for itself (manifest, signatures). */
export function isReserved(path: string): boolean {
  return collisionKey(path).startsWith(RESERVED_PREFIX);
}

/**
 * Key under which two names collide: compatibility-normalised, then case-folded (upper then lower
 * catches ß/SS and similar), then normalised again.
 */
export function collisionKey(path: string): string {
  return path.replace(HFS_IGNORABLE, '').normalize('NFKC').toUpperCase().toLowerCase().normalize('NFKC');
}

// Code points HFS+ skips when comparing names (Apple TN1150), so "a\u200cb" and "ab" are one file
// there (the trick behind CVE-2014-9390). The grammar already refuses some of them; drop the rest.
const HFS_IGNORABLE = /[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]/gu;

/**
 * Checks a set of names for exact duplicates, collisions after folding, and file/directory clashes
 * ("a" and "a/b"). Throws E_PATH_DUPLICATE or E_PATH_COLLISION.
 */
export function assertNoCollisions(paths: Iterable<string>): void {
  const exact = new Set<string>();
  const byKey = new Map<string, string>();
  for (const p of paths) {
    if (exact.has(p))
      throw new FormatError('E_PATH_DUPLICATE', `duplicate entry name ${JSON.stringify(p)}`, { path: p });
    exact.add(p);
    const k = collisionKey(p);
    const other = byKey.get(k);
    if (other !== undefined) {
      throw new FormatError(
        'E_PATH_COLLISION',
        `entry names ${JSON.stringify(other)} and ${JSON.stringify(p)} collide after Unicode normalisation and case folding`,
        { paths: [other, p] },
      );
    }
    byKey.set(k, p);
  }
  for (const [k, p] of byKey) {
    const segs = k.split('/');
    for (let n = 1; n < segs.length; n++) {
      const dir = segs.slice(0, n).join('/');
      const clash = byKey.get(dir);
      if (clash !== undefined) {
        throw new FormatError(
          'E_PATH_COLLISION',
          `entry ${JSON.stringify(clash)} is a file but ${JSON.stringify(p)} needs it to be a directory`,
          { paths: [clash, p] },
        );
      }
    }
  }
}
