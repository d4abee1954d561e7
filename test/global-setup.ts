/** Builds dist/ (the CLI tests run bin/xpkg.js) and the fixture packages once per test run. */
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  // XPKG_TEST_SKIP_BUILD=1 reuses the current dist/ and fixtures/dist/ (for quick local re-runs).
  if (process.env.XPKG_TEST_SKIP_BUILD === '1') return;
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
  execFileSync(process.execPath, ['dist/fixtures/build.js'], { stdio: 'inherit' });
}
