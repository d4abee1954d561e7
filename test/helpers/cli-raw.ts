/**
 * The built CLI run as a script runs it, its streams kept raw: for contract checks where the
 * `--json` helpers (test/helpers/cli.ts) would themselves decide what stdout is.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { resolve } from 'node:path';

export interface RawRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export const BIN = resolve('bin/xpkg.js');

/** `timeoutMs` bounds a command that would not end (a daemon that starts where it should refuse). */
export function xpkgRaw(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): RawRun {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** As xpkgRaw, without blocking the test worker (commands that take seconds). */
export async function xpkgRawAsync(args: string[], env: Record<string, string> = {}): Promise<RawRun> {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const [status, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  return { status, signal, stdout, stderr };
}

/**
 * stdout as the contract has it with `--json`: exactly one JSON document on one line, nothing else.
 * Throws (failing the test) otherwise.
 */
export function oneDocument(stdout: string): {
  result?: unknown;
  error?: { code: string; summary: string; detail?: any };
} {
  if (!stdout.endsWith('\n') || stdout.indexOf('\n') !== stdout.length - 1)
    throw new Error(`stdout is not one line: ${JSON.stringify(stdout.slice(0, 300))}`);
  const doc = JSON.parse(stdout);
  if (typeof doc !== 'object' || doc === null || Object.keys(doc).length !== 1 || !('result' in doc || 'error' in doc))
    throw new Error(`stdout is not {"result"} or {"error"}: ${stdout.slice(0, 300)}`);
  return doc;
}

/** A stack trace on stderr: user errors must not show one. */
export const STACK = /^\s+at .+[:(]/m;
