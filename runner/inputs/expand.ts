/**
 * Many input files from one argument: a folder (its regular, non-hidden files, not recursive) or a
 * pattern with `*` / `?` in its last path segment (matched in that folder, hidden files only when
 * the pattern starts with a dot). Results are sorted by name so runs are repeatable.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { UsageError } from '../../spec/errors.js';

export interface Expanded {
  files: string[];
  /** True for a folder or a pattern: the caller then treats the argument as many inputs even if one file matched. */
  many: boolean;
}

const isPattern = (s: string) => /[*?]/.test(s);

/**
 * The regular files (links followed) of `dir` whose names `keep` accepts. A file whose name is not
 * valid UTF-8 cannot be opened by the name Node decodes for it: it is listed all the same (its
 * directory entry says it is a file), so that it fails as its own input (E_NOT_FOUND) instead of
 * vanishing from the run. So is a symbolic link that leads nowhere (dangling, a loop): it fails as
 * its own input (E_NOT_FOUND, E_IO).
 */
async function regularFiles(dir: string, keep: (name: string) => boolean): Promise<string[]> {
  const entries = (await readdir(dir, { withFileTypes: true })).filter((d) => keep(d.name));
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: string[] = [];
  for (const d of entries) {
    const p = join(dir, d.name);
    const st = await stat(p).catch(() => null);
    if (st ? st.isFile() : d.isFile() || d.isSymbolicLink()) out.push(p);
  }
  return out;
}

function patternRegExp(pattern: string): RegExp {
  const body = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 's');
}

/** Whether `expandInputPath` would take `arg` as many inputs (a folder or a pattern), without listing them. */
export async function namesMany(arg: string): Promise<boolean> {
  const st = await stat(arg).catch(() => null);
  return st ? st.isDirectory() : isPattern(basename(arg));
}

/** Expands one path argument; a plain file path comes back as itself (existence is checked when it is read). */
export async function expandInputPath(arg: string): Promise<Expanded> {
  const st = await stat(arg).catch(() => null);
  if (st?.isDirectory()) {
    const files = await regularFiles(arg, (n) => !n.startsWith('.'));
    if (!files.length) throw new UsageError('E_NOT_FOUND', `no input files in the folder ${arg}`, { folder: arg });
    return { files, many: true };
  }
  const dir = dirname(arg);
  if (!st && isPattern(dir))
    throw new UsageError('E_USAGE', `only the last part of an input pattern may hold * or ? (${arg})`, {
      pattern: arg,
    });
  if (st || !isPattern(basename(arg))) return { files: [arg], many: false };
  const name = basename(arg);
  const re = patternRegExp(name);
  const files = await regularFiles(dir, (n) => re.test(n) && (name.startsWith('.') || !n.startsWith('.'))).catch(
    (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return [];
      throw e;
    },
  );
  if (!files.length) throw new UsageError('E_NOT_FOUND', `no files match ${arg}`, { pattern: arg });
  return { files, many: true };
}
