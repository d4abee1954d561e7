#!/usr/bin/env node
// run/bench may go on in a child started with huge-page malloc (cli/relaunch.ts); then this process
// only waits for it and exits as it did
import { relaunch } from '../dist/cli/relaunch.js';

if (!(await relaunch())) {
  const { main } = await import('../dist/cli/main.js');
  await main(process.argv);
}
