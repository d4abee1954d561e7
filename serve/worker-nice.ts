/**
 * Preloaded into a process worker (`--import`, before the worker's own modules load): every thread
 * to the niceness in XPKG_WORKER_NICE, so that starting the worker (~0.25 s of CPU loading modules)
 * already runs at the loading priority (serve/priority.ts), not only what follows its 'open'.
 */
import { setProcessNice } from './priority.js';

const nice = Number(process.env.XPKG_WORKER_NICE);
delete process.env.XPKG_WORKER_NICE;
if (Number.isInteger(nice) && nice > 0)
  try {
    setProcessNice(nice);
    // done: 'open' leaves it as it is now (the daemon may have lowered it meanwhile, serve/version.ts)
    (globalThis as Record<symbol, unknown>)[Symbol.for('xpkg.worker.niced')] = nice;
  } catch {
    // the 'open' message sets it again and reports a failure there
  }
