#!/usr/bin/env node
/** Entry point of the `xpkg` command. Each command lives in cli/commands/<name>.ts and registers itself. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { EXIT, UsageError } from '../spec/errors.js';
import { commands } from './commands/index.js';
import { finish, finished, makeIo, refuseRepeated } from './framework.js';

/**
 * xpkg's own version, from the package.json above this file (cli/ in the sources, dist/cli/ when
 * built): never `npm_package_version`, which is the version of whatever project runs `npm run`.
 */
export function ownVersion(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)), i = 0; i < 4; dir = dirname(dir), i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'xpkg' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // no package.json at this level
    }
  }
  return 'unknown';
}

/**
 * `--help` / `--version` with `--json`: their text is held here and printed as one
 * `{"result": {"help"|"version": …}}` document, so stdout stays one JSON document.
 */
let heldOut: string | undefined;
/** Whether commander wrote to stdout: help asked for (`xpkg help run`) goes there, help after a mistake to stderr. */
let wroteOut = false;

export function buildProgram(json = false): Command {
  heldOut = json ? '' : undefined;
  wroteOut = false;
  const program = new Command('xpkg')
    .description('Build, sign, verify and run .xpkg model packages')
    .version(ownVersion())
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({
      writeOut: (s) => {
        wroteOut = true;
        if (heldOut !== undefined) heldOut += s;
        else process.stdout.write(s);
      },
      writeErr: (s) => process.stderr.write(s),
    });
  for (const register of commands) register(program);
  program.commands.forEach((c) => c.exitOverride());
  refuseRepeated(program);
  return program;
}

/**
 * Whether `--json` was asked for, for the documents main writes itself (usage errors, help,
 * version, uncaught errors): before a `--` only (after it `--json` is an operand, such as a file
 * name), and `--json=…` too, which commander refuses: that script still reads one JSON document.
 */
export function jsonAsked(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).some((a) => a === '--json' || a.startsWith('--json='));
}

/**
 * A reader that went away (`xpkg inspect … --json | head -c 100`): what is left of stdout has nowhere
 * to go, so the command ends at once, quietly, with 141 (128 + SIGPIPE), the status a shell gives any
 * other program killed by a closed pipe (Node ignores SIGPIPE, so it is set by hand). stdout that
 * cannot be written otherwise (a full disk: ENOSPC, EIO) ends with E_IO's status and one line on
 * stderr, never a stack. stderr errors are dropped: there is nowhere left to report them, and the
 * result on stdout still counts.
 */
export function endOnClosedPipe(): void {
  const closed = (e: NodeJS.ErrnoException) => e.code === 'EPIPE' || e.code === 'ERR_STREAM_DESTROYED';
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (closed(e)) process.exit(EXIT.closedPipe);
    process.stderr.write(`xpkg: error E_IO: cannot write to stdout: ${e.code ?? e.message}\n`);
    process.exit(EXIT.io);
  });
  process.stderr.on('error', () => {});
}

/**
 * An error no command caught (a throw in a timer or stream callback, a rejected promise nobody
 * awaited) still ends in the one exit handler: with `--json` one `{"error"}` document (E_INTERNAL)
 * instead of Node's stack on stderr and nothing on stdout. After the result was out, one line on
 * stderr, and the status is no longer 0.
 */
function endOnUncaught(json: boolean): void {
  const fail = (e: unknown) => {
    if (!finished()) finish(makeIo(json), { error: e });
    else {
      process.stderr.write(`xpkg: error E_INTERNAL after the result: ${e instanceof Error ? e.message : String(e)}\n`);
      if (!process.exitCode) process.exitCode = EXIT.internal;
    }
    process.exit();
  };
  process.on('uncaughtException', fail);
  process.on('unhandledRejection', fail);
}

export async function main(argv: string[]): Promise<void> {
  endOnClosedPipe();
  const json = jsonAsked(argv);
  endOnUncaught(json);
  const program = buildProgram(json);
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      if (
        e.code === 'commander.helpDisplayed' ||
        e.code === 'commander.version' ||
        (e.code === 'commander.help' && wroteOut)
      ) {
        const text = heldOut ?? '';
        const result = e.code === 'commander.version' ? { version: text.trim() } : { help: text };
        if (json) finish(makeIo(true), { result, human: '' });
        else process.exitCode = 0;
        return;
      }
      // no command given (`xpkg`, `xpkg gpu`): the help went to stderr; that is a usage error
      if (e.code === 'commander.help') {
        finish(makeIo(json), { error: new UsageError('E_USAGE', 'no command given', { commander: e.code }) });
        return;
      }
      finish(makeIo(json), {
        error: new UsageError('E_USAGE', e.message.replace(/^error: /, ''), { commander: e.code }),
      });
      return;
    }
    finish(makeIo(json), { error: e });
  }
}
