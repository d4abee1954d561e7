/**
 * One cold start, as a user's process sees it: open the package on the GPU (verification,
 * selection, loading, pre-warm), run it once on an image file, print one JSON line, exit. Spawned
 * by side-by-side.ts, which times it from process start to exit.
 *
 *   node dist-tools/bench/gpu/cold-child.js <pkg.xpkg> <image.png> variant|forced [auto|off]
 *
 * The last argument is open's pre-warm mode (default auto: every shape the pipeline can make, in
 * open; off: the first run pays for the shapes it meets).
 */
import type { PrewarmMode } from '../../runner/prewarm.js';
import { openGpu } from './common.js';

const [pkg, image, mode, prewarm = 'auto'] = process.argv.slice(2);
const t0 = performance.now();
const g = await openGpu(pkg, { prewarm: prewarm as PrewarmMode }, mode === 'forced' ? 'forced' : 'variant');
const t1 = performance.now();
const r = await g.runner.run({ image });
const t2 = performance.now();
await g.runner.close();
process.stdout.write(
  `${JSON.stringify({
    mode: g.mode,
    actualProvider: r.actualProvider,
    // performance.now() counts from process start: module loading included
    importMs: t0,
    openMs: t1 - t0,
    prewarmMs: g.runner.opened.ms.prewarm,
    firstRunMs: t2 - t1,
    bindings: r.bindings,
    outputs: Object.keys(r.outputs),
  })}\n`,
);
