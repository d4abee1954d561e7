/** `xpkg explain <pkg>`: every variant of every model, chosen or rejected, and why, for this (or a given) host. */
import type { Command } from 'commander';
import { action } from '../framework.js';
import { precisionOption } from './run.js';

interface ExplainOpts {
  host?: string;
  variant?: string[];
  precision?: string;
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
    // as run and bench: an unknown precision is E_USAGE, not a preference that matches nothing
    const precision = opts.precision !== undefined ? precisionOption(opts.precision) : undefined;
    const [
      { PackageReader },
      { explainVariants, ONE_SHOT_PRECISION, selectVariants },
      { resolveHost },
      { shapeSummary },
      { absentVariants },
    ] = await Promise.all([
      import('../../pack/reader.js'),
      import('../../runner/select.js'),
      import('../../runner/host.js'),
      import('../../runner/pipeline/shapes.js'),
      import('../../spec/partial.js'),
    ]);
    await using reader = await PackageReader.open(pkg);
    const host = await resolveHost(opts.host !== undefined ? { host: opts.host } : {});
    const absent = absentVariants(reader.manifest, reader.absent);
    const { result, human, selection } = explainVariants(reader.manifest, host, {
      ...(opts.variant ? { variant: opts.variant } : {}),
      ...(precision ? { precision } : {}),
      absent,
    });
    // `xpkg run` of files named one by one puts fp32 first on GPUs (runner/select-rules.ts
    // ONE_SHOT_PRECISION): where that picks other variants, say which
    const oneShot: Record<string, string> = {};
    if (!opts.variant && !precision) {
      const other = selectVariants(reader.manifest, host, { precision: ONE_SHOT_PRECISION, absent });
      for (const m of other.models) {
        const id = m.chosen?.variant.id;
        const usual = selection.models.find((x) => x.model === m.model)?.chosen?.variant.id;
        if (id && id !== usual) oneShot[m.model] = id;
      }
    }
    const oneShotLine = Object.keys(oneShot).length
      ? `\n\none-shot runs (\`xpkg run\` of files named one by one) put fp32 first on GPUs: ${Object.entries(oneShot)
          .map(([m, v]) => `${m} runs ${v}`)
          .join(', ')}`
      : '';
    // the input shapes a GPU session is pre-warmed at in open (runner/prewarm.ts)
    const shapes = shapeSummary(reader.manifest);
    const shapeLines = Object.entries(shapes).map(
      ([m, s]) => `  ${m}: ${s.shapes === null ? `any (${s.open})` : `${s.shapes} shape${s.shapes === 1 ? '' : 's'}`}`,
    );
    return {
      result: {
        package: { name: reader.manifest.name, version: reader.manifest.version, id: reader.id },
        ...result,
        ...(Object.keys(oneShot).length ? { oneShot } : {}),
        shapes,
      },
      human: `${reader.manifest.name}@${reader.manifest.version}\n${human}${oneShotLine}${shapeLines.length ? `\n\ninput shapes the pipeline can make (pre-warmed on a GPU up to 32 per model):\n${shapeLines.join('\n')}` : ''}`,
    };
  });
}
