#!/usr/bin/env node
// serve goes on in a child started with its heap flag (cli/relaunch.ts); then this process only
// waits for it and exits as it did
import { statSync } from 'node:fs';
import { relaunch } from '../dist/cli/relaunch.js';

/**
 * The CLI bundled by tools/bundle-cli.ts (a few chunks instead of ~150 modules: a faster start), when
 * it is at least as new as the compiled modules it was made from; else those modules themselves.
 */
function entry() {
  try {
    const bundle = statSync(new URL('../dist/cli-bundle/main.js', import.meta.url)).mtimeMs;
    if (bundle >= statSync(new URL('../dist/cli/main.js', import.meta.url)).mtimeMs)
      return '../dist/cli-bundle/main.js';
  } catch {
    // not built: the modules
  }
  return '../dist/cli/main.js';
}

if (!(await relaunch())) {
  const { main } = await import(entry());
  await main(process.argv);
}
