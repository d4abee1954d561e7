#!/usr/bin/env node
/** Entry point of the `xpkg` command. Each command lives in cli/commands/<name>.ts and registers itself. */
import { Command, CommanderError } from 'commander';
import { finish, makeIo } from './framework.js';
import { UsageError } from '../spec/errors.js';
import { commands } from './commands/index.js';

export function buildProgram(): Command {
  const program = new Command('xpkg')
    .description('Build, sign, verify and run .xpkg model packages')
    .version(process.env.npm_package_version ?? '0.1.0')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: (s) => process.stderr.write(s) });
  for (const register of commands) register(program);
  program.commands.forEach((c) => c.exitOverride());
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') {
        process.exitCode = 0;
        return;
      }
      finish(makeIo(argv.includes('--json')), { error: new UsageError('E_USAGE', e.message.replace(/^error: /, ''), { commander: e.code }) });
      return;
    }
    finish(makeIo(argv.includes('--json')), { error: e });
  }
}
