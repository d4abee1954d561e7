/**
 * Distribution through OCI registries (spec/OCI.md): `push`, `pull`, `export`, `import`, `cache`.
 * Each action imports its implementation when it runs.
 */
import type { Command } from 'commander';
import { escapeLine } from '../../spec/terminal.js';
import { action, usage } from '../framework.js';

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

interface SelectFlags {
  variant?: string[];
  host?: string;
}

/** `--variant` ids, or `--host auto|profile.json`: the variants this host can run; neither: the whole package. */
async function variantChooser(o: SelectFlags) {
  if (o.variant?.length && o.host !== undefined)
    throw usage('--variant and --host exclude each other (the variants named, or those a host can run)');
  if (o.variant?.length) return new Set(o.variant);
  if (o.host === undefined) return undefined;
  const [{ resolveHost }, { variantsForHost }] = await Promise.all([
    import('../../runner/host.js'),
    import('../../runner/reference.js'),
  ]);
  const host = await resolveHost(o.host === 'auto' ? {} : { host: o.host });
  return (m: Parameters<typeof variantsForHost>[0]) => variantsForHost(m, host, {});
}

/**
 * `-o`: never one of the files the command reads (`import l.tar -o l.tar` replaced the layout with
 * the package), compared as real paths; an existing file only with --force. Both E_USAGE, before any
 * work is done.
 */
async function checkOutput(
  output: string | undefined,
  force: boolean | undefined,
  inputs: string[],
  flag = '-o',
): Promise<void> {
  if (output === undefined) return;
  const [{ realpath, stat }, { basename, dirname, join, resolve }] = await Promise.all([
    import('node:fs/promises'),
    import('node:path'),
  ]);
  const real = async (p: string) =>
    realpath(p).catch(async () =>
      join(await realpath(dirname(resolve(p))).catch(() => dirname(resolve(p))), basename(p)),
    );
  const out = await real(output);
  for (const i of inputs)
    if ((await real(i)) === out) throw usage(`${flag} ${output} is ${i}, which this command reads`, { path: output });
  if (
    !force &&
    (await stat(output).then(
      () => true,
      () => false,
    ))
  )
    throw usage(`${output} already exists (pass --force to replace it)`, { path: output });
}

/** Runs a command that talks to registries, then frees idle connections so the process exits at once. */
async function networked<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } finally {
    (await import('../../oci/registry.js')).closeConnections();
  }
}

export function register(program: Command): void {
  const push = program
    .command('push')
    .description(
      'publish a package to an OCI registry (one layer per file; blobs the registry has are skipped or mounted)',
    )
    .argument('<pkg>', 'package file')
    .argument('<ref>', 'host[:port]/repository[:tag], or a short name with XPKG_REGISTRY')
    .option('--mount-from <repo>', 'another repository of the same registry to mount shared blobs from')
    .option('--json', 'print one JSON document on stdout');
  action<[string, string], { mountFrom?: string; json?: boolean }>(push, (io, pkg, ref, o) =>
    networked(async () => {
      const { push: run } = await import('../../oci/push.js');
      const r = await run(pkg, ref, {
        ...(o.mountFrom ? { mountFrom: o.mountFrom } : {}),
        onProgress: io.progress('pushing'),
      });
      const count = (k: string) => r.blobs.filter((b) => b.outcome === k).length;
      return {
        result: r,
        human: `pushed ${r.reference}@${r.digest}\n${count('uploaded')} uploaded (${mib(r.uploadedBytes)}), ${count('mounted')} mounted, ${count('exists')} already there`,
      };
    }),
  );

  const pull = program
    .command('pull')
    .description(
      'fetch a package from an OCI registry into the cache (whole, or only what this host can run), digests checked',
    )
    .argument('<ref>', 'host[:port]/repository[:tag|@sha256:…], or a short name with XPKG_REGISTRY')
    .option('-o, --output <file>', 'also write the package here')
    .option('--variant <id...>', 'only these variants (a partial package)')
    .option('--host <auto|profile.json>', 'only the variants this host (or profile) can run (a partial package)')
    .option('--force', 'replace an existing output file')
    .option('--json', 'print one JSON document on stdout');
  action<[string], SelectFlags & { output?: string; force?: boolean; json?: boolean }>(pull, (io, ref, o) =>
    networked(async () => {
      const { pull: run, copyOut } = await import('../../oci/pull.js');
      await checkOutput(o.output, o.force, o.host && o.host !== 'auto' ? [o.host] : []);
      const variants = await variantChooser(o);
      const r = await run(ref, { ...(variants ? { variants } : {}), onProgress: io.progress('pulling') });
      if (o.output) await copyOut(r.path, o.output);
      const kind = r.absent.length ? `partial package (${r.absent.length} files left out)` : 'whole package';
      return {
        result: { ...r, ...(o.output ? { output: o.output } : {}) },
        human: `${r.name}@${r.version} ${kind}, ${mib(r.size)}: ${escapeLine(o.output ?? r.path)}\n${mib(r.transfer.downloaded)} downloaded, ${mib(r.transfer.reused)} from the cache${r.offline ? ' (registry unreachable: cached resolution used)' : ''}`,
      };
    }),
  );

  const exp = program
    .command('export')
    .description(
      'write a package (file or reference) as an OCI image layout, a folder or a .tar, for air-gapped transfer',
    )
    .argument('<pkg>', 'package file, or a reference to pull first')
    .requiredOption('--oci-layout <dir|tar>', 'destination folder, or a file ending in .tar')
    .option('--tag <tag>', 'tag recorded in the layout (default latest)')
    .option('--force', 'replace an existing .tar')
    .option('--json', 'print one JSON document on stdout');
  action<[string], { ociLayout: string; tag?: string; force?: boolean; json?: boolean }>(exp, (io, pkg, o) =>
    networked(async () => {
      const [{ exportLayout }, { isReference }] = await Promise.all([
        import('../../oci/layout.js'),
        import('../../oci/ref.js'),
      ]);
      // a .tar is one file, replaced only with --force (as pull/import -o); a folder layout takes
      // another manifest beside the ones it holds
      if (o.ociLayout.endsWith('.tar'))
        await checkOutput(o.ociLayout, o.force, isReference(pkg) ? [] : [pkg], '--oci-layout');
      const file = isReference(pkg) ? (await (await import('../../oci/pull.js')).pull(pkg)).path : pkg;
      const r = await exportLayout(file, o.ociLayout, o.tag);
      return { result: r, human: `exported ${r.digest} (${r.blobs} blobs, ${mib(r.bytes)}) to ${escapeLine(r.path)}` };
    }),
  );

  const imp = program
    .command('import')
    .description('read a package from an OCI image layout (folder or .tar) into the cache, digests checked')
    .argument('<layout>', 'layout folder or .tar')
    .option('--tag <tag>', 'which tagged manifest (default: the only one)')
    .option('-o, --output <file>', 'also write the package here')
    .option('--as <ref>', 'record it under this reference, so running by reference works offline')
    .option('--variant <id...>', 'only these variants (a partial package)')
    .option('--host <auto|profile.json>', 'only the variants this host can run')
    .option('--force', 'replace an existing output file')
    .option('--json', 'print one JSON document on stdout');
  action<[string], SelectFlags & { tag?: string; output?: string; as?: string; force?: boolean; json?: boolean }>(
    imp,
    async (io, src, o) => {
      await checkOutput(o.output, o.force, [src, ...(o.host && o.host !== 'auto' ? [o.host] : [])]);
      const [{ importLayout }, { Cache }, { copyOut }, ref] = await Promise.all([
        import('../../oci/layout.js'),
        import('../../oci/cache.js'),
        import('../../oci/pull.js'),
        import('../../oci/ref.js'),
      ]);
      // a bad --as is refused before the import, not after it filled the cache
      const as = o.as === undefined ? undefined : ref.formatReference(ref.parseReference(o.as));
      const cache = await Cache.open();
      const variants = await variantChooser(o);
      const r = await importLayout(cache, src, o.tag, {
        ...(variants ? { variants } : {}),
        onProgress: io.progress('importing'),
      });
      if (as) await cache.setRef(as, r.digest);
      if (o.output) await copyOut(r.path, o.output);
      return {
        result: { ...r, ...(o.output ? { output: o.output } : {}) },
        human: `${r.name}@${r.version}: ${escapeLine(o.output ?? r.path)}`,
      };
    },
  );

  const cache = program
    .command('cache')
    .description('the package cache ($XPKG_CACHE, default in the user cache folder): ls, gc, verify')
    .argument('<action>', 'ls | gc | verify')
    .option('--all', 'gc: remove everything, references included')
    .option('--json', 'print one JSON document on stdout');
  action<[string], { all?: boolean; json?: boolean }>(cache, async (_io, what, o) => {
    // checked before the cache is opened (which creates its folders): a typo changes nothing
    if (!['ls', 'gc', 'verify'].includes(what))
      throw usage(`unknown cache action ${JSON.stringify(what)} (ls, gc or verify)`);
    if (o.all && what !== 'gc') throw usage(`--all goes with gc only, not ${what}`);
    const { Cache } = await import('../../oci/cache.js');
    const c = await Cache.open();
    if (what === 'ls') {
      const r = await c.list();
      const lines = [`${escapeLine(r.root)}: ${r.packages.length} packages, ${r.blobs} blobs, ${mib(r.bytes)}`];
      for (const x of r.references)
        lines.push(
          `${x.reference}  ${x.digest.slice(0, 19)}  ${x.cached.length ? x.cached.join(' ') : '(not pulled)'}`,
        );
      for (const p of r.packages)
        lines.push(
          `${escapeLine(p.file)}  ${p.name}@${p.version}  ${mib(p.size)}${p.absent?.length ? `  partial: ${p.absent.length} files absent` : ''}`,
        );
      return { result: r, human: lines.join('\n') };
    }
    if (what === 'gc') {
      const r = await c.gc({ all: Boolean(o.all) });
      return { result: r, human: `removed ${r.removed.length} items, freed ${mib(r.freedBytes)}` };
    }
    if (what === 'verify') {
      const r = await c.verify();
      if (r.problems.length) {
        const { OciError } = await import('../../spec/errors.js');
        throw new OciError(
          'E_OCI_CACHE',
          `${r.problems.length} damaged items in the cache (run xpkg cache gc --all, or pull again)`,
          r,
        );
      }
      return { result: r, human: `${r.packages} packages and ${r.blobs} blobs verified` };
    }
    throw usage(`unknown cache action ${JSON.stringify(what)} (ls, gc or verify)`);
  });
}
