/** `xpkg split`: cuts an ONNX model at named tensors into head and tail models (fabric/split.ts) and checks head∘tail. */
import type { Command } from 'commander';
import { escapeLine } from '../../spec/terminal.js';
import { action, intOption, usage } from '../framework.js';

interface SplitFlags {
  at: string[];
  head: string;
  tail: string;
  headOutput?: string[];
  check?: string;
  sample?: string[];
  tolerance?: string;
  json?: boolean;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** The most random samples `--check` makes. */
const MAX_CHECKS = 1000;

/**
 * --head, --tail and the model are three different files: the same path twice would leave one
 * output written over by the other, or the model replaced by its head. Compared as real paths (a
 * link or `./` spelling of the model is still the model).
 */
async function distinctPaths(model: string, head: string, tail: string): Promise<void> {
  const { realpath } = await import('node:fs/promises');
  const { basename, dirname, join, resolve } = await import('node:path');
  // an output need not exist yet: its folder's real path and its own name
  const real = async (p: string) =>
    realpath(p).catch(async () =>
      join(await realpath(dirname(resolve(p))).catch(() => dirname(resolve(p))), basename(p)),
    );
  const [m, h, t] = await Promise.all([real(model), real(head), real(tail)]);
  if (h === t) throw usage('--head and --tail name the same file', { head, tail });
  if (h === m || t === m) throw usage(`--${h === m ? 'head' : 'tail'} would replace the model being cut`, { model });
}

export function register(program: Command): void {
  const cmd = program
    .command('split')
    .description('cut an ONNX model at named tensors into a head and a tail model, and check that head∘tail equals it')
    .argument('<model.onnx>', 'the model to cut')
    .requiredOption('--at <tensor>', 'a tensor to cut at (repeatable: the cut is all of them)', collect)
    .requiredOption('--head <file>', 'where to write the head (model inputs → cut tensors)')
    .requiredOption('--tail <file>', 'where to write the tail (cut tensors → model outputs)')
    .option('--head-output <tensor>', 'another tensor the head returns, e.g. a score for an offload condition', collect)
    .option(
      '--check <n>',
      'run the whole model and head∘tail on n random inputs of the declared shapes (default 1; 0: none)',
    )
    .option(
      '--sample <[input=]file.npy>',
      'check on this input instead of random ones (repeatable: one sample each)',
      collect,
    )
    .option('--tolerance <x>', 'the largest output difference the check accepts (default 1e-4)')
    .option('--json', 'print one JSON document on stdout');
  action<[string], SplitFlags>(cmd, async (io, model, opts) => {
    // a decimal number, finite: Number() reads '' and ' ' as 0, '0x10' as 16 and '1e309' as Infinity
    const tolerance = opts.tolerance === undefined ? 1e-4 : Number(opts.tolerance);
    if (
      opts.tolerance !== undefined &&
      (!/^(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(opts.tolerance) || !Number.isFinite(tolerance))
    )
      throw usage(`--tolerance must be a number ≥ 0, not ${JSON.stringify(opts.tolerance)}`);
    // the random samples are made up front, each as large as the model's inputs
    const checks = intOption(opts.check, 'check', 0, MAX_CHECKS) ?? 1;
    if (opts.check !== undefined && opts.sample?.length)
      throw usage('--check and --sample exclude each other (random inputs, or the samples given)');
    await distinctPaths(model, opts.head, opts.tail);
    const { readFileBytes } = await import('../../platform/index.js');
    const { UsageError } = await import('../../spec/errors.js');
    // readFileBytes, not readFile: a device (/dev/zero) is refused, never read without end
    const readFile = (path: string) =>
      readFileBytes(path).catch((e: NodeJS.ErrnoException) => {
        throw new UsageError(e.code === 'ENOENT' ? 'E_NOT_FOUND' : 'E_IO', `cannot read ${path}: ${e.message}`);
      });
    const whole = await readFile(model);
    const { cutModel } = await import('../../fabric/split.js');
    const options = { at: opts.at, ...(opts.headOutput ? { headOutputs: opts.headOutput } : {}) };
    let cut = cutModel(whole, options);
    const { OnnxGraph } = await import('../../runner/backends/onnx-graph.js');
    const wholeGraph = OnnxGraph.decode(whole);
    const { checkSamples, checkSplit, randomFeeds } = await import('../../fabric/split-check.js');
    let samples: Awaited<ReturnType<typeof randomFeeds>>[];
    if (opts.sample?.length) {
      const { parseNpy } = await import('../../runner/inputs/npy.js');
      const first = wholeGraph.inputs[0]?.name ?? '';
      samples = await Promise.all(
        opts.sample.map(async (s) => {
          const eq = s.indexOf('=');
          const [name, file] = eq > 0 && !s.slice(0, eq).includes('/') ? [s.slice(0, eq), s.slice(eq + 1)] : [first, s];
          return { [name]: parseNpy(await readFile(file)) };
        }),
      );
      checkSamples(whole, samples);
    } else samples = Array.from({ length: checks }, () => randomFeeds(whole));
    const check = samples.length ? await checkSplit(whole, cut.head, cut.tail, samples, tolerance) : undefined;
    // A model of fixed input shapes has fixed cut shapes: declared, a peer checks what it is sent.
    const fixed = wholeGraph.inputs.every((v) => v.shape?.every((d) => typeof d === 'number' && d > 0));
    if (check && fixed) cut = cutModel(whole, { ...options, shapes: check.cutShapes });
    const { writeAtomic } = await import('../../pack/atomic.js');
    // Both or neither: the tail is written and renamed inside the head's write, so a tail that
    // cannot be written (a missing folder, a full disk) fails before the head is renamed into place.
    await writeAtomic(opts.head, async (head) => {
      await head.writeFile(cut.head);
      await writeAtomic(opts.tail, async (tail) => void (await tail.writeFile(cut.tail)));
    });
    io.log(`xpkg split: head ${cut.nodes.head} nodes, tail ${cut.nodes.tail} of ${cut.nodes.whole}`);
    const result = {
      head: { path: opts.head, bytes: cut.head.length },
      tail: { path: opts.tail, bytes: cut.tail.length },
      at: cut.at,
      nodes: cut.nodes,
      ...(check ? { check } : {}),
    };
    const human = [
      `head ${escapeLine(opts.head)} (${cut.nodes.head} nodes, ${cut.head.length} bytes) → ${cut.at.map((c) => escapeLine(c.name)).join(', ')} → tail ${escapeLine(opts.tail)} (${cut.nodes.tail} nodes, ${cut.tail.length} bytes)`,
      check
        ? `head∘tail equals the whole on ${check.samples} sample(s): largest difference ${check.maxAbsDiff} (≤ ${check.tolerance}); ${check.cutBytes} bytes cross the cut per sample`
        : 'not checked (--check 0)',
    ].join('\n');
    return { result, human };
  });
}
