/** `xpkg explain <pkg>`: every variant of every model, chosen or rejected, and why, for this (or a given) host. */
import type { Command } from 'commander';
import type { Precision } from '../../runner/index.js';
import { action } from '../framework.js';

interface ExplainOpts {
  host?: string;
  variant?: string[];
  precision?: Precision;
  json?: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command('explain')
    .description('list every variant as chosen / candidate / rejected for this host, with the reasons')
    .argument('<pkg>', 'package file')
    .option('--host <file>', 'a host profile (JSON) instead of detecting this machine (same as XPKG_HOST)')
    .option('--variant <id...>', 'force a variant (fails clearly if the host cannot run it)')
    .option('--precision <p>', 'prefer this precision everywhere (fp32, fp16, bf16, int8, …)')
    .option('--json', 'print one JSON document on stdout');
  action<[string], ExplainOpts>(cmd, async (_io, pkg, opts) => {
    const [{ PackageReader }, { explainVariants }, { resolveHost }, { shapeSummary }, { absentVariants }] =
      await Promise.all([
        import('../../pack/reader.js'),
        import('../../runner/select.js'),
        import('../../runner/host.js'),
        import('../../runner/pipeline/shapes.js'),
        import('../../spec/partial.js'),
      ]);
    await using reader = await PackageReader.open(pkg);
    const host = await resolveHost(opts.host !== undefined ? { host: opts.host } : {});
    const { result, human } = explainVariants(reader.manifest, host, {
      ...(opts.variant ? { variant: opts.variant } : {}),
      ...(opts.precision ? { precision: opts.precision } : {}),
      absent: absentVariants(reader.manifest, reader.absent),
    });
    // the input shapes a GPU session is pre-warmed at in open (runner/prewarm.ts)
    const shapes = shapeSummary(reader.manifest);
    const shapeLines = Object.entries(shapes).map(
      ([m, s]) => `  ${m}: ${s.shapes === null ? `any (${s.open})` : `${s.shapes} shape${s.shapes === 1 ? '' : 's'}`}`,
    );
    return {
      result: {
        package: { name: reader.manifest.name, version: reader.manifest.version, id: reader.id },
        ...result,
        shapes,
      },
      human: `${reader.manifest.name}@${reader.manifest.version}\n${human}${shapeLines.length ? `\n\ninput shapes the pipeline can make (pre-warmed on a GPU up to 32 per model):\n${shapeLines.join('\n')}` : ''}`,
    };
  });
}
