/**
 * Many inputs per run: `xpkg run` over a folder, a pattern or a repeated `--input` prints one JSON
 * document per input (JSON Lines); a bad input gets its own error entry and the others still run;
 * the exit status is the first failure's. The library's `runner.runMany` yields the same, in order.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Runner } from '../runner/runner.js';
import { EXIT } from '../spec/errors.js';
import { xpkgAsync } from './helpers/cli.js';

const PKG = 'fixtures/dist/detector.xpkg';
let dir: string;

/** The CLI as a process; stdout parsed line by line. */
function run(args: string[]) {
  return xpkgAsync(['run', PKG, '--trust', 'fixtures/keys/test.pub', ...args]);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'xpkg-many-'));
  mkdirSync(join(dir, 'in'));
  copyFileSync('fixtures/detector/eval/001.png', join(dir, 'in', 'a-good.png'));
  // A PNG cut short: its header reads, its pixels don't.
  writeFileSync(join(dir, 'in', 'b-corrupt.png'), readFileSync('fixtures/detector/eval/002.png').subarray(0, 200));
  writeFileSync(join(dir, 'in', 'c-notes.txt'), 'not an image\n');
  writeFileSync(join(dir, 'in', '.hidden.png'), 'skipped: hidden files are not inputs');
});

describe('xpkg run over a folder', () => {
  it('a good image, a corrupt one and a non-image: one JSON line each, in name order; errors with their codes; exit status of the first failure', async () => {
    const r = await run(['-i', join(dir, 'in'), '--json']);
    expect(r.lines.map((l) => l.input)).toEqual(
      ['a-good.png', 'b-corrupt.png', 'c-notes.txt'].map((f) => join(dir, 'in', f)),
    );
    const [good, corrupt, text] = r.lines;
    expect(good.result.outputs.boxes.length).toBeGreaterThan(0);
    expect(good.result.variant.detector).toMatch(/^cpu-/);
    expect(corrupt.error.code).toBe('E_RUN_INPUT');
    expect(text.error.code).toBe('E_RUN_INPUT_FORMAT');
    for (const e of [corrupt.error, text.error]) expect(Object.keys(e).sort()).toEqual(['code', 'detail', 'summary']);
    expect(r.status).toBe(EXIT.runner);
  });

  it('the good image gives the same result as a run on it alone', async () => {
    const many = (await run(['-i', join(dir, 'in'), '--json'])).lines[0];
    const one = (await run(['-i', join(dir, 'in', 'a-good.png'), '--json'])).lines[0];
    expect(many.result.outputs).toEqual(one.result.outputs);
  });

  it('only good inputs → exit status 0; no progress bar on a stderr that is not a terminal', async () => {
    const r = await run(['-i', join(dir, 'in', 'a-*.png'), '-i', 'fixtures/detector/eval/000.png', '--json']);
    expect(r.lines.map((l) => l.input)).toEqual([join(dir, 'in', 'a-good.png'), 'fixtures/detector/eval/000.png']);
    expect(r.lines.every((l) => l.result)).toBe(true);
    expect(r.status).toBe(0);
    expect(r.stderr).not.toContain('%');
  });

  it('a pattern that matches nothing → E_NOT_FOUND before anything runs; a folder pattern → E_USAGE', async () => {
    expect([(await run(['-i', join(dir, 'in', 'z*.png'), '--json'])).lines[0].error.code]).toEqual(['E_NOT_FOUND']);
    expect([(await run(['-i', join(dir, 'i*', 'a.png'), '--json'])).lines[0].error.code]).toEqual(['E_USAGE']);
  });

  it('a folder with no input files (empty, or only hidden ones) → E_NOT_FOUND, not a silent success', async () => {
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    writeFileSync(join(empty, '.hidden.png'), 'hidden files are not inputs');
    const r = await run(['-i', empty, '--json']);
    expect(r.lines.map((l) => l.error?.code)).toEqual(['E_NOT_FOUND']);
    expect(r.status).toBe(EXIT.io);
  });

  it('without --json: each result under its input name, errors on stderr, the same exit status', async () => {
    const r = await run(['-i', join(dir, 'in')]);
    expect(r.stdout).toContain(`== ${join(dir, 'in', 'a-good.png')}`);
    expect(r.stderr).toContain('E_RUN_INPUT_FORMAT');
    // each failed input is named once per line, not twice (its error names the file already)
    const notes = join(dir, 'in', 'c-notes.txt');
    expect(r.stderr).toContain(notes);
    expect(r.stderr).not.toContain(`${notes}: ${notes}`);
    expect(r.status).toBe(EXIT.runner);
  });
});

// `script` gives the CLI a terminal; the bar is drawn only there (and never under CI=…).
const hasScript = spawnSync('script', ['--version']).status === 0;
describe.skipIf(!hasScript)('progress on a terminal', () => {
  it('a progress bar reaches 100% on stderr when it is a terminal', async () => {
    const { CI: _ci, ...env } = process.env;
    const cmd = [
      process.execPath,
      resolve('bin/xpkg.js'),
      'run',
      PKG,
      '--trust',
      'fixtures/keys/test.pub',
      '-i',
      join(dir, 'in', 'a-*.png'),
      '-i',
      'fixtures/detector/eval/000.png',
    ];
    const r = await new Promise<string>((done) => {
      let out = '';
      const child = spawn('script', ['-qec', cmd.map((a) => `'${a}'`).join(' '), '/dev/null'], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.on('close', () => done(out));
    });
    expect(r).toContain('running 50%');
    expect(r).toContain('running 100%');
  });
});

describe('runner.runMany', () => {
  it('yields a result or an error per item, in order, and keeps going after a failure', async () => {
    await using runner = await Runner.open(PKG, { trust: ['fixtures/keys/test.pub'] });
    const items = ['a-good.png', 'b-corrupt.png', 'missing.png', 'c-notes.txt'].map((f) => join(dir, 'in', f));
    const got: [number, string, string][] = [];
    for await (const r of runner.runMany([
      ...items,
      { source: 'in memory', inputs: { image: readFileSync('fixtures/detector/eval/000.png') } },
    ])) {
      got.push([r.index, r.source, r.ok ? 'ok' : r.error.code]);
    }
    expect(got).toEqual([
      [0, items[0], 'ok'],
      [1, items[1], 'E_RUN_INPUT'],
      [2, items[2], 'E_NOT_FOUND'],
      [3, items[3], 'E_RUN_INPUT_FORMAT'],
      [4, 'in memory', 'ok'],
    ]);
  });
});

describe('pre-warm follows the inputs', () => {
  it('a folder, a pattern (named or not) are many inputs; files named one by one are not', async () => {
    const { flagsNameMany } = await import('../cli/commands/run-many.js');
    const good = join(dir, 'in', 'a-good.png');
    expect(await flagsNameMany([join(dir, 'in')])).toBe(true);
    expect(await flagsNameMany([`image=${join(dir, 'in')}`])).toBe(true);
    expect(await flagsNameMany([join(dir, 'in', '*.png')])).toBe(true);
    expect(await flagsNameMany([good, good])).toBe(false);
    expect(await flagsNameMany([`image=${good}`, join(dir, 'in', 'missing.png')])).toBe(false);
    expect(await flagsNameMany([])).toBe(false);
  });

  it('one image on a GPU host: open loads and pre-warms nothing unless --prewarm says so', async () => {
    // the h100 profile selects the CUDA variant, which falls back to the CPU here: auto loads it in open
    const gpu = ['--host', 'fixtures/hosts/h100.json', '-i', join(dir, 'in', 'a-good.png'), '--json'];
    const oneShot = (await run(gpu)).lines[0].result;
    expect(oneShot.open.prewarm).toEqual({});
    expect(oneShot.outputs.boxes.length).toBeGreaterThan(0);
    const auto = (await run([...gpu, '--prewarm', 'auto'])).lines[0].result;
    expect(auto.open.prewarm.detector).toMatchObject({ provider: 'cpu', skipped: { code: 'cpu' } });
    expect(auto.outputs).toEqual(oneShot.outputs);
  });
});
