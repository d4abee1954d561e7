import type { Command } from 'commander';
import { escapeLine } from '../../spec/terminal.js';
import { action, fileOutputOption, usage } from '../framework.js';

export function register(program: Command): void {
  const cmd = program
    .command('pack')
    .description('build a package from a folder holding xpkg.json and the files it references (deterministic)')
    .argument('<dir>', 'source folder')
    .option('-o, --output <file>', 'package to write (default: <name>-<version>.xpkg in the current folder)')
    .option('--force', 'replace an existing output file (never one of the package folder)')
    .option('--json', 'print one JSON document on stdout');
  action<[string], { output?: string; force?: boolean; json?: boolean }>(cmd, async (io, dir, opts) => {
    if (!dir) throw usage('pack needs a source folder');
    const { formatBytes, packFolder, readManifestSource } = await import('../../pack/index.js');
    let out = fileOutputOption(opts.output, 'package');
    if (!out) {
      const src = await readManifestSource(dir);
      out = `${src.name.replace(/^@/, '').replace('/', '-')}-${src.version}.xpkg`;
    }
    const r = await packFolder(dir, out, { force: Boolean(opts.force), onProgress: io.progress(`packing ${out}`) });
    return {
      result: {
        path: r.path,
        id: r.id,
        size: r.size,
        files: r.files,
        payloadBytes: r.payloadBytes,
        name: r.manifest.name,
        version: r.manifest.version,
      },
      human: `packed ${r.manifest.name}@${r.manifest.version} → ${escapeLine(r.path)}\n  id   ${r.id}\n  size ${formatBytes(r.size)} (${r.files} files)`,
    };
  });
}
