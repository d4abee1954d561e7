/**
 * Builds the browser entry `xpkg/browser` (dist/browser/) and the drop page (dist/web/) with
 * esbuild. The library modules are bundled from their TypeScript sources as they are, except the
 * few that adapt Node to xpkg (files, threads, the addon, onnxruntime-node, sharp, the sandbox's
 * worker thread): TWINS maps each to its browser twin, and browser/twins.ts type-checks that each
 * twin exports what the browser bundle uses of the module it replaces. Any `node:` import left in
 * the graph fails the build, naming the chain of importers that reached it.
 *
 *   node dist-tools/browser/build.js [--outdir dist] [--metafile]
 */
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Metafile, type Plugin } from 'esbuild';

/** Library module (from the repository root) → its browser twin. */
export const TWINS: Readonly<Record<string, string>> = {
  'platform/index.ts': 'browser/platform.ts',
  'pack/file-source.ts': 'browser/twins/file-source.ts',
  'signing/verify.ts': 'browser/twins/verify.ts',
  'native/env.ts': 'browser/twins/native-env.ts',
  'runner/host.ts': 'browser/twins/host.ts',
  'runner/backends/index.ts': 'browser/twins/backends.ts',
  'runner/pipeline/lazy-sharp.ts': 'browser/twins/lazy-sharp.ts',
  'runner/pipeline/image-decoder.ts': 'browser/twins/image-decoder.ts',
  'sandbox/transport.ts': 'browser/sandbox/transport.ts',
  'sandbox/thread.ts': 'browser/sandbox/thread.ts',
  'oci/ref.ts': 'browser/twins/oci-ref.ts',
  'runner/reference.ts': 'browser/twins/reference.ts',
};

/** The onnxruntime-web files served beside the bundle (its WASM build; loaded only to run a model). */
const ORT_FILES = [
  'ort-wasm-simd-threaded.wasm',
  'ort-wasm-simd-threaded.mjs',
  // WebGPU (only fetched when asked for and an adapter exists).
  'ort-wasm-simd-threaded.asyncify.wasm',
  'ort-wasm-simd-threaded.asyncify.mjs',
];

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      if (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name === 'xpkg') return dir;
    } catch {
      // not here
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('browser/build: package root not found');
    dir = up;
  }
}

export function twinsPlugin(root: string): Plugin {
  return {
    name: 'xpkg-twins',
    setup(b) {
      b.onResolve({ filter: /^\.\.?\// }, (args) => {
        const abs = resolve(args.resolveDir, args.path.replace(/\.js$/, '.ts'));
        const twin = TWINS[relative(root, abs).split('\\').join('/')];
        return twin ? { path: join(root, twin) } : undefined;
      });
      // A Node built-in in the graph is a bug: say which chain of modules pulled it in.
      // (Packages from npm map their optional built-ins away with their own "browser" field.)
      b.onResolve({ filter: /^node:|^(fs|path|os|crypto|zlib|worker_threads|module|url|child_process)$/ }, (args) =>
        args.importer.includes('node_modules')
          ? undefined
          : {
              errors: [
                {
                  text: `${args.path} imported by ${relative(root, args.importer)} (the browser bundle takes no Node API)`,
                },
              ],
            },
      );
    },
  };
}

export interface BuildResult {
  outdir: string;
  metafile: Metafile;
}

export async function buildBrowser(outRoot = 'dist', options: { minify?: boolean } = {}): Promise<BuildResult> {
  const root = findRoot();
  const out = resolve(root, outRoot);
  const lib = join(out, 'browser');
  const web = join(out, 'web');
  mkdirSync(lib, { recursive: true });
  mkdirSync(web, { recursive: true });
  const common = {
    absWorkingDir: root,
    bundle: true,
    format: 'esm' as const,
    platform: 'browser' as const,
    target: ['chrome120', 'firefox120', 'safari17'],
    minify: options.minify ?? true,
    sourcemap: 'linked' as const,
    metafile: true,
    legalComments: 'linked' as const,
    logLevel: 'warning' as const,
  };
  const result = await build({
    ...common,
    entryPoints: {
      xpkg: 'browser/index.ts',
      'xpkg-worker': 'browser/worker.ts',
      'xpkg-sandbox': 'browser/sandbox-worker.ts',
      'xpkg-ort': 'browser/ort-host.ts',
      'xpkg-ort-factory': 'browser/ort-factory.ts',
    },
    outdir: lib,
    // The in-page mode's library and onnxruntime-web load on first use, as their own chunks.
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
    // onnxruntime-web's WASM build, its loader kept as a file beside the bundle (ORT_FILES).
    conditions: ['onnxruntime-web-use-extern-wasm'],
    inject: [join(root, 'browser/buffer-shim.ts')],
    plugins: [twinsPlugin(root)],
  });
  // The page imports the library bundle beside it, not a copy of it.
  const page = await build({
    ...common,
    entryPoints: { app: 'web/app.ts' },
    outdir: web,
    plugins: [
      {
        name: 'xpkg-library',
        setup(b) {
          b.onResolve({ filter: /browser\/index\.js$/ }, () => ({ path: '../browser/xpkg.js', external: true }));
        },
      },
      twinsPlugin(root),
    ],
  });
  const metafile = result.metafile!;
  for (const [k, v] of Object.entries(page.metafile!.outputs)) metafile.outputs[k] = v;
  for (const [k, v] of Object.entries(page.metafile!.inputs)) metafile.inputs[k] ??= v;
  const ortDir = dirname(
    createRequire(join(root, 'package.json')).resolve('onnxruntime-web/ort-wasm-simd-threaded.wasm'),
  );
  for (const f of ORT_FILES) copyFileSync(join(ortDir, f), join(lib, f));
  // QuickJS for package scripts (the sandbox compiles it once per page).
  const require = createRequire(createRequire(join(root, 'package.json')).resolve('quickjs-emscripten'));
  copyFileSync(require.resolve('@jitl/quickjs-wasmfile-release-sync/wasm'), join(lib, 'quickjs-release-sync.wasm'));
  for (const f of ['index.html', 'app.css', 'embed.html']) copyFileSync(join(root, 'web', f), join(web, f));
  return { outdir: out, metafile };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const i = process.argv.indexOf('--outdir');
  const r = await buildBrowser(i > 0 ? process.argv[i + 1] : 'dist');
  const bytes = Object.entries(r.metafile.outputs)
    .filter(([f]) => f.endsWith('.js'))
    .map(([f, o]) => `${relative(r.outdir, f)} ${(o.bytes / 1024).toFixed(0)} KiB`);
  console.log(`built ${r.outdir}: ${bytes.join(', ')}`);
}
