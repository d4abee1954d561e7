/**
 * The container image (issue 16): its size (compressed layers as pushed, unpacked root) and the time
 * from start to ready (GET /v2/health/ready → 200) serving the detector, median of --runs, side by
 * side in one run: `xpkg serve` on this host (the reference), the image's entrypoint in a read-only
 * chroot of the unpacked bundle, and `podman run --read-only` of the image (when podman works here).
 *
 *   npm run image && npx tsx bench/image.ts [--runs 5]
 * (root: chroot, mounts and rootful podman need it)
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, copyFileSync, readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import {
  builtImage,
  IMAGE_WORK,
  ociImage,
  PODMAN,
  podmanAvailable,
  type RunningImage,
  runChroot,
  runPodman,
  waitReady,
} from '../test/helpers/image.js';
import { freePort } from '../test/helpers/registry.js';
import { tempDir } from '../test/helpers/source.js';

const runsArg = process.argv.indexOf('--runs');
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 3;
const info = builtImage();
if (!info) throw new Error(`no image in ${IMAGE_WORK}: run \`npm run image\` first`);

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
const { manifest } = ociImage(info.tag);
console.log(`image ${info.digest} (Debian ${info.suite}, node ${info.nodeVersion})`);
console.log(
  `  compressed ${mb(info.compressedBytes)} = ${manifest.layers.map((l: { size: number }) => mb(l.size)).join(' (Debian root) + ')} (app) + config/manifest`,
);
console.log(`  unpacked   ${mb(info.unpackedBytes)}, of which /opt/xpkg ${mb(info.appUnpackedBytes)}`);

const models = tempDir('xpkg-bench-image-models-');
copyFileSync('fixtures/dist/detector.xpkg', join(models, 'detector.xpkg'));
const trust = tempDir('xpkg-bench-image-trust-');
copyFileSync('fixtures/keys/test.pub', join(trust, 'publisher.pub'));
for (const d of [models, trust]) chmodSync(d, 0o755);

/** `xpkg serve` of this checkout as a host process, with the image's flags. */
async function runHost(): Promise<RunningImage> {
  const port = await freePort();
  const state = tempDir('xpkg-bench-image-state-');
  const child: ChildProcess = spawn(
    process.execPath,
    [resolve('bin/xpkg.js'), 'serve', '--repo', models, '--port', String(port), '--trust-dir', trust],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, XPKG_CACHE: state, XPKG_STATE_DIR: state } },
  );
  let out = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (out = (out + s).slice(-8000)));
  const exited = once(child, 'exit').then(([c]) => c as number | null);
  return {
    port,
    child,
    log: () => out,
    stop: async () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

const modes: [string, () => Promise<RunningImage>][] = [
  ['host process (node bin/xpkg.js serve)', runHost],
  ['chroot of the image (read-only, uid 65532)', () => runChroot({ models, trust })],
];
let podmanRef: string | undefined;
if (podmanAvailable()) {
  podmanRef = `localhost/xpkg/serve:${info.tag}`;
  execFileSync('skopeo', [
    'copy',
    '--quiet',
    `oci:${join(IMAGE_WORK, 'oci')}:${info.tag}`,
    `containers-storage:[overlay@/var/lib/containers/storage]${podmanRef}`,
  ]);
  modes.push(['podman run --read-only (runc)', () => runPodman(podmanRef!, { models, trust })]);
} else console.log('  (podman or runc missing: no container run)');

/**
 * CPU time (user + system, ms) of the running `xpkg.js serve` process and its model workers: robust to
 * the other load on this machine, unlike wall time. The newest matching process is this run's (the
 * modes run one at a time; podman's is a child of conmon, not of this script).
 */
function serverCpuMs(): number {
  const tick = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
  const procs = new Map<number, { ppid: number; cpu: number; start: number; cmd: string }>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').replaceAll('\0', ' ');
      procs.set(Number(d), {
        ppid: Number(f[1]),
        cpu: (Number(f[11]) + Number(f[12])) * tick,
        start: Number(f[19]),
        cmd,
      });
    } catch {} // exited meanwhile
  }
  const servers = [...procs]
    .filter(([, p]) => / \S*xpkg\.js serve /.test(p.cmd))
    .sort((a, b) => b[1].start - a[1].start);
  if (!servers.length) return Number.NaN;
  const tree = new Set([servers[0][0]]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, p] of procs)
      if (!tree.has(pid) && tree.has(p.ppid)) {
        tree.add(pid);
        grew = true;
      }
  }
  return [...tree].reduce((a, pid) => a + procs.get(pid)!.cpu, 0);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results: [string, number[], number[]][] = [];
const load0 = loadavg()[0];
for (const [name, start] of modes) {
  const times: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const r = await start();
    try {
      times.push(await waitReady(r, t0));
      cpu.push(serverCpuMs());
    } finally {
      await r.stop();
    }
  }
  results.push([name, times, cpu]);
}
const [base, baseCpu] = [median(results[0][1]), median(results[0][2])];
console.log(
  `\nstart → ready, detector only, median of ${RUNS} (load average ${load0.toFixed(2)} → ${loadavg()[0].toFixed(2)}):`,
);
console.log(`  ${''.padEnd(44)} ${'wall'.padStart(9)} (min–max)         ratio  ${'server CPU'.padStart(10)}  ratio`);
for (const [name, times, cpu] of results)
  console.log(
    `  ${name.padEnd(44)} ${median(times).toFixed(0).padStart(6)} ms (${Math.min(...times).toFixed(0)}–${Math.max(...times).toFixed(0)})`.padEnd(
      80,
    ) +
      ` ×${(median(times) / base).toFixed(2)}  ${median(cpu).toFixed(0).padStart(7)} ms  ×${(median(cpu) / baseCpu).toFixed(2)}`,
  );
if (podmanRef) execFileSync('podman', [...PODMAN, 'rmi', '--force', podmanRef], { stdio: 'ignore' });
