/**
 * Where the GPU's OCR text parts from the CPU's: runs the OCR package on the test images (make-data.ts)
 * under several GPU configurations — the default variants, each GPU model alone beside CPU ones, TF32
 * on and off — and prints, per configuration and image, the lines whose text differs from the float32
 * CPU variants' (plus each differing line's per-model variant), so a lost space can be traced to the
 * model and the setting that lose it:
 *
 *   node dist-tools/bench/gpu/text-diff.js [--data dir] [--only name,name] [--package f] [--configs a,b]
 *
 * One JSON document on stdout; progress on stderr.
 */
import { BackendRegistry, OnnxruntimeBackend } from '../../runner/backends/index.js';
import type { TextLine } from '../../runner/pipeline/index.js';
import { Runner, type RunnerOptions } from '../../runner/runner.js';
import { cpuOnlyHost, inputsFor, TRUST, testImages } from './common.js';

const argv = process.argv.slice(2);
const flag = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv.splice(i, 2)[1] : undefined;
};
const DATA = flag('--data') ?? '.gpu/data';
const ONLY = flag('--only')?.split(',');
const PKG = flag('--package') ?? 'fixtures/dist/paddleocr-v4.xpkg';
const PICK = flag('--configs')?.split(',');

interface Config {
  name: string;
  variant?: string[];
  tf32?: boolean;
  oneShot?: boolean;
}
/** Each GPU model alone (the others on the CPU in float32), then all of them, with TF32 on and off. */
const CONFIGS: Config[] = [
  { name: 'default' },
  { name: 'default-no-tf32', tf32: false },
  { name: 'det-gpu', variant: ['det-cuda-fp32', 'cls-cpu-fp32', 'rec-cpu-fp32'] },
  { name: 'det-gpu-no-tf32', variant: ['det-cuda-fp32', 'cls-cpu-fp32', 'rec-cpu-fp32'], tf32: false },
  { name: 'cls-gpu', variant: ['det-cpu-fp32', 'cls-cuda-fp32', 'rec-cpu-fp32'] },
  { name: 'rec32-gpu', variant: ['det-cpu-fp32', 'cls-cpu-fp32', 'rec-cuda-fp32'] },
  { name: 'rec32-gpu-no-tf32', variant: ['det-cpu-fp32', 'cls-cpu-fp32', 'rec-cuda-fp32'], tf32: false },
  { name: 'rec16-gpu', variant: ['det-cpu-fp32', 'cls-cpu-fp32', 'rec-cuda-fp16'] },
  { name: 'one-shot', oneShot: true },
];

async function open(c: Config): Promise<Runner> {
  const registry = new BackendRegistry();
  registry.register(new OnnxruntimeBackend(c.tf32 === undefined ? {} : { cuda: { tf32: c.tf32 } }), 100);
  const o: RunnerOptions = { trust: TRUST, stateDir: '/tmp/xpkg-gpu-state', registry, prewarm: 'off' };
  return Runner.open(PKG, {
    ...o,
    ...(c.variant ? { variant: c.variant } : {}),
    ...(c.oneShot ? { oneShot: true } : {}),
  });
}

async function main(): Promise<void> {
  const images = (await testImages(DATA)).filter((i) => !ONLY || ONLY.some((n) => i.name.includes(n)));
  const ref = await Runner.open(PKG, {
    trust: TRUST,
    stateDir: '/tmp/xpkg-gpu-state',
    host: await cpuOnlyHost(),
    precision: 'fp32',
    prewarm: 'off',
  });
  const m = ref.manifest;
  const refText = new Map<string, string[]>();
  for (const img of images) {
    const r = await ref.run(inputsFor(m, img)!);
    refText.set(
      img.name,
      (r.outputs.lines as TextLine[]).map((l) => l.text),
    );
  }
  const report: Record<string, unknown> = { reference: ref.selection.models.map((x) => x.chosen?.variant.id) };
  await ref.close();
  for (const c of CONFIGS.filter((c) => !PICK || PICK.includes(c.name))) {
    let runner: Runner;
    try {
      runner = await open(c);
    } catch (e) {
      report[c.name] = { error: String((e as Error).message ?? e) };
      continue;
    }
    const rows: Record<string, unknown>[] = [];
    for (const img of images) {
      const r = await runner.run(inputsFor(m, img)!);
      const got = (r.outputs.lines as TextLine[]).map((l) => l.text);
      const want = refText.get(img.name)!;
      const diff = want.flatMap((t, i) => (t === got[i] ? [] : [{ line: i, cpu: t, gpu: got[i] }]));
      if (got.length !== want.length || diff.length)
        rows.push({
          image: img.name,
          lines: [want.length, got.length],
          diff,
          variant: r.variant,
          provider: r.actualProvider,
        });
    }
    report[c.name] = { variant: runner.selection.models.map((x) => x.chosen?.variant.id), differing: rows };
    process.stderr.write(
      `${c.name}: ${rows.length ? JSON.stringify(rows.map((r) => r.diff)) : 'same text on every image'}\n`,
    );
    await runner.close();
  }
  process.stdout.write(`${JSON.stringify(report, null, 1)}\n`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
