/**
 * `xpkg run`, `bench`, `explain` and `host` as a user runs them: bin/xpkg.js spawned as a process on
 * the example packages in fixtures/dist (built by test/global-setup.ts), with and without `--json`.
 * Checks the content (OCR text, boxes and masks against the fixtures' ground truth, chosen variants,
 * the detected host), that `--json` prints exactly one document on stdout, that errors carry their
 * code and exit status, and that results go to stdout while errors go to stderr.
 */
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { charAccuracy, expectedLines, pages } from '../fixtures/images/render.js';
import { PackageReader } from '../pack/reader.js';
import { type ErrorCode, EXIT, exitStatusOf } from '../spec/errors.js';
import { type CliRun, xpkgAsync as xpkg } from './helpers/cli.js';
import { accumulateConfusion, boxIou, meanIou } from './helpers/metrics.js';
import { cpuRecVariant } from './helpers/ocr-variants.js';
import { tempDir } from './helpers/source.js';

// Every command is a fresh process that loads onnxruntime (and for run, the models): seconds each on a
// busy two-core machine, hence the long per-test timeouts.
const PKG = (name: string) => `fixtures/dist/${name}.xpkg`;
const TRUST = ['--trust', 'fixtures/keys/test.pub'];
const EXAMPLE = 'fixtures/images/example.png';
const PARAGRAPH = expectedLines(pages().find((p) => p.name === 'paragraph')!);
const ORT_VERSION = (
  JSON.parse(readFileSync('node_modules/onnxruntime-node/package.json', 'utf8')) as { version: string }
).version;

/** Trusted run flags with a fresh anti-rollback state folder, so no test depends on another's state. */
const trusted = () => [...TRUST, '--state-dir', tempDir('xpkg-state-')];
/** A 3-byte file: no whole number of float32 values. */
const threeBytes = () => {
  const f = join(tempDir(), 'three.bin');
  writeFileSync(f, Buffer.from([1, 2, 3]));
  return f;
};

/** The whole of stdout is one JSON document (not just its last line), and it is what the helper parsed. */
function doc(r: CliRun): NonNullable<CliRun['json']> {
  const whole = JSON.parse(r.stdout);
  expect(r.stdout.endsWith('}\n')).toBe(true);
  expect(whole).toEqual(r.json);
  return whole;
}

/** A failed `--json` command: the error document on stdout with its code, the code's exit status. */
function expectError(r: CliRun, code: ErrorCode): void {
  const d = doc(r);
  expect(d.error?.code).toBe(code);
  expect(d.result).toBeUndefined();
  expect(r.status).toBe(exitStatusOf(code));
}

/** A failed human command: nothing on stdout, `xpkg: error CODE: …` on stderr, the code's exit status. */
function expectHumanError(r: CliRun, code: ErrorCode): void {
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(new RegExp(`^xpkg: error ${code}: `, 'm'));
  expect(r.status).toBe(exitStatusOf(code));
}

interface Labelled {
  file: string;
  boxes: number[][];
  labels: number[];
  mask?: string;
}
const evalSet = (kind: 'detector' | 'segmenter') =>
  JSON.parse(readFileSync(`fixtures/${kind}/eval/labels.json`, 'utf8')) as { classes: string[]; images: Labelled[] };

describe('xpkg run', { timeout: 240_000 }, () => {
  it('paddleocr-v4: --json gives the lines of example.png, the chosen variants and, with --explain, the selection', async () => {
    const r = await xpkg(['run', PKG('paddleocr-v4'), ...trusted(), '--input', EXAMPLE, '--explain', '--json']);
    expect(r.status).toBe(0);
    const { result } = doc(r);
    const lines = result.outputs.lines as { text: string; score: number; box: number[][] }[];
    expect(
      charAccuracy(
        lines.map((l) => l.text),
        PARAGRAPH,
      ),
    ).toBeGreaterThanOrEqual(0.95);
    for (const l of lines) {
      expect(l.score).toBeGreaterThan(0.5);
      expect(l.box).toHaveLength(4);
    }
    const rec = await cpuRecVariant();
    expect(result.variant).toEqual({ det: 'det-cpu-fp32', cls: 'cls-cpu-fp32', rec });
    expect(result.timings.total).toBeGreaterThan(0);
    expect(result.explain.models.map((m: { model: string; chosen: string }) => [m.model, m.chosen])).toEqual([
      ['det', 'det-cpu-fp32'],
      ['cls', 'cls-cpu-fp32'],
      ['rec', rec],
    ]);
  });

  it('paddleocr-v4 without --json prints the recognised lines on stdout, one per line, and no result on stderr', async () => {
    const r = await xpkg(['run', PKG('paddleocr-v4'), ...trusted(), '-i', EXAMPLE]);
    expect(r.status).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(PARAGRAPH.length);
    expect(charAccuracy(lines, PARAGRAPH)).toBeGreaterThanOrEqual(0.95);
    expect(r.stderr).not.toContain(lines[0]);
    expect(r.stdout).not.toMatch(/xpkg:|\{/);
  });

  it('ocr-script: the sandboxed CTC script reads the same text and the report script writes one CSV row per line', async () => {
    const r = await xpkg(['run', PKG('ocr-script'), ...trusted(), '-i', `image=${EXAMPLE}`, '--json']);
    expect(r.status).toBe(0);
    const { lines, report } = doc(r).result.outputs as { lines: { text: string; score: number }[]; report: string };
    expect(
      charAccuracy(
        lines.map((l) => l.text),
        PARAGRAPH,
      ),
    ).toBeGreaterThanOrEqual(0.95);
    const rows = report.trimEnd().split('\n');
    expect(rows[0]).toBe('text,score,x1,y1,x2,y2,x3,y3,x4,y4');
    expect(rows).toHaveLength(lines.length + 1);
    lines.forEach((l, i) => {
      const quoted = /[",]/.test(l.text) ? `"${l.text.replaceAll('"', '""')}"` : l.text;
      expect(rows[i + 1].startsWith(`${quoted},${l.score.toFixed(4)},`)).toBe(true);
    });
    const human = await xpkg(['run', PKG('ocr-script'), ...trusted(), '-i', EXAMPLE]);
    expect(human.status).toBe(0);
    expect(human.stdout).toBe(`${[...lines.map((l) => l.text), ...rows].join('\n')}\n`);
  });

  it('detector: every labelled shape of an evaluation image is found with its class (IoU ≥ 0.5), in both modes', async () => {
    const { classes, images } = evalSet('detector');
    const im = images[1];
    expect(im.boxes.length).toBeGreaterThan(2);
    const r = await xpkg(['run', PKG('detector'), ...trusted(), '-i', `fixtures/detector/eval/${im.file}`, '--json']);
    expect(r.status).toBe(0);
    const { result } = doc(r);
    expect(result.variant).toEqual({ detector: 'cpu-fp32' });
    const found = result.outputs.boxes as { box: number[]; score: number; label: string }[];
    im.boxes.forEach((truth, t) => {
      const hit = found.some((d) => d.label === classes[im.labels[t]] && boxIou(d.box, 0, truth, 0) >= 0.5);
      expect(hit, `${classes[im.labels[t]]} at ${truth}`).toBe(true);
    });
    const human = await xpkg(['run', PKG('detector'), ...trusted(), '-i', `fixtures/detector/eval/${im.file}`]);
    expect(human.status).toBe(0);
    const rows = human.stdout.trimEnd().split('\n');
    expect(rows[0]).toBe(`${found.length} boxes`);
    expect(rows.slice(1).map((row) => row.split('\t')[0])).toEqual(found.map((d) => d.label));
  });

  it('segmenter: the mask has the image size and agrees with the ground-truth mask', async () => {
    const { images } = evalSet('segmenter');
    const im = images[1];
    const r = await xpkg(['run', PKG('segmenter'), ...trusted(), '-i', `fixtures/segmenter/eval/${im.file}`, '--json']);
    expect(r.status).toBe(0);
    const mask = doc(r).result.outputs.mask as {
      width: number;
      height: number;
      labels: string[];
      data: number[] | { dtype: string; shape: number[]; encoding: 'base64'; data: string };
    };
    const { data, info } = await sharp(`fixtures/segmenter/eval/${im.mask}`)
      .raw()
      .toBuffer({ resolveWithObject: true });
    expect([mask.width, mask.height]).toEqual([info.width, info.height]);
    expect(mask.labels).toEqual(['background', 'circle', 'square', 'triangle', 'star']);
    // Large typed arrays come as base64 with their dtype and shape (runner/outputs-json.ts).
    const pred = Array.isArray(mask.data) ? mask.data : Array.from(Buffer.from(mask.data.data, 'base64'));
    if (!Array.isArray(mask.data))
      expect([mask.data.dtype, mask.data.shape]).toEqual(['uint8', [mask.height, mask.width]]);
    const truth = Uint8Array.from({ length: info.width * info.height }, (_, i) => data[i * info.channels]);
    const conf = new Float64Array(25);
    accumulateConfusion(conf, pred, truth, 5);
    expect(meanIou(conf, 5).mIoU).toBeGreaterThanOrEqual(0.8);
  });

  const img = 'fixtures/detector/eval/001.png';
  it('a signed package with nothing trusted is refused before anything runs (stdout with --json, stderr without)', async () => {
    expectError(
      await xpkg(['run', PKG('detector'), '-i', img, '--state-dir', tempDir(), '--json']),
      'E_TRUST_UNTRUSTED',
    );
    expectHumanError(await xpkg(['run', PKG('detector'), '-i', img, '--state-dir', tempDir()]), 'E_TRUST_UNTRUSTED');
  });

  it('a file that is not an image is E_RUN_INPUT_FORMAT; raw bytes that are no whole float32 tensor too', async () => {
    expectError(
      await xpkg(['run', PKG('detector'), ...trusted(), '-i', 'package.json', '--json']),
      'E_RUN_INPUT_FORMAT',
    );
    expectHumanError(await xpkg(['run', PKG('detector'), ...trusted(), '-i', 'package.json']), 'E_RUN_INPUT_FORMAT');
    // multi-variant takes a float32 tensor: 3 raw bytes are not a whole number of values.
    expectError(
      await xpkg(['run', PKG('multi-variant'), ...trusted(), '-i', `x=${threeBytes()}`, '--json']),
      'E_RUN_INPUT_FORMAT',
    );
  });

  it('a missing --input, a missing package and an unknown variant have their own codes', async () => {
    expectError(await xpkg(['run', PKG('detector'), ...trusted(), '--json']), 'E_USAGE');
    expectError(await xpkg(['run', join(tempDir(), 'missing.xpkg'), ...trusted(), '-i', img, '--json']), 'E_NOT_FOUND');
    expectError(
      await xpkg(['run', PKG('detector'), ...trusted(), '-i', img, '--variant', 'nope', '--json']),
      'E_RUN_VARIANT_UNKNOWN',
    );
    expectError(
      await xpkg(['run', PKG('detector'), ...trusted(), '-i', img, '--precision', 'fp64', '--json']),
      'E_USAGE',
    );
  });

  it('--precision picks variants of that precision (the VNNI profile would pick int8)', async () => {
    const vnni = ['--host', 'fixtures/hosts/x64-avx512-vnni.json', '--json'];
    const x = join(tempDir(), 'x.bin');
    writeFileSync(x, Buffer.from(new Float32Array([1, 2, 3]).buffer));
    const run = async (...extra: string[]) =>
      doc(await xpkg(['run', PKG('multi-variant'), ...trusted(), '-i', `x=${x}`, ...vnni, ...extra])).result;
    expect((await run()).variant).toEqual({ 'add-one': 'cpu-int8-vnni' });
    expect((await run('--precision', 'fp32')).variant).toEqual({ 'add-one': 'cpu-fp32' });
  });

  it('a byte changed inside a model is caught before onnxruntime sees it (E_DIGEST_MISMATCH)', async () => {
    const bad = join(tempDir(), 'detector.xpkg');
    copyFileSync(PKG('detector'), bad);
    const bytes = readFileSync(bad);
    const model = readFileSync('fixtures/detector/model.onnx');
    const at = bytes.indexOf(model.subarray(model.length >> 1, (model.length >> 1) + 64));
    expect(at).toBeGreaterThan(0);
    bytes[at] ^= 0x01;
    writeFileSync(bad, bytes);
    const r = await xpkg(['run', bad, ...trusted(), '-i', 'fixtures/detector/eval/001.png', '--json']);
    expectError(r, 'E_DIGEST_MISMATCH');
    expect(r.status).toBe(EXIT.integrity);
  });
});

describe('xpkg bench', { timeout: 240_000 }, () => {
  it('--json: percentiles per stage, ordered, for the variant that ran', async () => {
    const r = await xpkg([
      'bench',
      PKG('detector'),
      ...trusted(),
      '-i',
      'fixtures/detector/eval/001.png',
      '--runs',
      '3',
      '--warmup',
      '1',
      '--json',
    ]);
    expect(r.status).toBe(0);
    const { result } = doc(r);
    expect([result.runs, result.warmup]).toEqual([3, 1]);
    expect(result.variant).toEqual({ detector: 'cpu-fp32' });
    const stages = result.latencyMs as Record<string, { p50: number; p90: number; p99: number; mean: number }>;
    expect(Object.keys(stages).sort()).toEqual(['decode', 'infer:detector', 'post', 'pre', 'total']);
    for (const s of Object.values(stages)) {
      expect(s.p50).toBeGreaterThan(0);
      expect(s.p50).toBeLessThanOrEqual(s.p90);
      expect(s.p90).toBeLessThanOrEqual(s.p99);
    }
    for (const k of ['decode', 'pre', 'infer:detector', 'post'])
      expect(stages[k].mean).toBeLessThanOrEqual(stages.total.mean);
  });

  it('human: a table with one row per stage; bad counts and tensor inputs fail with their codes', async () => {
    const r = await xpkg([
      'bench',
      PKG('detector'),
      ...trusted(),
      '-i',
      'fixtures/detector/eval/001.png',
      '--runs',
      '2',
      '--warmup',
      '0',
    ]);
    expect(r.status).toBe(0);
    const rows = r.stdout.trimEnd().split('\n');
    expect(rows[0]).toBe('detector@1.0.0: 2 runs after 0 warm-up');
    expect(rows[1]).toMatch(/^stage\s+p50\s+p90\s+p99\s+\(ms\)$/);
    expect(rows.slice(2).map((row) => row.split(/\s+/)[0])).toEqual([
      'decode',
      'pre',
      'infer:detector',
      'post',
      'total',
    ]);
    expectError(
      await xpkg([
        'bench',
        PKG('detector'),
        ...trusted(),
        '-i',
        'fixtures/detector/eval/001.png',
        '--runs',
        '0',
        '--json',
      ]),
      'E_USAGE',
    );
    expectHumanError(
      await xpkg(['bench', PKG('detector'), ...trusted(), '-i', 'fixtures/detector/eval/001.png', '--warmup', 'x']),
      'E_USAGE',
    );
    expectError(
      await xpkg(['bench', PKG('multi-variant'), ...trusted(), '-i', threeBytes(), '--runs', '1', '--json']),
      'E_RUN_INPUT_FORMAT',
    );
  });
});

describe('xpkg explain', { timeout: 240_000 }, () => {
  const HOSTS: [string, string | null][] = [
    ['x64-avx512-vnni', 'cpu-int8-vnni'],
    ['x64-no-avx', 'cpu-fp32'],
    ['graviton3', 'cpu-int8-dotprod'],
    ['rtx4090', 'cuda-fp16'],
    ['riscv64-no-runtime', null],
  ];
  it.each(HOSTS)(
    'multi-variant on the %s profile: chooses %s and gives every rejected variant its reasons',
    async (host, chosen) => {
      const r = await xpkg(['explain', PKG('multi-variant'), '--host', `fixtures/hosts/${host}.json`, '--json']);
      expect(r.status).toBe(0);
      const { result } = doc(r);
      const [m] = result.models as {
        model: string;
        chosen: string | null;
        variants: { id: string; status: string; reasons: { code: string }[] }[];
      }[];
      expect(m.model).toBe('add-one');
      expect(m.chosen).toBe(chosen);
      expect(m.variants).toHaveLength(8);
      expect(m.variants.filter((v) => v.status === 'chosen').map((v) => v.id)).toEqual(chosen ? [chosen] : []);
      for (const v of m.variants) if (v.status === 'rejected') expect(v.reasons.length).toBeGreaterThan(0);
      if (host !== 'x64-avx512-vnni' && host !== 'riscv64-no-runtime') return;
      const human = await xpkg(['explain', PKG('multi-variant'), '--host', `fixtures/hosts/${host}.json`]);
      expect(human.status).toBe(0);
      expect(human.stdout.split('\n')[0]).toBe('multi-variant-add-one@1.0.0');
      expect(human.stdout).toContain(
        chosen ? `model add-one: runs ${chosen}` : 'model add-one: NO VARIANT CAN RUN HERE',
      );
    },
  );

  it('says which variants a one-shot run would take instead (fp32 first on GPUs), and nothing where they are the same', async () => {
    const gpu = doc(
      await xpkg(['explain', PKG('paddleocr-v4'), '--host', 'fixtures/hosts/h100.json', '--json']),
    ).result;
    expect(gpu.models.map((m: { chosen: string }) => m.chosen)).toEqual([
      'det-cuda-fp32',
      'cls-cuda-fp32',
      'rec-cuda-fp16',
    ]);
    expect(gpu.oneShot).toEqual({ rec: 'rec-cuda-fp32' });
    const human = await xpkg(['explain', PKG('paddleocr-v4'), '--host', 'fixtures/hosts/h100.json']);
    expect(human.stdout).toContain(
      'one-shot runs (`xpkg run` of files named one by one) put fp32 first on GPUs: rec runs rec-cuda-fp32',
    );
    // asked for a precision, or on a CPU host: no such line
    const asked = doc(
      await xpkg([
        'explain',
        PKG('paddleocr-v4'),
        '--host',
        'fixtures/hosts/h100.json',
        '--precision',
        'fp32',
        '--json',
      ]),
    );
    expect(asked.result.oneShot).toBeUndefined();
    expect(asked.result.models.map((m: { chosen: string }) => m.chosen)[2]).toBe('rec-cuda-fp32');
    const cpu = doc(await xpkg(['explain', PKG('paddleocr-v4'), '--host', 'fixtures/hosts/x64-avx2.json', '--json']));
    expect(cpu.result.oneShot).toBeUndefined();
  });

  it('names the package by its id; --precision and --variant steer the choice; a variant the host cannot run is refused', async () => {
    const r = await xpkg(['explain', PKG('paddleocr-v4'), '--json']);
    expect(r.status).toBe(0);
    const { result } = doc(r);
    {
      await using reader = await PackageReader.open(PKG('paddleocr-v4'));
      expect(result.package).toEqual({ name: 'paddleocr-v4', version: '4.0.0', id: reader.id });
    }
    expect(result.models.map((m: { chosen: string }) => m.chosen)).toEqual([
      'det-cpu-fp32',
      'cls-cpu-fp32',
      await cpuRecVariant(),
    ]);
    const vnni = ['explain', PKG('multi-variant'), '--host', 'fixtures/hosts/x64-avx512-vnni.json', '--json'];
    expect(doc(await xpkg([...vnni, '--precision', 'fp32'])).result.models[0].chosen).toBe('cpu-fp32');
    const forced = doc(await xpkg([...vnni, '--variant', 'cpu-fp32'])).result.models[0];
    expect([forced.chosen, forced.forced]).toEqual(['cpu-fp32', 'cpu-fp32']);
    expectError(await xpkg([...vnni, '--variant', 'coreml-fp16']), 'E_RUN_VARIANT_UNSUPPORTED');
    expectHumanError(
      await xpkg([
        'explain',
        PKG('multi-variant'),
        '--host',
        'fixtures/hosts/x64-avx512-vnni.json',
        '--variant',
        'coreml-fp16',
      ]),
      'E_RUN_VARIANT_UNSUPPORTED',
    );
  });
});

describe('xpkg host', { timeout: 240_000 }, () => {
  it('--json describes this machine: platform, memory, onnxruntime with its CPU provider, the kernel backend', async () => {
    const r = await xpkg(['host', '--json'], { XPKG_HOST: '' });
    expect(r.status).toBe(0);
    const h = doc(r).result;
    expect([h.format, h.os, h.arch]).toEqual(['xpkg-host/1', process.platform, process.arch]);
    expect(Math.abs(h.memoryMiB - totalmem() / 2 ** 20)).toBeLessThan(totalmem() / 2 ** 20 / 100);
    expect(h.runtimes.onnxruntime).toMatchObject({ available: true, version: ORT_VERSION });
    expect(h.runtimes.onnxruntime.providers).toContain('cpu');
    expect(['native', 'portable']).toContain(h.kernels.backend);
    // XPKG_NATIVE=portable is what the host reports as the kernel backend.
    expect(doc(await xpkg(['host', '--json'], { XPKG_HOST: '', XPKG_NATIVE: 'portable' })).result.kernels.backend).toBe(
      'portable',
    );
    const human = await xpkg(['host'], { XPKG_HOST: '' });
    expect(human.status).toBe(0);
    expect(human.stdout).toMatch(new RegExp(`^os +${process.platform} ${process.arch}$`, 'm'));
    expect(human.stdout).toMatch(
      new RegExp(`^ +onnxruntime +${ORT_VERSION.replaceAll('.', '\\.')} — providers: .*cpu`, 'm'),
    );
  });

  it('--host and XPKG_HOST show a profile file as it is, and say it was not detected', async () => {
    const profile = (name: string) => JSON.parse(readFileSync(`fixtures/hosts/${name}.json`, 'utf8'));
    expect(doc(await xpkg(['host', '--host', 'fixtures/hosts/apple-m2.json', '--json'])).result).toEqual(
      profile('apple-m2'),
    );
    expect(doc(await xpkg(['host', '--json'], { XPKG_HOST: 'fixtures/hosts/jetson-orin.json' })).result).toEqual(
      profile('jetson-orin'),
    );
    const human = await xpkg(['host', '--host', 'fixtures/hosts/rtx4090.json']);
    expect(human.stdout.split('\n')[0]).toBe('host profile from --host (not detected)');
    expect((await xpkg(['host'], { XPKG_HOST: 'fixtures/hosts/rtx4090.json' })).stdout.split('\n')[0]).toBe(
      'host profile from XPKG_HOST (not detected)',
    );
  });

  it('a missing or invalid profile is E_HOST_PROFILE with its exit status', async () => {
    const bad = join(tempDir(), 'bad.json');
    writeFileSync(bad, '{"format": "xpkg-host/1"}');
    expectError(await xpkg(['host', '--host', join(tempDir(), 'missing.json'), '--json']), 'E_HOST_PROFILE');
    expectError(await xpkg(['host', '--host', bad, '--json']), 'E_HOST_PROFILE');
    expectHumanError(await xpkg(['host'], { XPKG_HOST: bad }), 'E_HOST_PROFILE');
    expect(exitStatusOf('E_HOST_PROFILE')).toBe(EXIT.host);
  });
});
