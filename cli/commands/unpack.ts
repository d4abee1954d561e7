import type { Command } from 'commander';
import { escapeLine } from '../../spec/terminal.js';
import { action, usage } from '../framework.js';

export function register(program: Command): void {
  const cmd = program
    .command('unpack')
    .description(
      'extract a package safely (verified bytes only; never follows links in the destination; never overwrites)',
    )
    .argument('<pkg>', 'package file')
    .requiredOption('-o, --output <dir>', 'destination folder (created if missing)')
    .option('--json', 'print one JSON document on stdout');
  action<[string], { output: string; json?: boolean }>(cmd, async (io, pkg, opts) => {
    if (!opts.output) throw usage('unpack needs -o <dir>');
    const { formatBytes, unpackPackage } = await import('../../pack/index.js');
    const r = await unpackPackage(pkg, opts.output, io.progress('unpacking'));
    return { result: r, human: `unpacked ${r.files.length} files (${formatBytes(r.bytes)}) into ${escapeLine(r.dir)}` };
  });
}
