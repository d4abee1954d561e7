/** Small I/O helpers for host detection: every probe reports why it found nothing, none throws. */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

export type Probe<T> = { ok: true; value: T } | { ok: false; reason: string };

function why(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'ENOENT') return 'not present';
  if (err?.code === 'EACCES' || err?.code === 'EPERM') return 'permission denied';
  return err?.message ?? String(e);
}

export async function readText(path: string, maxBytes = 1 << 20): Promise<Probe<string>> {
  try {
    const buf = await readFile(path);
    return { ok: true, value: buf.subarray(0, maxBytes).toString('utf8') };
  } catch (e) {
    return { ok: false, reason: `${path}: ${why(e)}` };
  }
}

export async function listDir(path: string): Promise<string[]> {
  try {
    return (await readdir(path)).sort();
  } catch {
    return [];
  }
}

export async function linkName(path: string): Promise<string | null> {
  try {
    const target = await readlink(path);
    return target.split('/').pop() ?? null;
  } catch {
    return null;
  }
}

/**
 * Runs a tool with a short timeout and no shell. A tool that is missing, hangs, or exits non-zero
 * becomes a reason, never an exception: detection must finish on any machine.
 */
export function runTool(file: string, args: string[], timeoutMs = 3000): Promise<Probe<string>> {
  // Spawning a missing tool costs as much as running one (~10 ms each, twice for nvidia-smi on
  // every `xpkg run`): look it up on PATH first. Windows resolves extensions itself, so it spawns.
  if (
    process.platform !== 'win32' &&
    !file.includes('/') &&
    !(process.env.PATH ?? '').split(delimiter).some((d) => d && existsSync(join(d, file)))
  ) {
    return Promise.resolve({ ok: false, reason: `${file} not found` });
  }
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { timeout: timeoutMs, maxBuffer: 1 << 20, windowsHide: true, env: { ...process.env, LC_ALL: 'C' } },
      (err, stdout, stderr) => {
        if (!err) return resolve({ ok: true, value: stdout });
        const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string };
        if (e.code === 'ENOENT') return resolve({ ok: false, reason: `${file} not found` });
        if (e.killed || e.signal)
          return resolve({ ok: false, reason: `${file} did not answer within ${timeoutMs} ms` });
        const detail = String(stderr || stdout)
          .trim()
          .split('\n')[0]
          ?.slice(0, 200);
        resolve({ ok: false, reason: `${file} failed (${e.code ?? 'error'})${detail ? `: ${detail}` : ''}` });
      },
    );
  });
}
