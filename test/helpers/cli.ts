/** Runs the built CLI (dist/, built by test/global-setup.ts) as a user would. */
import { spawnSync } from 'node:child_process';
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
