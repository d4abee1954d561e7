import type { Command } from 'commander';
import { escapeLine } from '../../spec/terminal.js';
import { action, fileOutputOption, usage } from '../framework.js';

interface SignOpts {
  key?: string;
  output?: string;
  force?: boolean;
  json?: boolean;
}

const short = (keyid: string) => `${keyid.slice(0, 16)}…`;

export function register(program: Command): void {
  const cmd = program
    .command('sign')
    .description(
      "add your signature to a package (over its canonical manifest; the package id does not change; re-signing replaces your key's signature)",
    )
    .argument('<pkg>', 'package file')
    .requiredOption(
      '-k, --key <file.key>',
      'secret key file from xpkg keygen (passphrase from XPKG_PASSPHRASE or a prompt)',
    )
    .option('-o, --output <file>', 'write the signed package here instead of replacing <pkg> (atomically)')
    .option('--force', 'replace an existing --output file')
    .option('--json', 'print one JSON document on stdout');
  action<[string], SignOpts>(cmd, async (io, pkg, opts) => {
    if (!opts.key) throw usage('sign needs --key <file.key>');
    fileOutputOption(opts.output, 'signed package');
    const { sign } = await import('../../signing/index.js');
    const r = await sign(pkg, {
      key: opts.key,
      out: opts.output,
      force: Boolean(opts.force),
      onProgress: io.progress('checking'),
    });
    const lines = [
      `signed ${escapeLine(r.path)} with key ${short(r.keyid)}${r.replaced ? ' (replaced its earlier signature)' : ''}`,
      `  id         ${r.packageId} (unchanged)`,
      `  signatures ${r.signatures.length}: ${r.signatures.map(short).join(', ')}`,
    ];
    if (r.dropped.length)
      lines.push(
        `  dropped ${r.dropped.length} signature(s) made for another package id: ${r.dropped.map(short).join(', ')}`,
      );
    return { result: r, human: lines.join('\n') };
  });
}
