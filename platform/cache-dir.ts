/**
 * Where xpkg keeps caches: `XPKG_CACHE` when set, else the platform's per-user cache folder
 * (`$XDG_CACHE_HOME/xpkg` or `~/.cache/xpkg` on Linux, `~/Library/Caches/xpkg` on macOS,
 * `%LOCALAPPDATA%\xpkg\cache` on Windows). Everything under it can be deleted at any time.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

export const CACHE_ENV = 'XPKG_CACHE';

export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env[CACHE_ENV]) return env[CACHE_ENV];
  if (process.platform === 'win32')
    return join(env.LOCALAPPDATA ?? join(homedir(), 'AppData', 'Local'), 'xpkg', 'cache');
  if (process.platform === 'darwin') return join(homedir(), 'Library', 'Caches', 'xpkg');
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'xpkg');
}
