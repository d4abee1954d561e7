import type { Command } from 'commander';
import { escapeLine } from '../../spec/terminal.js';
import { action, usage } from '../framework.js';

interface KeygenOpts {
  output?: string;
  /** commander sets false for --no-passphrase. */
  passphrase?: boolean;
  force?: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command('keygen')
    .description(
      'create an ed25519 signing key: <prefix>.key (secret, passphrase-encrypted, mode 0600) and <prefix>.pub (share this)',
    )
    .requiredOption('-o, --output <prefix>', 'path prefix of the two key files')
    .option(
      '--no-passphrase',
      'store the secret key unencrypted (CI); otherwise the passphrase comes from XPKG_PASSPHRASE or a prompt',
    )
    .option('--force', 'replace existing key files')
    .option('--json', 'print one JSON document on stdout');
  action<[], KeygenOpts>(cmd, async (_io, opts) => {
    if (!opts.output) throw usage('keygen needs -o <prefix>');
    // a prefix that is a folder (`-o keys/`, `-o .`) would write the hidden files `.key` and `.pub`
    if (/(^|[/\\])(\.{1,2})?$/.test(opts.output))
      throw usage(
        `-o ${opts.output} names a folder; give a file prefix such as ${opts.output.replace(/[/\\]?$/, '/signing')}`,
        {
          output: opts.output,
        },
      );
    const { keygen } = await import('../../signing/index.js');
    const r = await keygen(opts.output, {
      passphrase: opts.passphrase === false ? null : undefined,
      force: Boolean(opts.force),
    });
    return {
      result: {
        keyid: r.keyid,
        publicKeyPath: r.publicKeyPath,
        secretKeyPath: r.secretKeyPath,
        encrypted: r.encrypted,
      },
      human: [
        `wrote ${escapeLine(r.secretKeyPath)} (secret, ${r.encrypted ? 'encrypted' : 'NOT encrypted'}, mode 0600) and ${escapeLine(r.publicKeyPath)}`,
        `  key id ${r.keyid}`,
        `sign:   xpkg sign <pkg> --key ${escapeLine(r.secretKeyPath)}`,
        `verify: xpkg verify <pkg> --trust ${escapeLine(r.publicKeyPath)}`,
      ].join('\n'),
    };
  });
}
