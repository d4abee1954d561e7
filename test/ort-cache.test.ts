/**
 * The cache of models onnxruntime optimised for this machine (runner/backends/ort-cache.ts): a
 * second open uses it with the same outputs, a damaged or foreign entry is never used, and a cache
 * that cannot be written never stops a run.
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PackageReader } from '../pack/reader.js';
import { cacheRoot } from '../platform/cache-dir.js';
import { hasStaticInputs } from '../runner/backends/onnx-inputs.js';
import type { OrtModelSession } from '../runner/backends/onnxruntime.js';
import { OrtModelCache } from '../runner/backends/ort-cache.js';
import type { ModelSlot } from '../runner/model-slot.js';
import { Runner, type RunnerOptions } from '../runner/runner.js';
import type { ModelSession } from '../runner/types.js';
import { codeOf } from './helpers/errors.js';
import { cpuRecFile } from './helpers/ocr-variants.js';
import { tempDir } from './helpers/source.js';

const PKG = 'fixtures/dist/paddleocr-v4.xpkg';
const IMAGE = 'fixtures/images/example.png';
const MODELS = ['det', 'cls', 'rec'];

async function ocr(options: RunnerOptions) {
  const runner = await Runner.open(PKG, { trust: ['fixtures/keys/test.pub'], stateDir: tempDir(), ...options });
  try {
    const r = await runner.run({ image: IMAGE });
    const cache: Record<string, string | undefined> = {};
    for (const m of MODELS) cache[m] = ortSession(await runner.session(m)).optimizedCache;
    return { outputs: r.outputs, cache };
  } finally {
    await runner.close();
  }
}

/** The onnxruntime session behind the runner's model slot. */
const ortSession = (slot: ModelSession) => (slot as ModelSlot).current.session as OrtModelSession;

const entries = (dir: string) => readdirSync(join(dir, 'ort')).sort();

describe('optimised-model cache', () => {
  it('stores each model once, then opens from it with the same outputs', async () => {
    const dir = tempDir();
    const first = await ocr({ modelCache: dir });
    expect(first.cache).toEqual({ det: 'stored', cls: 'stored', rec: 'stored' });
    expect(entries(dir).filter((f) => f.endsWith('.ort'))).toHaveLength(3);
    expect(entries(dir).some((f) => f.includes('.tmp'))).toBe(false);
    const second = await ocr({ modelCache: dir });
    expect(second.cache).toEqual({ det: 'hit', cls: 'hit', rec: 'hit' });
    expect(second.outputs).toEqual(first.outputs);
    // …and both equal a run that never saw the cache
    expect((await ocr({ modelCache: false })).outputs).toEqual(first.outputs);
    // entries are the user's alone
    if (process.platform !== 'win32')
      for (const f of entries(dir)) expect(statSync(join(dir, 'ort', f)).mode & 0o077, f).toBe(0);
  });

  it('a damaged entry is detected, replaced from the package, and the outputs stay the same', async () => {
    const dir = tempDir();
    const first = await ocr({ modelCache: dir });
    // flip bytes in the middle of every stored model (weights: onnxruntime would load them)
    for (const f of entries(dir).filter((n) => n.endsWith('.ort'))) {
      const path = join(dir, 'ort', f);
      const size = readFileSync(path).length;
      const fd = openSync(path, 'r+');
      writeSync(fd, Buffer.from([0x5a, 0xa5, 0x5a, 0xa5]), 0, 4, Math.floor(size / 2));
      closeSync(fd);
    }
    const again = await ocr({ modelCache: dir });
    expect(again.cache).toEqual({ det: 'stored', cls: 'stored', rec: 'stored' });
    expect(again.outputs).toEqual(first.outputs);
    expect((await ocr({ modelCache: dir })).cache).toEqual({ det: 'hit', cls: 'hit', rec: 'hit' });
  });

  it('a package whose model changed after its graph was cached is still refused (its bytes are read and checked)', async () => {
    const dir = tempDir();
    await ocr({ modelCache: dir });
    const copy = join(tempDir(), 'ocr.xpkg');
    copyFileSync(PKG, copy);
    const reader = await PackageReader.open(PKG);
    const rec = reader.entry(await cpuRecFile())!;
    await reader.close();
    const fd = openSync(copy, 'r+');
    writeSync(fd, Buffer.from([0x42]), 0, 1, rec.dataOffset + 5000);
    closeSync(fd);
    const runner = await Runner.open(copy, { trust: ['fixtures/keys/test.pub'], stateDir: tempDir(), modelCache: dir });
    try {
      expect(await codeOf(runner.run({ image: IMAGE }))).toBe('E_DIGEST_MISMATCH');
    } finally {
      await runner.close();
    }
  });

  it.skipIf(process.platform === 'win32')('an entry others may write is not used', async () => {
    const dir = tempDir();
    await ocr({ modelCache: dir });
    for (const f of entries(dir).filter((n) => n.endsWith('.ort'))) chmodSync(join(dir, 'ort', f), 0o666);
    expect((await ocr({ modelCache: dir })).cache).toEqual({ det: 'stored', cls: 'stored', rec: 'stored' });
  });

  it('a cache folder that cannot be made, or none, never stops a run', async () => {
    const file = join(tempDir(), 'not-a-folder');
    writeFileSync(file, 'x');
    const r = await ocr({ modelCache: file });
    expect(r.cache).toEqual({ det: undefined, cls: undefined, rec: undefined });
    expect(JSON.stringify(r.outputs)).toContain('quick brown fox');
    const off = await ocr({ modelCache: false });
    expect(off.cache).toEqual({ det: undefined, cls: undefined, rec: undefined });
  });

  it('another optimisation level is another entry', async () => {
    const dir = tempDir();
    await ocr({ modelCache: dir });
    const basic = await ocr({ modelCache: dir, graphOptimization: 'basic' });
    expect(basic.cache).toEqual({ det: 'stored', cls: 'stored', rec: 'stored' });
    expect(entries(dir).filter((f) => f.endsWith('.ort'))).toHaveLength(6);
    // level `disabled` has nothing to cache
    expect((await ocr({ modelCache: dir, graphOptimization: 'disabled' })).cache.det).toBeUndefined();
  });
});

it('`xpkg run` fills XPKG_CACHE, and `--no-model-cache` leaves it alone', () => {
  const run = (cache: string, ...extra: string[]) =>
    spawnSync(
      process.execPath,
      [
        'bin/xpkg.js',
        'run',
        PKG,
        '--trust',
        'fixtures/keys/test.pub',
        '--input',
        IMAGE,
        '--state-dir',
        tempDir(),
        ...extra,
      ],
      { env: { ...process.env, XPKG_CACHE: cache }, encoding: 'utf8' },
    );
  const off = tempDir();
  const r1 = run(off, '--no-model-cache');
  expect(r1.status, r1.stderr).toBe(0);
  expect(readdirSync(off)).toEqual([]);
  const on = tempDir();
  const r2 = run(on);
  expect(r2.status, r2.stderr).toBe(0);
  expect(entries(on).filter((f) => f.endsWith('.ort'))).toHaveLength(3);
  expect(r2.stdout).toBe(r1.stdout);
});

it("`xpkg run` leaves nothing of onnxruntime's telemetry in the user's home", () => {
  // Three runs: which thread loads onnxruntime first (the decode worker pre-starts it) is a race,
  // and a worker that won it wrote the folder in about one run in two (runner/backends/ort-env.ts).
  for (let i = 0; i < 3; i++) {
    const home = tempDir();
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, XPKG_CACHE: join(home, 'c') };
    delete env.ORT_DISABLE_TELEMETRY;
    const r = spawnSync(
      process.execPath,
      ['bin/xpkg.js', 'run', PKG, '--trust', 'fixtures/keys/test.pub', '--input', IMAGE, '--state-dir', tempDir()],
      { env, encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    // onnxruntime-node 1.29 otherwise writes ~/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,onnxruntime.db}
    expect(readdirSync(join(home)), `run ${i}`).not.toContain('.cache');
  }
});

it('a store keeps the folder bounded: old formats, dead writers’ temp files, orphan records, oldest entries beyond the limit', async () => {
  const cache = new OrtModelCache(tempDir());
  const dir = cache.dir;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = (name: string, bytes: number, ageS: number) => {
    writeFileSync(join(dir, name), Buffer.alloc(bytes), { mode: 0o600 });
    const t = Date.now() / 1000 - ageS;
    utimesSync(join(dir, name), t, t);
  };
  for (const [key, age] of [
    ['new', 10],
    ['mid', 100],
    ['old', 1000],
  ] as const) {
    file(`${key}.ort`, 400, age);
    file(`${key}.json`, 10, age);
  }
  file('formatone.onnx', 50, 5);
  file('formatone.json', 10, 5);
  file('k.123.abc.tmp.ort', 50, 7200);
  file('k.456.def.tmp.ort', 50, 5);
  file('orphan.json', 10, 5);
  await cache.prune(900);
  expect(readdirSync(dir).sort()).toEqual(['k.456.def.tmp.ort', 'mid.json', 'mid.ort', 'new.json', 'new.ort'].sort());
});

it('tests and the processes they spawn keep their cache away from the user’s (global set-up)', () => {
  expect(process.env.XPKG_CACHE).toMatch(/xpkg-test-cache-/);
  expect(cacheRoot()).toBe(process.env.XPKG_CACHE);
});

describe('memory pattern only for fixed input shapes', () => {
  it('reads fixed and dynamic input dims from the graph', async () => {
    const runner = await Runner.open(PKG, {
      trust: ['fixtures/keys/test.pub'],
      stateDir: tempDir(),
      modelCache: false,
    });
    try {
      for (const m of MODELS) {
        const s = ortSession(await runner.session(m));
        // every PP-OCR input has a dynamic dimension (batch, width, page size)
        expect(s.options.enableMemPattern, m).toBe(false);
      }
    } finally {
      await runner.close();
    }
    const det = await Runner.open('fixtures/dist/detector.xpkg', {
      trust: ['fixtures/keys/test.pub'],
      stateDir: tempDir(),
      modelCache: false,
    });
    try {
      const s = ortSession(await det.session('detector'));
      expect(s.inputShapes?.[0].shape.every((d) => typeof d === 'number')).toBe(true);
      expect(s.options.enableMemPattern).toBe(true);
    } finally {
      await det.close();
    }
    expect(hasStaticInputs(new Uint8Array([0xff, 0xff, 0xff]))).toBe(false);
    expect(hasStaticInputs(new Uint8Array(0))).toBe(false);
  });

  it('a session from the cache makes the same decision (kept in the entry’s record)', async () => {
    const dir = tempDir();
    const pattern = async (pkg: string, model: string) => {
      const runner = await Runner.open(pkg, {
        trust: ['fixtures/keys/test.pub'],
        stateDir: tempDir(),
        modelCache: dir,
      });
      try {
        const s = ortSession(await runner.session(model));
        return [s.optimizedCache, s.options.enableMemPattern];
      } finally {
        await runner.close();
      }
    };
    for (const [pkg, model, fixed] of [
      ['fixtures/dist/detector.xpkg', 'detector', true],
      [PKG, 'rec', false],
    ] as const) {
      expect(await pattern(pkg, model)).toEqual(['stored', fixed]);
      expect(await pattern(pkg, model)).toEqual(['hit', fixed]);
    }
  });
});
