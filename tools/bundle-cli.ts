/**
 * Bundles the built CLI (dist/cli/main.js and every dist module it reaches) into dist/cli-bundle/
 * with esbuild: ES modules, one chunk per lazily imported group, npm packages left external. bin/xpkg.js
 * loads it instead of dist/cli/main.js when it is at least as new.
 *
 * Why: a cold `xpkg run` of the OCR package loaded 155 separate ES modules; Node's ESM loader
 * resolves, reads, compiles and links each one (~250–400 ms of CPU on a 2-core VM, the largest fixed
 * cost of the run). The bundle loads ~20 chunks for the same command. Commands stay lazily loaded:
 * each dynamic import is its own chunk, loaded on first use.
 *
 * `import.meta.url` in each module is rewritten to that module's own location in dist/ (the addon,
 * sharp, onnxruntime and the worker files are found from it), so the bundle behaves as the modules
 * it holds. meta.json maps each chunk to the dist modules in it (test/cold-start.test.ts checks what a
 * command loads through it).
 *
 *   npx tsx tools/bundle-cli.ts [dist]   (part of `npm run build`)
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

/** The bundle's folder inside dist/. */
export const BUNDLE_DIR = 'cli-bundle';

/** Each module's `import.meta.url` → its own URL in dist/, computed from the chunk's. */
function ownUrlPlugin(dist: string): Plugin {
  return {
    name: 'xpkg-own-url',
    setup(b) {
      b.onLoad({ filter: /\.js$/ }, async (args) => {
        if (!args.path.startsWith(dist + sep)) return undefined;
        const text = await readFile(args.path, 'utf8');
        if (!text.includes('import.meta.url')) return { contents: text, loader: 'js' };
        // chunks sit one folder below dist/, so `../<path in dist>` is the module's own file
        const own = `../${relative(dist, args.path).split(sep).join('/')}`;
        return {
          contents: text.replaceAll('import.meta.url', `new URL(${JSON.stringify(own)}, import.meta.url).href`),
          loader: 'js',
        };
      });
    },
  };
}

/** Builds dist/cli-bundle from the compiled dist/ (run tsc first). */
export async function bundleCli(distDir = 'dist'): Promise<void> {
  const dist = resolve(distDir);
  const out = join(dist, BUNDLE_DIR);
  await rm(out, { recursive: true, force: true });
  const result = await build({
    entryPoints: { main: join(dist, 'cli', 'main.js') },
    outdir: out,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // npm packages stay where npm put them: native addons are found relative to their own files
    packages: 'external',
    chunkNames: '[name]-[hash]',
    entryNames: '[name]',
    metafile: true,
    // whitespace only (names and code stay as they are): V8 scans every byte of a chunk when it
    // loads it, and the ~1 MB of generated validators shrinks by half (~15 ms of CPU at each start)
    minifyWhitespace: true,
    // so a stack trace from the bundle can still be read: `node --enable-source-maps` maps it back
    sourcemap: 'linked',
    logLevel: 'warning',
    plugins: [ownUrlPlugin(dist)],
  });
  const meta: Record<string, string[]> = {};
  for (const [file, o] of Object.entries(result.metafile.outputs)) {
    meta[relative(out, resolve(file)).split(sep).join('/')] = Object.keys(o.inputs)
      .map((i) => relative(dist, resolve(i)).split(sep).join('/'))
      .sort();
  }
  await writeFile(join(out, 'meta.json'), `${JSON.stringify(meta, null, 1)}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  await bundleCli(process.argv[2] ?? 'dist');
}
