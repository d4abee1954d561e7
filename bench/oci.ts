/**
 * OCI distribution, side by side with skopeo on the same registry (Debian's docker-registry on
 * loopback, started here):
 *  1. push and pull of a package with a 1 GiB variant vs `skopeo copy` of the same artifact
 *     (from/to the OCI layout `xpkg export` writes: the same blobs); goal ≤ 1.2×;
 *  2. bytes over the wire for `pull --host auto` vs the whole multi-variant example package;
 *  3. `xpkg run oci://…` from an empty cache vs a warm one.
 *
 *   npm run build && npx tsx bench/oci.ts [--mib 1024] [--runs 3]
 *
 * The big model is a sparse temp file; everything is written under one temp folder, removed at the end.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { registryAvailable, startCuttingProxy, startRegistry, toolAvailable } from '../test/helpers/registry.js';
import { arg, median } from './util.js';

const mib = Number(arg('mib') ?? 1024);
const runs = Number(arg('runs') ?? 3);
if (!registryAvailable() || !toolAvailable('skopeo')) {
  console.error('bench/oci.ts needs docker-registry and skopeo (apt-get install -y docker-registry skopeo)');
  process.exit(2);
}
const root = mkdtempSync(join(process.env.BENCH_TMP ?? tmpdir(), 'xpkg-oci-bench-'));
const cli = resolve('bin/xpkg.js');
const run = promisify(execFile);
let n = 0;
const fresh = (what: string) => join(root, `${what}-${n++}`);

/** The CLI as a child process, asynchronously: the proxy of part 2 runs in this process. */
async function xpkg(args: string[], env: Record<string, string> = {}): Promise<{ ms: number; json: any }> {
  const t0 = performance.now();
  const r = await run(process.execPath, [cli, ...args, '--json'], {
    env: { ...process.env, ...env },
    maxBuffer: 1 << 26,
  }).catch((e: { stdout?: string; stderr?: string }) => {
    throw new Error(`xpkg ${args.join(' ')}: ${e.stdout}${e.stderr}`);
  });
  return { ms: performance.now() - t0, json: JSON.parse(r.stdout) };
}

function timed(cmd: string, args: string[]): number {
  const t0 = performance.now();
  execFileSync(cmd, args, { stdio: 'ignore' });
  return performance.now() - t0;
}

const row = (label: string, a: number, b: number, unit = 'ms') =>
  console.log(
    `${label.padEnd(44)} ${a.toFixed(0).padStart(8)} ${b.toFixed(0).padStart(8)} ${unit.padEnd(5)} ${(a / b).toFixed(2)}×`,
  );

const regX = await startRegistry();
try {
  // --- 1. a package with a 1 GiB variant -------------------------------------------------------
  const src = join(root, 'src');
  mkdirSync(join(src, 'models'), { recursive: true });
  truncateSync(
    (writeFileSync(join(src, 'models', 'big.onnx'), ''), join(src, 'models', 'big.onnx')),
    mib * 1024 * 1024,
  );
  writeFileSync(
    join(src, 'xpkg.json'),
    JSON.stringify({
      name: 'bench-big',
      version: '1.0.0',
      sequence: 1,
      license: 'MIT',
      task: 'tensor',
      inputs: [{ name: 'x', type: 'tensor' }],
      outputs: [{ name: 'y', type: 'tensor' }],
      models: [
        { id: 'm', variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['models/big.onnx'] }] },
      ],
      pipeline: { steps: [] },
    }),
  );
  const pkg = join(root, 'big.xpkg');
  await xpkg(['pack', src, '-o', pkg]);
  rmSync(src, { recursive: true });
  const layout = join(root, 'layout');
  await xpkg(['export', pkg, '--oci-layout', layout, '--tag', 'big']);
  const plain = ['--src-tls-verify=false', '--dest-tls-verify=false'];
  const push = { x: [] as number[], s: [] as number[] };
  const pull = { x: [] as number[], s: [] as number[] };
  for (let i = 0; i < runs; i++) {
    // Fresh registries each round: neither client can skip or mount a blob it pushed before
    // (skopeo remembers where it pushed blobs and mounts them from there).
    const [rx, rs] = await Promise.all([startRegistry(), startRegistry()]);
    try {
      push.x.push((await xpkg(['push', pkg, `${rx.host}/x/big:1`], { XPKG_CACHE: fresh('cache') })).ms);
      push.s.push(timed('skopeo', ['copy', ...plain, `oci:${layout}:big`, `docker://${rs.host}/s/big:1`]));
      const cache = fresh('cache');
      pull.x.push((await xpkg(['pull', `${rx.host}/x/big:1`], { XPKG_CACHE: cache })).ms);
      rmSync(cache, { recursive: true });
      const out = fresh('skopeo-layout');
      pull.s.push(timed('skopeo', ['copy', ...plain, `docker://${rs.host}/s/big:1`, `oci:${out}:big`]));
      rmSync(out, { recursive: true });
    } finally {
      await Promise.all([rx.stop(), rs.stop()]);
    }
  }
  const all = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(' ');
  console.log(
    `runs (ms): push xpkg ${all(push.x)} | skopeo ${all(push.s)}; pull xpkg ${all(pull.x)} | skopeo ${all(pull.s)}`,
  );
  console.log(`\n${mib} MiB variant over loopback, median of ${runs}      xpkg   skopeo        ratio (goal ≤ 1.20×)`);
  row('push (package → registry)', median(push.x), median(push.s));
  row('pull (registry → cache / OCI layout)', median(pull.x), median(pull.s));
  rmSync(pkg);
  rmSync(layout, { recursive: true });

  // --- 2. bytes for --host auto vs the whole multi-variant package -----------------------------
  const multi = 'fixtures/dist/multi-variant.xpkg';
  await xpkg(['push', multi, `${regX.host}/fx/multi:1`], { XPKG_CACHE: fresh('cache') });
  const wire = async (extra: string[]) => {
    const proxy = await startCuttingProxy(regX.port, Number.POSITIVE_INFINITY);
    const r = await xpkg(['pull', `${proxy.host}/fx/multi:1`, ...extra], { XPKG_CACHE: fresh('cache') });
    await proxy.close();
    return { wire: proxy.bytes(), payload: r.json.result.transfer.downloaded, file: r.json.result.size };
  };
  const whole = await wire([]);
  const auto = await wire(['--host', 'auto']);
  console.log(`\nmulti-variant example                           auto    whole  unit  ratio`);
  row('bytes over the wire (HTTP, all requests)', auto.wire, whole.wire, 'B');
  row('payload bytes downloaded', auto.payload, whole.payload, 'B');
  row('package file in the cache', auto.file, whole.file, 'B');

  // --- 3. run by reference, empty vs warm cache -------------------------------------------------
  const x = join(root, 'x.bin');
  writeFileSync(x, Buffer.from(new Float32Array([1, 2, 3]).buffer));
  const runArgs = ['run', `oci://${regX.host}/fx/multi:1`, '--trust', 'fixtures/keys/test.pub', '--input', `x=${x}`];
  const cold: number[] = [];
  const warm: number[] = [];
  const state = { XPKG_STATE_DIR: fresh('state') };
  for (let i = 0; i < Math.max(runs, 5); i++) {
    const cache = fresh('cache');
    cold.push((await xpkg(runArgs, { ...state, XPKG_CACHE: cache })).ms);
    warm.push((await xpkg(runArgs, { ...state, XPKG_CACHE: cache })).ms);
  }
  const fromFile: number[] = [];
  for (let i = 0; i < 5; i++) fromFile.push((await xpkg(['run', multi, ...runArgs.slice(2)], state)).ms);
  const local = median(fromFile);
  console.log(`\nxpkg run oci://… (process wall time)           empty     warm  unit  ratio`);
  row('run by reference', median(cold), median(warm));
  console.log(`${'(same package run from its file)'.padEnd(44)} ${local.toFixed(0).padStart(8)}`);
} finally {
  await regX.stop();
  rmSync(root, { recursive: true, force: true });
}
