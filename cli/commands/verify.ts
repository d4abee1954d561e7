/** `xpkg verify`: strict archive + integrity checks and signatures, through one open file (signing/verify.ts). */
import type { Command } from 'commander';
import { escapeLine } from '../../spec/terminal.js';
import { action, intOption } from '../framework.js';

interface VerifyOpts {
  trust?: string[];
  trustDir?: string;
  threshold?: string;
  allowUnsigned?: boolean;
  allowDowngrade?: boolean;
  stateDir?: string;
  json?: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command('verify')
    .description(
      'check a package: strict archive structure, manifest, signatures and trust policy, every digest (parallel)',
    )
    .argument('<pkg>', 'package file')
    .option('--trust <file.pub>', 'trust this public key (repeatable)', (v: string, prev: string[] = []) => [
      ...prev,
      v,
    ])
    .option('--trust-dir <dir>', 'trust every *.pub in this folder; revoked.txt there lists revoked key ids')
    .option('--threshold <n>', 'valid signatures by distinct trusted keys required (default 1)')
    .option('--allow-unsigned', 'accept a package without a trusted signature (integrity is still checked)')
    .option(
      '--allow-downgrade',
      'accept a lower sequence than already accepted for the package name from a trusted key (reported)',
    )
    .option(
      '--state-dir <dir>',
      'anti-rollback state folder (default $XPKG_STATE_DIR, $XDG_STATE_HOME/xpkg, ~/.local/state/xpkg)',
    )
    .option('--json', 'print one JSON document on stdout');
  action<[string], VerifyOpts>(cmd, async (io, pkg, opts) => {
    const [{ verify }, { renderVerifyResult }] = await Promise.all([
      import('../../signing/verify.js'),
      import('../../signing/render.js'),
    ]);
    const r = await verify(
      pkg,
      {
        trust: opts.trust ?? [],
        trustDir: opts.trustDir,
        threshold: intOption(opts.threshold, 'threshold'),
        allowUnsigned: Boolean(opts.allowUnsigned),
        allowDowngrade: Boolean(opts.allowDowngrade),
        stateDir: opts.stateDir,
      },
      { onProgress: io.progress('verifying') },
    );
    // a key's source is a path the user gave or a file name in --trust-dir: one line each
    const signers = r.signatures.signers.map((k) => ({ ...k, source: escapeLine(k.source) }));
    return { result: r, human: renderVerifyResult({ ...r, signatures: { ...r.signatures, signers } }) };
  });
}
