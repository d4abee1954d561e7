/**
 * Cold start (issue 11 item 4): the validators compiled at build time are current and mean what the
 * TypeBox sources say, and each command, run as a real process, loads only what it needs.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { type FileHandle, open as openFile } from 'node:fs/promises';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Type as TypeBox } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import { HOST_PROFILE_FORMAT, loadHostProfile } from '../runner/host-profile.js';
import { HostProfileSchema } from '../runner/host-profile-schema.js';
import { runTool } from '../runner/host-util.js';
import { paramProblems } from '../runner/pipeline/params.js';
import { getOp, type OpDef } from '../runner/pipeline/registry.js';
import { validatePipeline } from '../runner/pipeline/validate.js';
import { Runner } from '../runner/runner.js';
import { renderValidators } from '../spec/gen-validators.js';
import { Type as Lite } from '../spec/typebox-lite.js';
import { tempDir } from './helpers/source.js';

const plain = (v: unknown) => JSON.parse(JSON.stringify(v));

describe('validators compiled at build time', () => {
  it('spec/generated/* match what spec/gen-validators.ts renders (run `npm run gen:validators` after changing a schema)', () => {
    for (const [name, text] of Object.entries(renderValidators())) {
      expect(readFileSync(`spec/generated/${name}`, 'utf8') === text, `spec/generated/${name} drifted`).toBe(true);
    }
  });

  it('typebox-lite builds the JSON Schema TypeBox builds', () => {
    const build = (T: typeof Lite) => {
      const Name = T.String({ pattern: '^[a-z]+$', description: 'a name' });
      return [
        T.Object(
          { a: Name, b: T.Optional(T.Integer({ minimum: 1 })), c: T.Optional(T.Array(T.Number(), { maxItems: 4 })) },
          { additionalProperties: false },
        ),
        T.Object({ only: T.Optional(T.Boolean()) }),
        T.Union([T.Literal('x'), T.Literal(2), T.Literal(true)], { description: 'u' }),
        T.Union([Name]),
        T.Union([Name], { title: 't' }),
        T.Record(T.String({ pattern: '^[A-Z]$' }), Name),
        T.Record(T.String({ minLength: 1 }), T.Unknown(), { additionalProperties: false }),
        T.Unknown({ description: 'any' }),
      ];
    };
    expect(plain(build(Lite))).toEqual(plain(build(TypeBox)));
  });

  it('every built-in op is checked by its generated validator, and bad params are reported at their path', () => {
    const resize = getOp('resize')!;
    expect(paramProblems(resize, { input: 'image', output: 'x', width: 'wide' }).map((p) => p.path)).toContain(
      '/width',
    );
    const missing = paramProblems(resize, { output: 'x' });
    expect(missing.map((p) => p.path)).toContain('/input');
    expect(paramProblems(resize, { input: 'image', output: 'x', bogus: 1 }).map((p) => p.path)).toContain('/bogus');
  });

  it('an op whose schema is not the generated one (defined elsewhere, or a stale file) is compiled at run time instead', () => {
    const fake = {
      ...getOp('resize')!,
      params: Lite.Object({ size: Lite.Integer({ minimum: 2 }) }, { additionalProperties: false }),
    } as unknown as OpDef;
    expect(paramProblems(fake, { size: 4 })).toEqual([]);
    expect(paramProblems(fake, { size: 1 }).map((p) => p.path)).toEqual(['/size']);
    // the generated resize validator would refuse `size` and accept `input`: the fallback does not
    expect(paramProblems(fake, { size: 3, input: 'x' }).map((p) => p.path)).toEqual(['/input']);
  });

  it('the host profile schema and its validator agree on the format tag', () => {
    expect(plain(HostProfileSchema).properties.format.const).toBe(HOST_PROFILE_FORMAT);
    expect(() =>
      loadHostProfile({
        format: 'xpkg-host/0',
        os: 'linux',
        arch: 'x64',
        cpu: { model: 'm', logicalCores: 1, features: [] },
        memoryMiB: 1,
      }),
    ).toThrow(/format/);
    expect(
      loadHostProfile({
        format: HOST_PROFILE_FORMAT,
        os: 'linux',
        arch: 'x64',
        cpu: { model: 'm', logicalCores: 1, features: [] },
        memoryMiB: 1,
      }).cpu.physicalCores,
    ).toBe(1);
  });

  it('the shipped OCR pipeline still validates', () => {
    const src = JSON.parse(readFileSync('fixtures/paddleocr-v4/xpkg.json', 'utf8'));
    expect(() => validatePipeline(src)).not.toThrow();
  });
});

/** Runs the built CLI and returns every module it loaded: ES modules (a loader hook) and CommonJS ones (require.cache at exit). */
function modulesLoadedBy(args: string[]): { status: number; stdout: string; modules: string[]; bundled: boolean } {
  const dir = tempDir('xpkg-cold-');
  const log = join(dir, 'modules.log');
  writeFileSync(
    join(dir, 'hooks.mjs'),
    `import { appendFileSync } from 'node:fs';\nexport async function load(url, ctx, next) { appendFileSync(${JSON.stringify(log)}, url + '\\n'); return next(url, ctx); }\n`,
  );
  writeFileSync(
    join(dir, 'register.mjs'),
    [
      "import { register, createRequire } from 'node:module';",
      "import { appendFileSync } from 'node:fs';",
      `register(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)});`,
      'const cache = createRequire(import.meta.url).cache;',
      `process.on('exit', () => appendFileSync(${JSON.stringify(log)}, Object.keys(cache).join('\\n') + '\\n'));`,
    ].join('\n'),
  );
  const r = spawnSync(
    process.execPath,
    ['--import', pathToFileURL(join(dir, 'register.mjs')).href, resolve('bin/xpkg.js'), ...args],
    { encoding: 'utf8' },
  );
  const loaded = readFileSync(log, 'utf8').split('\n').filter(Boolean);
  const modules = loaded.flatMap(unbundled);
  return { status: r.status ?? -1, stdout: r.stdout, modules, bundled: modules.length > loaded.length };
}

/** A chunk of the CLI bundle (tools/bundle-cli.ts) stands for the dist modules it holds. */
const BUNDLE = resolve('dist/cli-bundle');
let chunks: Record<string, string[]> | undefined;
function unbundled(module: string): string[] {
  const path = module.startsWith('file:') ? fileURLToPath(module) : module;
  if (dirname(path) !== BUNDLE) return [module];
  chunks ??= JSON.parse(readFileSync(join(BUNDLE, 'meta.json'), 'utf8')) as Record<string, string[]>;
  const inputs = chunks[basename(path)];
  if (!inputs) throw new Error(`${path} is not in dist/cli-bundle/meta.json: rebuild the bundle`);
  return inputs.map((i) => resolve('dist', i));
}

const loads = (modules: string[], what: RegExp) => modules.filter((m) => what.test(m.replace(/\\/g, '/')));
const TYPEBOX = /node_modules\/@sinclair\/typebox\//;
const AJV_COMPILER = /node_modules\/ajv\/dist\/(ajv|core|compile\/)/;
const SHARP = /node_modules\/sharp\//;
const ORT = /node_modules\/onnxruntime-node\//;
const QUICKJS = /quickjs/;

describe('what a command loads (the built CLI as a process)', () => {
  it('`xpkg run` of the OCR package loads no TypeBox, no ajv compiler, no QuickJS (it has no scripts), no tweetnacl, and sharp only in the decoder worker', () => {
    const r = modulesLoadedBy([
      'run',
      'fixtures/dist/paddleocr-v4.xpkg',
      '--trust',
      'fixtures/keys/test.pub',
      '--input',
      'fixtures/images/example.png',
      '--state-dir',
      tempDir(),
    ]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('quick brown fox');
    expect(r.bundled).toBe(true); // bin/xpkg.js took the bundle (npm run build makes it)
    expect(loads(r.modules, TYPEBOX)).toEqual([]);
    expect(loads(r.modules, AJV_COMPILER)).toEqual([]);
    expect(loads(r.modules, QUICKJS)).toEqual([]);
    expect(loads(r.modules, /node_modules\/tweetnacl\//)).toEqual([]); // OpenSSL verifies; tweetnacl signs
    // it read the image (the text above), with sharp in the decoder's worker: the main thread, which
    // opens the package and creates the sessions meanwhile, never loads it (runner/pipeline/image-decoder.ts)
    expect(loads(r.modules, SHARP)).toEqual([]);
  });

  it('`xpkg --help` loads no command implementation', () => {
    const r = modulesLoadedBy(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('verify');
    // runner/explain.js is run's renderer of `--explain` (no imports of its own)
    expect(loads(r.modules, /\/dist\/(pack|signing|runner\/(?!explain\.js)|sandbox|native|serve|oci)/)).toEqual([]);
    expect(loads(r.modules, /node_modules\/(?!commander\/)/)).toEqual([]);
  });

  it('`xpkg verify` loads neither sharp nor onnxruntime nor the pipeline', () => {
    const r = modulesLoadedBy([
      'verify',
      'fixtures/dist/paddleocr-v4.xpkg',
      '--trust',
      'fixtures/keys/test.pub',
      '--state-dir',
      tempDir(),
    ]);
    expect(r.status).toBe(0);
    expect(loads(r.modules, SHARP)).toEqual([]);
    expect(loads(r.modules, ORT)).toEqual([]);
    expect(loads(r.modules, TYPEBOX)).toEqual([]);
    expect(loads(r.modules, /\/dist\/runner\/(?!explain\.js)/)).toEqual([]);
  });
});

describe('the package file is read once', () => {
  it('open + first run of the OCR package read no byte of it twice (directory, manifest, signatures, each model and asset once)', async () => {
    const pkg = 'fixtures/dist/paddleocr-v4.xpkg';
    const size = statSync(pkg).size;
    // Record every positional read through a real FileHandle (the reader's only way to the file).
    const probe = await openFile(pkg, 'r');
    const proto = Object.getPrototypeOf(probe) as unknown as {
      read: (this: FileHandle, ...a: unknown[]) => Promise<{ bytesRead: number }>;
    };
    await probe.close();
    const original = proto.read;
    const reads = new Map<FileHandle, [number, number][]>();
    proto.read = async function (this: FileHandle, ...args: unknown[]) {
      const r = await original.apply(this, args);
      const position = args[3];
      if (typeof position === 'number' && r.bytesRead > 0) {
        const list = reads.get(this) ?? [];
        list.push([position, position + r.bytesRead]);
        reads.set(this, list);
      }
      return r;
    };
    let used = 0;
    try {
      // with the optimised-model cache on (the default): the models are read and checked all the same
      const runner = await Runner.open(pkg, { trust: ['fixtures/keys/test.pub'], stateDir: tempDir() });
      try {
        const r = await runner.run({ image: 'fixtures/images/example.png' });
        expect(JSON.stringify(r.outputs)).toContain('quick brown fox');
        // the bytes of the files this run uses: the chosen variants' models and the assets
        const m = runner.manifest;
        const paths = [
          ...m.models.flatMap((x) => x.variants.find((v) => v.id === r.variant[x.id])!.files),
          ...(m.assets ?? []).map((a) => a.path),
        ];
        used = paths.reduce((n, p) => n + m.files.find((f) => f.path === p)!.size, 0);
      } finally {
        await runner.close();
      }
    } finally {
      proto.read = original;
    }
    // The package's handle is the one that read its end record.
    const ranges = [...reads.values()].find((list) => list.some(([, end]) => end === size));
    expect(ranges).toBeDefined();
    const sorted = [...ranges!].sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < sorted.length; i++) {
      expect(
        sorted[i][0],
        `bytes ${sorted[i][0]}..${sorted[i][1]} read again (overlap with ${sorted[i - 1][0]}..${sorted[i - 1][1]})`,
      ).toBeGreaterThanOrEqual(sorted[i - 1][1]);
    }
    // …and the three models the run used were read (16 MB), not skipped; the GPU variants' were not.
    const read = sorted.reduce((n, [a, b]) => n + (b - a), 0);
    expect(read).toBeGreaterThan(used);
    expect(read).toBeLessThan(used + (size - used) * 0.05);
  });
});

describe('host detection spawns only tools that exist', () => {
  it.skipIf(process.platform === 'win32')(
    'a tool missing from PATH is reported without a process; one on PATH runs',
    async () => {
      const cp = createRequire(import.meta.url)('node:child_process') as typeof import('node:child_process');
      const original = cp.execFile;
      const spawned: string[] = [];
      cp.execFile = ((file: string, ...rest: unknown[]) => {
        spawned.push(file);
        return (original as (...a: unknown[]) => unknown)(file, ...rest);
      }) as typeof cp.execFile;
      syncBuiltinESMExports(); // the ES binding host-util.ts imported now sees the wrapper
      const path = process.env.PATH;
      try {
        const empty = tempDir();
        process.env.PATH = empty;
        expect(await runTool('nvidia-smi', [])).toEqual({ ok: false, reason: 'nvidia-smi not found' });
        expect(spawned).toEqual([]);
        writeFileSync(join(empty, 'nvidia-smi'), '#!/bin/sh\necho fake-smi\n');
        chmodSync(join(empty, 'nvidia-smi'), 0o755);
        expect(await runTool('nvidia-smi', [])).toEqual({ ok: true, value: 'fake-smi\n' });
        expect(spawned).toEqual(['nvidia-smi']);
      } finally {
        process.env.PATH = path;
        cp.execFile = original;
        syncBuiltinESMExports();
      }
    },
  );
});
