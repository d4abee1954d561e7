/**
 * `xpkg run` over input files: `--input` flags to input files (a folder, a pattern or a repeated
 * flag means many inputs), one run or one run per file, `--json` as one document or JSON Lines,
 * and `--annotate`. The work itself is the library's (runner/inputs, runner.runMany, annotate).
 */
import { mkdir, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { annotate, writeAnnotation } from '../../runner/annotate.js';
import { expandInputPath, namesMany } from '../../runner/inputs/expand.js';
import { outputsToJson } from '../../runner/outputs-json.js';
import type { ManyInput } from '../../runner/run-many.js';
import type { Runner } from '../../runner/runner.js';
import type { RunnerBudget } from '../../runner/types.js';
import { toXpkgError } from '../../spec/errors.js';
import type { Manifest } from '../../spec/schema.js';
import { escapeLine, terminalSafe } from '../../spec/terminal.js';
import { type CommandOutcome, type Io, usage } from '../framework.js';

export interface InputPlan {
  /** Inputs with one file. */
  fixed: Record<string, string>;
  /** The one input given several files (a folder, a pattern, or the flag repeated). */
  many?: { name: string; files: string[] };
}

/**
 * `--input [name=]path` flags → files per input. `name=` picks the input; a bare path fills the next
 * input without one, and once every input has one, a package with a single input takes more.
 */
/**
 * Whether some `--input` flag names a folder or a pattern (checked before the package opens: a
 * `name=` prefix is tried with and without, as planInputs cannot tell yet which it is).
 */
export async function flagsNameMany(flags: string[] = []): Promise<boolean> {
  const paths = flags.flatMap((f) => {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.+)$/.exec(f);
    return m ? [f, m[2]] : [f];
  });
  return (await Promise.all(paths.map(namesMany))).some(Boolean);
}

export async function planInputs(manifest: Manifest, flags: string[] = []): Promise<InputPlan> {
  const given = new Map<string, string[]>();
  const declared = manifest.inputs.map((i) => `${i.name} (${i.type}${i.optional ? ', optional' : ''})`).join(', ');
  for (const f of flags) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.+)$/.exec(f);
    // `name=` always names an input (a path holding `=` is written ./a=b.png).
    if (m && !manifest.inputs.some((i) => i.name === m[1]))
      throw usage(`--input ${m[1]}=…: this package has no input ${JSON.stringify(m[1])}; its inputs are ${declared}`, {
        input: m[1],
        expected: manifest.inputs.map((i) => i.name),
      });
    const named = m && manifest.inputs.some((i) => i.name === m[1]) ? m[1] : undefined;
    const name =
      named ??
      manifest.inputs.find((i) => !given.has(i.name))?.name ??
      (manifest.inputs.length === 1 ? manifest.inputs[0].name : undefined);
    if (!name)
      throw usage(
        `more --input flags than the package has inputs (${manifest.inputs.map((i) => i.name).join(', ')}); use name=file`,
      );
    given.set(name, [...(given.get(name) ?? []), named ? m![2] : f]);
  }
  for (const i of manifest.inputs)
    if (!given.has(i.name) && !i.optional)
      throw usage(`missing --input for ${i.name} (${i.type}); this package's inputs are ${declared}`);
  const plan: InputPlan = { fixed: {} };
  for (const [name, args] of given) {
    const expanded = await Promise.all(args.map(expandInputPath));
    const files = expanded.flatMap((e) => e.files);
    if (args.length === 1 && !expanded[0].many) {
      plan.fixed[name] = files[0];
      continue;
    }
    if (plan.many) throw usage(`only one input may be given several files (${plan.many.name} and ${name} are)`);
    plan.many = { name, files };
  }
  return plan;
}

/** Where each input's picture goes: `dest` itself for one input (unless it is a folder), else `dest/<name>.annotated.png`. */
async function annotationPaths(dest: string, sources: string[], many: boolean): Promise<string[]> {
  const st = await stat(dest).catch(() => null);
  const folder = many || st?.isDirectory() || /[\\/]$/.test(dest);
  if (!folder) return [dest];
  if (st && !st.isDirectory()) throw usage(`--annotate ${dest} must be a folder when there are several inputs`);
  await mkdir(dest, { recursive: true });
  // a.png and a.jpg → a.annotated.png, a-2.annotated.png; a third input a-2.png then gets a-2-2…:
  // never one picture for two inputs
  const taken = new Set<string>();
  return sources.map((s) => {
    const stem = basename(s, extname(s));
    let name = `${stem}.annotated.png`;
    for (let n = 2; taken.has(name); n++) name = `${stem}-${n}.annotated.png`;
    taken.add(name);
    return join(dest, name);
  });
}

function imageInput(manifest: Manifest): string {
  const i = manifest.inputs.find((x) => x.type === 'image');
  if (!i)
    throw usage(
      `--annotate needs an image input; this package's inputs are ${manifest.inputs.map((x) => `${x.name} (${x.type})`).join(', ')}`,
      { inputs: manifest.inputs.map((x) => ({ name: x.name, type: x.type })) },
    );
  return i.name;
}

export interface RunInputsOptions {
  annotate?: string;
  /** The runner's budget: --annotate draws what the run took (--max-pixels). */
  budget?: RunnerBudget;
  /** Extra fields for each result (e.g. the selection explained). */
  extra?: () => Record<string, unknown>;
  /** Human text after each result. */
  humanExtra?: () => string;
  render: (outputs: Record<string, unknown>) => string;
  /** Files the run reads besides its inputs (the package, trust keys…): --annotate never writes over them. */
  protect?: readonly string[];
}

/**
 * Runs the package on the planned inputs. One input: a normal outcome (one document, errors thrown).
 * Many: each result or error is printed as it comes (one JSON document per line with `--json`),
 * and the exit status is the first failure's.
 */
export async function runInputs(
  io: Io,
  runner: Runner,
  plan: InputPlan,
  o: RunInputsOptions,
): Promise<CommandOutcome<unknown>> {
  const manifest = runner.manifest;
  const imageName = o.annotate !== undefined ? imageInput(manifest) : undefined;
  // Pictures are named after the files that vary (the image, or whichever input was given many).
  const pictures =
    imageName !== undefined
      ? await annotationPaths(o.annotate!, plan.many ? plan.many.files : [plan.fixed[imageName]], Boolean(plan.many))
      : [];
  const allInputs = [...Object.values(plan.fixed), ...(plan.many?.files ?? []), ...(o.protect ?? [])];
  const items: ManyInput[] = plan.many
    ? plan.many.files.map((f) => ({ source: f, files: { ...plan.fixed, [plan.many!.name]: f } }))
    : [{ source: Object.values(plan.fixed)[0] ?? '', files: plan.fixed }];
  const progress = io.progress('running');
  let firstFailure: number | undefined;
  let ok = 0;
  for await (const r of runner.runMany(items)) {
    let error = r.ok ? undefined : r.error;
    let result: Record<string, unknown> | undefined;
    if (r.ok) {
      let annotated: string | undefined;
      try {
        if (imageName !== undefined) {
          await writeAnnotation(
            pictures[r.index],
            await annotate(r.inputs[imageName] as Buffer, manifest, r.result.outputs, o.budget),
            allInputs,
          );
          annotated = pictures[r.index];
        }
        const { actualProvider, fallbacks, nodes } = r.result;
        // a fallback (a GPU variant or provider that did not load or failed running) is never silent, even without --json
        for (const [model, fs] of Object.entries(fallbacks))
          for (const f of fs)
            io.log(
              `xpkg: ${model}: ${f.variant}${f.provider ? ` on ${f.provider}` : ''} ${f.at === 'run' ? 'failed while running' : 'did not load'}, fell back — ${f.reason}`,
            );
        result = {
          outputs: outputsToJson(r.result.outputs),
          variant: r.result.variant,
          actualProvider,
          ...(Object.keys(fallbacks).length ? { fallbacks } : {}),
          ...(Object.keys(nodes).length ? { nodes } : {}),
          timings: r.result.timings,
          copies: r.result.copies,
          ...(r.result.split ? { split: r.result.split } : {}),
          ...(annotated ? { annotated } : {}),
        };
      } catch (e) {
        error = toXpkgError(e);
      }
    }
    if (!plan.many) {
      if (error || !r.ok || !result) throw error;
      return {
        result: { ...result, ...(o.extra?.() ?? {}) },
        human: `${o.render(r.result.outputs)}${o.humanExtra?.() ?? ''}`,
      };
    }
    if (error || !r.ok || !result) {
      error ??= toXpkgError(new Error('no result'));
      firstFailure ??= error.exitStatus;
      if (io.json)
        process.stdout.write(`${JSON.stringify({ input: r.source, error: { detail: null, ...error.toJSON() } })}\n`);
      // an input file's error names it already
      else
        io.log(
          escapeLine(
            `xpkg: error ${error.code}: ${error.message.startsWith(r.source) ? '' : `${r.source}: `}${error.message}`,
          ),
        );
    } else {
      ok++;
      if (io.json) process.stdout.write(`${JSON.stringify({ input: r.source, result })}\n`);
      else process.stdout.write(`== ${escapeLine(r.source)}\n${terminalSafe(o.render(r.result.outputs))}\n`);
    }
    progress(r.index + 1, items.length);
  }
  const failed = items.length - ok;
  if (failed && !io.json) io.log(`${failed} of ${items.length} inputs failed`);
  return { result: null, human: '', streamed: true, exitStatus: firstFailure ?? 0 };
}
