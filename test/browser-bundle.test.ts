/**
 * The `xpkg/browser` bundle, built here from the sources with esbuild: no Node API anywhere in it,
 * the library's own reader, verifier, manifest checks and runner inside it (one verification path,
 * not a copy), none of the Node adapters that have browser twins, and the first visit of the page
 * (and everything a first OCR run then fetches) within 5 MB gzipped.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BuildResult, buildBrowser, TWINS } from '../browser/build.js';

const ROOT = join(import.meta.dirname, '..');
const FIVE_MB = 5 * 1000 * 1000;

describe('the browser bundle', () => {
  let out: string;
  let built: BuildResult;
  let files: string[];
  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), 'xpkg-bundle-'));
    built = await buildBrowser(out);
    files = (await readdir(out, { recursive: true, withFileTypes: true }))
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name));
  });
  afterAll(() => rm(out, { recursive: true, force: true }));

  // onnxruntime-web's emscripten loader (ort-wasm-*.mjs) is copied as published, not bundled: its
  // Node branches run only where it detects Node.
  it('imports no Node API: no node: specifier and no bare built-in in any script it bundles', async () => {
    const scripts = Object.keys(built.metafile.outputs)
      .filter((f) => f.endsWith('.js'))
      .map((f) => join(ROOT, f));
    expect(scripts.length).toBeGreaterThan(3);
    for (const f of scripts) {
      const text = await readFile(f, 'utf8');
      expect(text, relative(out, f)).not.toMatch(/(?:from|import\(|require\()\s*["']node:/);
      expect(text, relative(out, f)).not.toMatch(
        /(?:from|import\(|require\()\s*["'](?:fs|path|os|crypto|zlib|worker_threads|child_process|module)["']/,
      );
    }
  });

  it('bundles the library modules themselves and none of the Node adapters that have twins', () => {
    const inputs = Object.keys(built.metafile.inputs).map((p) => relative(ROOT, join(ROOT, p)));
    for (const shared of [
      'pack/reader.ts',
      'pack/entries.ts',
      'spec/manifest.ts',
      'signing/policy.ts',
      'signing/ed25519.ts',
      'signing/verify-reader.ts',
      'runner/runner.ts',
      'sandbox/sandbox.ts',
      'sandbox/worker.ts',
      'sandbox/serve.ts',
      'runner/pipeline/run.ts',
      'runner/select.ts',
      'native/index.ts',
      'native/portable/textdet.ts',
    ])
      expect(inputs, shared).toContain(shared);
    for (const [nodeModule, twin] of Object.entries(TWINS)) {
      expect(inputs, nodeModule).not.toContain(nodeModule);
      expect(inputs, twin).toContain(twin);
    }
  });

  it('first visit of the page, and everything a first run fetches, within 5 MB gzipped', async () => {
    const gz = async (f: string) => gzipSync(await readFile(f), { level: 9 }).length;
    // The page without a package: its HTML, CSS, script and the library's entry with its static imports.
    const closure = new Set<string>();
    const visit = (file: string) => {
      if (closure.has(file)) return;
      closure.add(file);
      for (const imp of built.metafile.outputs[file]?.imports ?? [])
        if (imp.kind === 'import-statement' && !imp.external) visit(imp.path);
    };
    const entry = Object.keys(built.metafile.outputs).filter((k) => /(web\/app|browser\/xpkg)\.js$/.test(k));
    for (const e of entry) visit(e);
    const page = [...closure].map((k) => join(ROOT, k));
    page.push(join(out, 'web', 'index.html'), join(out, 'web', 'app.css'));
    let firstVisit = 0;
    for (const f of page) firstVisit += await gz(f);
    // A first run adds the worker, every chunk and onnxruntime-web's WASM build (not the WebGPU one).
    let run = 0;
    for (const f of files)
      if (/\.(js|mjs|wasm|html|css)$/.test(f) && !/asyncify|ort\.webgpu/.test(f)) run += await gz(f);
    console.log(
      `browser bundle: first visit ${(firstVisit / 1e6).toFixed(3)} MB gzipped (goal ≤ 5 MB); with a first run ${(run / 1e6).toFixed(2)} MB`,
    );
    expect(page.some((f) => f.endsWith('xpkg.js'))).toBe(true);
    expect(firstVisit).toBeLessThanOrEqual(FIVE_MB);
    expect(run).toBeLessThanOrEqual(FIVE_MB);
  });
});
