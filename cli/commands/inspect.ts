import type { Command } from 'commander';
import { action } from '../framework.js';

export function register(program: Command): void {
  const cmd = program
    .command('inspect')
    .description('show name, version, id, variants and their requirements, pipeline, files and signature status')
    .argument('<pkg>', 'package file')
    .option('--json', 'print one JSON document on stdout');
  action<[string], { json?: boolean }>(cmd, async (_io, pkg) => {
    const { inspectPackage, renderInspect } = await import('../../pack/index.js');
    const { decodeEnvelope } = await import('../../signing/index.js');
    const r = await inspectPackage(pkg, { decodeEnvelope });
    return { result: r, human: renderInspect(r) };
  });
}
