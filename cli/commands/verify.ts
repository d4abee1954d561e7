import type { Command } from 'commander';
import { formatBytes, PackageReader } from '../../pack/index.js';
import { SigningError } from '../../spec/errors.js';
import { action } from '../framework.js';

interface VerifyOpts {
  allowUnsigned?: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command('verify')
    .description('check a package: strict archive structure, manifest, every digest (parallel), then signatures')
    .argument('<pkg>', 'package file')
    .option('--allow-unsigned', 'accept a package without a trusted signature (integrity only)')
    .option('--json', 'print one JSON document on stdout');
  action<[string], VerifyOpts>(cmd, async (io, pkg, opts) => {
    await using reader = await PackageReader.open(pkg);
    const report = await reader.verifyIntegrity({ onProgress: io.progress('verifying') });
    if (!opts.allowUnsigned) {
      if (!reader.signaturesBytes) throw new SigningError('E_SIG_MISSING', 'package is not signed; pass --trust <key.pub> for a signed one or --allow-unsigned to check integrity only');
      throw new SigningError('E_TRUST_UNTRUSTED', 'no trusted keys given; pass --trust <key.pub> or --allow-unsigned');
    }
    const m = reader.manifest;
    return {
      result: { ok: true, id: reader.id, name: m.name, version: m.version, sequence: m.sequence, integrity: report, signatures: { checked: false, reason: 'allow-unsigned' } },
      human: `OK ${m.name}@${m.version} ${reader.id}\n  integrity: ${report.files} files, ${formatBytes(report.bytes)} in ${report.ms.toFixed(0)} ms\n  signatures: not checked (--allow-unsigned)`,
    };
  });
}
