/** Runs the built CLI (dist/) as a child process without blocking the test worker, with a time limit. */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import type { CliRun } from './helpers/cli.js';

export function xpkgAsync(args: string[], o: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {}): Promise<CliRun & { signal: NodeJS.Signals | null }> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [resolve('bin/xpkg.js'), ...args],
      { encoding: 'utf8', env: { ...process.env, ...o.env }, timeout: o.timeoutMs ?? 120_000, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, ...(o.cwd ? { cwd: o.cwd } : {}) },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: number | string; signal?: NodeJS.Signals }) | null;
        const status = e ? (typeof e.code === 'number' ? e.code : -1) : 0;
        let json = null;
        if (args.includes('--json') && stdout.trim()) json = JSON.parse(stdout.trim().split('\n').pop()!);
        done({ status, stdout, stderr, json, signal: e?.signal ?? null });
      },
    );
  });
}
