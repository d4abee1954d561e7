/** Runs the built CLI (dist/, built by test/global-setup.ts) as a user would. */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { xpkgRawAsync } from './cli-raw.js';

export interface CliRun {
  status: number;
  stdout: string;
  stderr: string;
  json: { result?: any; error?: { code: string; summary: string; detail?: unknown } } | null;
}

function outcome(args: string[], status: number | null, stdout: string, stderr: string): CliRun {
  let json = null;
  if (args.includes('--json')) {
    const lines = stdout.trim().split('\n');
    json = JSON.parse(lines[lines.length - 1]);
    if (lines.length !== 1) throw new Error(`--json printed ${lines.length} lines on stdout`);
  }
  return { status: status ?? -1, stdout, stderr, json };
}

export function xpkg(args: string[], env: Record<string, string> = {}, input?: string, cwd?: string): CliRun {
  const r = spawnSync(process.execPath, [resolve('bin/xpkg.js'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    input,
    ...(cwd ? { cwd } : {}),
  });
  return outcome(args, r.status, r.stdout, r.stderr);
}

/**
 * `xpkg` as a child process without blocking the test worker: for commands that take seconds (run,
 * bench), where a blocked worker misses vitest's RPC deadlines. With `--json`, `lines` holds every
 * JSON line (many inputs print JSON Lines) and `json` the document when exactly one was printed.
 */
export async function xpkgAsync(args: string[], env: Record<string, string> = {}): Promise<CliRun & { lines: any[] }> {
  const { status, stdout, stderr } = await xpkgRawAsync(args, env);
  const lines = args.includes('--json')
    ? stdout
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l))
    : [];
  return { status: status ?? -1, stdout, stderr, json: lines.length === 1 ? lines[0] : null, lines };
}
