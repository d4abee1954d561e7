/**
 * Builds dist/ (the CLI tests run bin/xpkg.js; the browser suites serve dist/browser and dist/web),
 * the tools (dist-tools/: fixtures, benches, vector tooling, kept out of the published dist/) and the
 * fixture packages once per test run.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildBrowser } from '../browser/build.js';
import { buildOrtBinding } from '../runner/gpu-binding.js';
import { bundleCli } from '../tools/bundle-cli.js';

/** Bytes under `dir` (files only; links not followed). */
function bytesUnder(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true }))
    if (e.isFile()) n += statSync(join(e.parentPath, e.name), { throwIfNoEntry: false })?.size ?? 0;
  return n;
}

export default async function setup(): Promise<() => void> {
  // Every temporary file of the run (the tests', the CLI processes and daemons they spawn, Chromium's,
  // Python's) goes under one folder, removed when the run ends: a run used to leave gigabytes in /tmp.
  // TMPDIR reaches the test workers and their children as XPKG_CACHE does.
  const root = mkdtempSync(join(tmpdir(), 'xpkg-test-run-'));
  process.env.TMPDIR = root;
  // Tests keep optimised models in a cache of their own, never in the user's, and anti-rollback
  // state of their own: runs without --state-dir recorded the packages they accepted in the user's
  // ~/.local/state/xpkg, where a detector of sequence 2 made by hand there failed every later run of
  // the fixture's sequence 1 (E_POLICY_ROLLBACK)
  const cache = mkdtempSync(join(root, 'xpkg-test-cache-'));
  process.env.XPKG_CACHE = cache;
  process.env.XPKG_STATE_DIR = mkdtempSync(join(root, 'xpkg-test-state-'));
  const teardown = () => {
    const mb = bytesUnder(root) / 2 ** 20;
    rmSync(root, { recursive: true, force: true });
    console.log(`global teardown: removed ${mb.toFixed(0)} MiB of the run's temporary files (${root})`);
  };
  // With onnxruntime's C API headers at hand (.ci/run fetches them), the C API binding is built
  // once, so its tests (test/ort-capi.test.ts) run rather than skip.
  const headers = process.env.XPKG_ORT_HEADERS_TARBALL;
  if (headers) await buildOrtBinding({ tarball: headers, log: (line) => console.log(`global set-up: ${line}`) });
  // XPKG_TEST_SKIP_BUILD=1 reuses the current dist/ and fixtures/dist/ (for quick local re-runs).
  if (process.env.XPKG_TEST_SKIP_BUILD === '1') return teardown;
  const tsc = 'node_modules/typescript/bin/tsc';
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
  await bundleCli('dist');
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.tools.json'], { stdio: 'inherit' });
  execFileSync(process.execPath, ['dist-tools/fixtures/build.js'], { stdio: 'inherit' });
  await buildBrowser('dist');
  return teardown;
}
