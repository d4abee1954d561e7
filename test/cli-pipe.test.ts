/**
 * stdout that cannot take the output: a reader that left before the command wrote (`| head -c`,
 * `| true`) ends every command quietly with 141 (128 + SIGPIPE); a stdout that fails otherwise (a full
 * disk) ends with E_IO's status and one line on stderr. Never a stack trace. Through the built CLI.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { EXIT } from '../spec/errors.js';

vi.setConfig({ testTimeout: 120_000 });

const BIN = resolve('bin/xpkg.js');
const KEY = 'fixtures/keys/test.pub';
const PKG = 'fixtures/dist/detector.xpkg';
const STACK = /EPIPE|ENOSPC|Unhandled|\n\s+at .*(\(|node:)/;

/** Runs the CLI with stdout a pipe whose reader is gone before the command writes anything. */
function runClosed(args: string[]): Promise<{ code: number | null; err: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, XPKG_RELAUNCH: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.destroy();
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.on('error', fail);
    child.on('close', (code) => done({ code, err }));
  });
}

describe('a closed stdout ends every command with 141 and no stack trace', () => {
  const cases: [string, string[]][] = [
    ['inspect --json', ['inspect', PKG, '--json']],
    ['inspect', ['inspect', PKG]],
    ['verify --json', ['verify', PKG, '--trust', KEY, '--json']],
    ['explain', ['explain', PKG]],
    ['host --json', ['host', '--json']],
    ['--help', ['--help']],
    ['--version', ['--version']],
    ['an error document', ['inspect', 'no/such.xpkg', '--json']],
    ['a usage error document', ['frobnicate', '--json']],
  ];
  for (const [name, args] of cases)
    it(name, async () => {
      const r = await runClosed(args);
      expect(r.err).not.toMatch(STACK);
      expect(r.code).toBe(EXIT.closedPipe);
    });
});

describe.skipIf(!existsSync('/dev/full'))('a stdout that fails to write (a full disk)', () => {
  it('ends with E_IO and one line on stderr, no stack trace', async () => {
    for (const args of [['inspect', PKG, '--json'], ['--help']]) {
      const fd = openSync('/dev/full', 'w');
      const r = await new Promise<{ code: number | null; err: string }>((done, fail) => {
        const child = spawn(process.execPath, [BIN, ...args], {
          env: { ...process.env, XPKG_RELAUNCH: '0' },
          stdio: ['ignore', fd, 'pipe'],
        });
        let err = '';
        child.stderr?.on('data', (d: Buffer) => (err += d));
        child.on('error', fail);
        child.on('close', (code) => done({ code, err }));
      });
      closeSync(fd);
      expect(r.err).toMatch(/E_IO/);
      expect(r.err).not.toMatch(/\n\s+at /);
      expect(r.code).toBe(EXIT.io);
    }
  });
});
