/** Runs the built CLI (dist/, built by test/global-setup.ts) as a user would. */
import { spawn, spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

export interface CliRun {
  status: number;
  stdout: string;
  stderr: string;
  json: { result?: any; error?: { code: string; summary: string; detail?: unknown } } | null;
}

export function xpkg(args: string[], env: Record<string, string> = {}, input?: string): CliRun {
  const r = spawnSync(process.execPath, [resolve('bin/xpkg.js'), ...args], { encoding: 'utf8', env: { ...process.env, ...env }, input });
  let json = null;
  if (args.includes('--json')) {
    const lines = r.stdout.trim().split('\n');
    json = JSON.parse(lines[lines.length - 1]);
    if (lines.length !== 1) throw new Error(`--json printed ${lines.length} lines on stdout`);
  }
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, json };
}

/**
 * The CLI as a child process without blocking the test worker (a long spawnSync starves vitest's
 * RPC on a loaded machine); stdout is split into JSON lines when `--json` is given.
 */
export function xpkgAsync(args: string[]): Promise<{ status: number; stdout: string; stderr: string; lines: any[] }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [resolve('bin/xpkg.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', fail);
    child.on('close', (status) => {
      const lines = args.includes('--json') ? stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l)) : [];
      done({ status: status ?? -1, stdout, stderr, lines });
    });
  });
}
