/** `xpkg run` and `xpkg bench`: verify, select, load and run a package on inputs. */
import type { Command } from 'commander';
import type { PeerDirectory } from '../../fabric/contract.js';
import { renderSelection, selectionJson } from '../../runner/explain.js';
import type { RunnerOptions } from '../../runner/runner.js';
import type { Precision } from '../../runner/select-rules.js';
import { RunnerError } from '../../spec/errors.js';
import { PRECISIONS } from '../../spec/precision.js';
import { action, endsWhenDone, intOption, msOption, perCoreOption, usage } from '../framework.js';
import { discoveryFlags } from './peers.js';

export interface RunFlags {
  input?: string[];
  trust?: string[];
  trustDir?: string;
  allowUnsigned?: boolean;
  allowDowngrade?: boolean;
  stateDir?: string;
  variant?: string[];
  precision?: string;
  host?: string;
  threads?: string;
  maxPixels?: string;
  maxTensorBytes?: string;
  prewarm?: string;
  maxPrewarmShapes?: string;
  explain?: boolean;
  json?: boolean;
  annotate?: string;
  /** commander's `--no-model-cache`: false when given. */
  modelCache?: boolean;
  /** Split inference: peers that may run split models' tails (given or discovered), and the shared token. */
  peer?: string[];
  peerTokenFile?: string;
  discover?: boolean;
  discoverWait?: string;
  mdnsInterface?: string;
  mdnsPort?: string;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function addRunOptions(cmd: Command): Command {
  return cmd
    .argument('<pkg>', 'package file, or oci://host/repo:tag (pulled into the cache)')
    .option(
      '-i, --input <[name=]file>',
      'an input file, folder or pattern (*, ? in the file name); name= selects the input (default: the first input); repeat for more',
      collect,
    )
    .option('--trust <file.pub>', 'trust this public key (repeatable)', collect)
    .option('--trust-dir <dir>', 'trust every *.pub in this folder')
    .option('--allow-unsigned', 'run a package without a trusted signature (integrity is still checked)')
    .option(
      '--allow-downgrade',
      'accept a lower sequence than already accepted for the package name from a trusted key',
    )
    .option('--state-dir <dir>', 'anti-rollback state folder')
    .option('--variant <id...>', 'force a variant (fails clearly if this host cannot run it)')
    .option('--precision <p>', `prefer variants of this precision (${PRECISIONS.join(', ')})`)
    .option('--host <file>', 'a host profile instead of detecting this machine (same as XPKG_HOST)')
    .option('--threads <n>', 'intra-op threads per model (0: the backend chooses)')
    .option('--max-pixels <n>', 'the most pixels of one image, decoded or made by a step (default 100000000)')
    .option('--max-tensor-bytes <n>', 'the most bytes of one tensor the pipeline makes (default 1073741824, 1 GiB)')
    .option('--no-model-cache', 'neither use nor fill the cache of models optimised for this machine (XPKG_CACHE)')
    .option(
      '--prewarm <mode>',
      'auto (models on a GPU run once at every input shape the pipeline can make, inside open; the default when an input is a folder or pattern), always, or off (the default for inputs named one by one)',
    )
    .option('--max-prewarm-shapes <n>', 'the most shapes one model is pre-warmed at (default 32)')
    .option('--json', 'print one JSON document on stdout');
}

const PREWARM = ['auto', 'always', 'off'] as const;

export function precisionOption(p: string): Precision {
  if (!(PRECISIONS as readonly string[]).includes(p))
    throw usage(`--precision must be one of ${PRECISIONS.join(', ')}, not ${JSON.stringify(p)}`);
  return p as Precision;
}

function prewarmOption(o: RunFlags): RunnerOptions['prewarm'] | undefined {
  if (o.prewarm === undefined && o.maxPrewarmShapes === undefined) return undefined;
  const mode = o.prewarm ?? 'auto';
  if (!(PREWARM as readonly string[]).includes(mode))
    throw usage(`--prewarm must be one of ${PREWARM.join(', ')}, not ${JSON.stringify(mode)}`);
  const maxShapes = intOption(o.maxPrewarmShapes, 'max-prewarm-shapes', 0);
  return { mode: mode as (typeof PREWARM)[number], ...(maxShapes !== undefined ? { maxShapes } : {}) };
}

export function runnerOptions(o: RunFlags): RunnerOptions {
  const prewarm = prewarmOption(o);
  return {
    ...(prewarm ? { prewarm } : {}),
    trust: o.trust ?? [],
    ...(o.trustDir ? { trustDir: o.trustDir } : {}),
    allowUnsigned: Boolean(o.allowUnsigned),
    allowDowngrade: Boolean(o.allowDowngrade),
    ...(o.stateDir ? { stateDir: o.stateDir } : {}),
    ...(o.variant ? { variant: o.variant } : {}),
    ...(o.precision !== undefined ? { precision: precisionOption(o.precision) } : {}),
    ...(o.host !== undefined ? { host: o.host } : {}),
    ...(o.threads !== undefined ? { threads: perCoreOption(o.threads, 'threads', 0) } : {}),
    ...(o.modelCache === false ? { modelCache: false as const } : {}),
    ...(o.maxPixels !== undefined || o.maxTensorBytes !== undefined
      ? {
          budget: {
            ...(o.maxPixels !== undefined ? { maxPixels: intOption(o.maxPixels, 'max-pixels') } : {}),
            ...(o.maxTensorBytes !== undefined
              ? { maxTensorBytes: intOption(o.maxTensorBytes, 'max-tensor-bytes') }
              : {}),
          },
        }
      : {}),
  };
}

/**
 * The HTTP offloader (fabric/client.ts) to the peers given by URL or, with --discover, found by mDNS
 * (fabric/discovery/: their documents say what they hold and run, so the tail goes to the peer with its
 * best variant, least loaded first). Returns the directory too, to close after the run.
 */
async function offloaderOf(opts: RunFlags): Promise<{ offloader: RunnerOptions['offloader']; peers: PeerDirectory }> {
  if (!opts.peerTokenFile)
    throw usage('--peer and --discover need --peer-token-file (peers refuse callers without the token)');
  const [{ HttpOffloader }, { readToken }] = await Promise.all([
    import('../../fabric/client.js'),
    import('../../fabric/auth.js'),
  ]);
  const token = await readToken(opts.peerTokenFile);
  let peers: PeerDirectory;
  if (opts.discover) {
    const wait = msOption(opts.discoverWait, 'discover-wait', 0) ?? 2000;
    const [{ createPeerDirectory }, { directoryOptions }] = await Promise.all([
      import('../../fabric/discovery/index.js'),
      import('./peers.js'),
    ]);
    peers = await createPeerDirectory(directoryOptions(opts));
    // a one-shot run waits for the first peer (or --discover-wait ms), then runs with what it has
    await new Promise<void>((done) => {
      const t = setTimeout(finish, wait);
      const off = peers.onChange((list) => list.length && finish());
      function finish() {
        clearTimeout(t);
        off();
        done();
      }
      if (peers.list().length) finish();
    });
  } else peers = new (await import('../../fabric/peers.js')).StaticPeers(opts.peer ?? []);
  return { offloader: new HttpOffloader({ peers, token }), peers };
}

/**
 * Work that would wait its turn on the main thread goes to the second core, in one worker started
 * now, while the package opens: loading sharp and decoding the input images, SHA-256 of the
 * models, and onnxruntime's once-per-process start (runner/pipeline/image-decoder.ts).
 */
async function startHelperThread(): Promise<void> {
  (await import('../../runner/pipeline/image-decoder.js')).startImageDecoder({ onnxruntime: true });
}

export function register(program: Command): void {
  const run = addRunOptions(
    program.command('run').description('verify, pick the best variant for this host, and run the package on inputs'),
  ).option('--explain', 'also print why each variant was chosen or rejected');
  run.option('--annotate <file|dir>', 'write the input image with the outputs drawn on it (a folder for many inputs)');
  discoveryFlags(run, "peers that may run split models' tails");
  run.option('--discover-wait <ms>', 'with --discover: wait this long for a first peer (default 2000)');
  run.option('--peer-token-file <file>', 'split inference: the token the peers share (needed with --peer, --discover)');
  endsWhenDone(run);
  action<[string], RunFlags>(run, async (io, pkg, opts) => {
    await startHelperThread();
    const fabric = opts.peer?.length || opts.discover ? await offloaderOf(opts) : undefined;
    await using _peers = { [Symbol.asyncDispose]: async () => fabric?.peers.close() };
    const [{ flagsNameMany, planInputs, runInputs }, { renderOutputs }] = await Promise.all([
      import('./run-many.js'),
      import('../render-outputs.js'),
    ]);
    // Pre-warming every shape the pipeline can make (auto, on an accelerator), cuDNN's search and CUDA
    // graphs pay off over many inputs; a run of files named one by one wants its first result soonest.
    const oneShot =
      opts.prewarm === undefined && opts.maxPrewarmShapes === undefined && !(await flagsNameMany(opts.input));
    const options = runnerOptions(opts);
    await using runner = await (await import('../../runner/runner.js')).Runner.open(pkg, {
      ...options,
      ...(oneShot ? { oneShot } : {}),
      ...(fabric ? { offloader: fabric.offloader } : {}),
      onPullProgress: io.progress('pulling'),
    });
    const plan = await planInputs(runner.manifest, opts.input);
    return await runInputs(io, runner, plan, {
      ...(opts.annotate !== undefined ? { annotate: opts.annotate } : {}),
      ...(options.budget ? { budget: options.budget } : {}),
      render: (outputs) => renderOutputs(runner.manifest, outputs),
      protect: [
        ...(pkg.startsWith('oci://') ? [] : [pkg]),
        ...(opts.trust ?? []),
        ...[opts.host, opts.peerTokenFile].filter((f): f is string => f !== undefined),
      ],
      // what open cost (models loaded and pre-warmed in it): with the single result
      extra: () => ({
        open: runner.opened,
        ...(opts.explain ? { explain: selectionJson(runner.selection) } : {}),
      }),
      ...(opts.explain ? { humanExtra: () => `\n\n${renderSelection(runner.selection)}` } : {}),
    });
  });

  const bench = addRunOptions(
    program
      .command('bench')
      .description('latency percentiles of `run`, in total and per stage (decode, pre, infer per model, post)'),
  )
    .option('--runs <n>', 'measured runs (default 20)')
    .option('--warmup <n>', 'unmeasured runs first (default 2)');
  endsWhenDone(bench);
  action<[string], RunFlags & { runs?: string; warmup?: string }>(bench, async (io, pkg, opts) => {
    await startHelperThread();
    const runs = intOption(opts.runs, 'runs') ?? 20;
    const warmup = intOption(opts.warmup, 'warmup', 0) ?? 2;
    await using runner = await (await import('../../runner/runner.js')).Runner.open(pkg, runnerOptions(opts));
    const { planInputs } = await import('./run-many.js');
    const plan = await planInputs(runner.manifest, opts.input);
    if (plan.many) throw usage(`bench runs one input; --input ${plan.many.name} names ${plan.many.files.length} files`);
    const { loadInputFiles } = await import('../../runner/inputs/load.js');
    const inputs = await loadInputFiles(runner.manifest, plan.fixed);
    for (let i = 0; i < warmup; i++) await runner.run(inputs);
    const samples: Record<string, number[]> = {};
    for (let i = 0; i < runs; i++) {
      const r = await runner.run(inputs);
      for (const [stage, ms] of Object.entries(r.timings)) if (stage !== 'load') (samples[stage] ??= []).push(ms);
    }
    if (!samples.total) throw new RunnerError('E_RUN_PIPELINE', 'no runs were measured');
    const pct = (xs: number[], p: number) => {
      const s = [...xs].sort((a, b) => a - b);
      return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
    };
    const stages = Object.fromEntries(
      Object.entries(samples).map(([k, xs]) => [
        k,
        { p50: pct(xs, 50), p90: pct(xs, 90), p99: pct(xs, 99), mean: xs.reduce((a, b) => a + b, 0) / xs.length },
      ]),
    );
    const lines = [
      `${runner.manifest.name}@${runner.manifest.version}: ${runs} runs after ${warmup} warm-up`,
      `${'stage'.padEnd(18)} ${'p50'.padStart(9)} ${'p90'.padStart(9)} ${'p99'.padStart(9)}  (ms)`,
    ];
    for (const [k, s] of Object.entries(stages))
      lines.push(
        `${k.padEnd(18)} ${s.p50.toFixed(2).padStart(9)} ${s.p90.toFixed(2).padStart(9)} ${s.p99.toFixed(2).padStart(9)}`,
      );
    const variant: Record<string, string> = {};
    for (const m of runner.selection.models) if (m.chosen) variant[m.model] = m.chosen.variant.id;
    const o = runner.opened;
    if (Object.keys(o.prewarm).length)
      lines.push(
        `open ${o.ms.total.toFixed(0)} ms (load ${o.ms.load.toFixed(0)}, pre-warm ${o.ms.prewarm.toFixed(0)}): ${Object.entries(
          o.prewarm,
        )
          .map(([m, p]) => `${m} ${p.skipped ? `not pre-warmed (${p.skipped.code})` : `${p.shapes.length} shapes`}`)
          .join(', ')}`,
      );
    return { result: { runs, warmup, variant, latencyMs: stages, open: o }, human: lines.join('\n') };
  });
}
