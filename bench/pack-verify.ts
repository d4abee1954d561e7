/**
 * Pack and verify a package holding a generated model (1 GiB by default), side by side with
 * `sha256sum` on the same model file, printing times, peak RSS and ratios.
 *
 *   npx tsx bench/pack-verify.ts [sizeMiB]      (needs `npm run build` first: runs dist/cli)
 *
 * Goals (issue #2): verify ≤ 0.8× sha256sum, pack ≤ 1.5× sha256sum, peak RSS < 150 MB.
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const sizeMiB = Number(process.argv[2] ?? 1024);
const dir = mkdtempSync(join(process.env.BENCH_TMP ?? tmpdir(), 'xpkg-bench-'));
const src = join(dir, 'src');
mkdirSync(join(src, 'models'), { recursive: true });
const model = join(src, 'models', 'big.onnx');
const fd = openSync(model, 'w');
const chunk = Buffer.alloc(16 << 20);
for (let i = 0; i < sizeMiB / 16; i++) writeSync(fd, randomFillSync(chunk));
closeSync(fd);
writeFileSync(
  join(src, 'xpkg.json'),
  JSON.stringify({
    name: 'bench',
    version: '1.0.0',
    sequence: 1,
    license: 'MIT',
    task: 'image-classification',
    inputs: [{ name: 'image', type: 'image' }],
    outputs: [{ name: 'scores', type: 'tensor' }],
    models: [
      { id: 'm', variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['models/big.onnx'] }] },
    ],
    pipeline: { steps: [] },
  }),
);
const pkg = join(dir, 'bench.xpkg');
const main = pathToFileURL(resolve('dist/cli/main.js')).href;

function timed(label: string, cmd: string, args: string[]): { s: number; rssMB: number } {
  // Warm the page cache equally for everyone: the file was just written, so it is hot.
  const t = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0) throw new Error(`${label} failed: ${r.stderr}`);
  const m = /RSS (\d+)/.exec(r.stderr);
  return { s, rssMB: m ? Number(m[1]) / 1024 : NaN };
}
const xpkg = (args: string[]) => [
  '--input-type=module',
  '-e',
  `const m = await import(${JSON.stringify(main)}); await m.main(['node','xpkg',...${JSON.stringify(args)}]); process.stderr.write('RSS ' + process.resourceUsage().maxRSS + '\\n');`,
];

const best = (f: () => { s: number; rssMB: number }, n = 3) => {
  const runs = Array.from({ length: n }, f);
  return { s: Math.min(...runs.map((r) => r.s)), rssMB: Math.max(...runs.map((r) => r.rssMB)) };
};
const sha = best(() => timed('sha256sum', 'sha256sum', [model]));
const pack = best(() => {
  rmSync(pkg, { force: true });
  return timed('pack', process.execPath, xpkg(['pack', src, '-o', pkg]));
});
const verify = best(() => timed('verify', process.execPath, xpkg(['verify', pkg, '--allow-unsigned'])));
const row = (name: string, r: { s: number; rssMB: number }) =>
  `${name.padEnd(26)} ${r.s.toFixed(3).padStart(8)} s  ${(sizeMiB / 1024 / r.s).toFixed(2).padStart(6)} GiB/s  ${Number.isNaN(r.rssMB) ? '     -' : r.rssMB.toFixed(0).padStart(6)} MB RSS  ${(r.s / sha.s).toFixed(2)}× sha256sum`;
console.log(`model ${sizeMiB} MiB, best of 3, page cache warm, ${process.platform} ${process.arch}`);
console.log(row('sha256sum', sha));
console.log(row('xpkg pack', pack) + '   (goal ≤ 1.5×, RSS < 150 MB)');
console.log(row('xpkg verify --allow-unsigned', verify) + '   (goal ≤ 0.8×, RSS < 150 MB)');
rmSync(dir, { recursive: true, force: true });
