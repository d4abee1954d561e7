/**
 * Cost of signature verification on top of integrity verification, on the same signed package.
 *
 *   npx tsx bench/verify-signed.ts [modelMiB=64] [runs=15]
 *
 * Prints medians of: integrity only (open + verifyIntegrity), full `verify --trust` (open,
 * trust file, key checks, envelope, ed25519, integrity, rollback state), their difference, and the
 * signature layer alone per ed25519 backend (OpenSSL via node:crypto, tweetnacl).
 */

import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packFolder } from '../pack/pack.js';
import { PackageReader } from '../pack/reader.js';
import { type Ed25519Backend, ed25519Backend, setEd25519Backend } from '../signing/ed25519.js';
import { verifySignatures } from '../signing/policy.js';
import { keygen, sign } from '../signing/sign.js';
import { resolvePolicy, verify } from '../signing/verify.js';

const modelMiB = Number(process.argv[2] ?? 64);
const runs = Number(process.argv[3] ?? 15);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
async function time(f: () => Promise<unknown> | unknown): Promise<number> {
  const t = performance.now();
  await f();
  return performance.now() - t;
}
async function series(f: () => Promise<unknown> | unknown, n = runs): Promise<number> {
  await f(); // warm-up
  const xs: number[] = [];
  for (let i = 0; i < n; i++) xs.push(await time(f));
  return median(xs);
}

const dir = await mkdtemp(join(tmpdir(), 'xpkg-bench-sig-'));
try {
  const src = join(dir, 'src');
  await mkdir(src);
  const model = Buffer.alloc(modelMiB * 1024 * 1024);
  for (let o = 0; o < model.length; o += 1 << 20) randomBytes(Math.min(1 << 20, model.length - o)).copy(model, o);
  await writeFile(join(src, 'model.onnx'), model);
  await writeFile(join(src, 'labels.txt'), 'cat\ndog\n');
  await writeFile(
    join(src, 'xpkg.json'),
    JSON.stringify({
      name: 'bench',
      version: '1.0.0',
      sequence: 1,
      license: 'MIT',
      task: 'image-classification',
      inputs: [{ name: 'image', type: 'image' }],
      outputs: [{ name: 'label', type: 'classification' }],
      models: [
        { id: 'm', variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['model.onnx'] }] },
      ],
      pipeline: { steps: [{ op: 'run', model: 'm' }] },
      assets: [{ id: 'labels', path: 'labels.txt', kind: 'labels' }],
    }),
  );
  const pkg = join(dir, 'bench.xpkg');
  await packFolder(src, pkg);
  const key = await keygen(join(dir, 'alice'), { passphrase: null });
  await sign(pkg, { key: key.secretKeyPath });
  const stateDir = join(dir, 'state');
  const policy = { trust: [key.publicKeyPath], stateDir };

  // Cold: what a fresh `xpkg verify` process pays once: key checks (canonical, small order, subgroup:
  // BigInt), OpenSSL key import, envelope parse, one ed25519 verification.
  let coldPolicy = 0;
  let coldSignatures = 0;
  {
    await using r = await PackageReader.open(pkg);
    let loaded!: Awaited<ReturnType<typeof resolvePolicy>>;
    coldPolicy = await time(async () => {
      loaded = await resolvePolicy(policy);
    });
    coldSignatures = await time(() =>
      verifySignatures(
        { manifestBytes: r.manifestBytes, manifest: r.manifest, id: r.id, signaturesBytes: r.signaturesBytes },
        loaded,
      ),
    );
  }

  // Interleaved pairs, so drift (page cache, other load on the machine) hits both sides alike;
  // the difference is the median of the per-pair differences.
  const integrityRun = async () => {
    await using r = await PackageReader.open(pkg);
    await r.verifyIntegrity();
  };
  const fullRun = () => verify(pkg, policy);
  await integrityRun();
  await fullRun();
  const a: number[] = [];
  const b: number[] = [];
  const d: number[] = [];
  for (let i = 0; i < runs; i++) {
    const swap = i % 2 === 1;
    const x = swap ? await time(fullRun) : await time(integrityRun);
    const y = swap ? await time(integrityRun) : await time(fullRun);
    const [ti, tf] = swap ? [y, x] : [x, y];
    a.push(ti);
    b.push(tf);
    d.push(tf - ti);
  }
  const integrityOnly = median(a);
  const full = median(b);
  const diff = median(d);
  const loadPolicy = await series(() => resolvePolicy(policy));

  const sigLayer: Record<Ed25519Backend, number> = { node: 0, tweetnacl: 0 };
  const before = ed25519Backend();
  {
    await using r = await PackageReader.open(pkg);
    const loaded = await resolvePolicy(policy);
    const input = {
      manifestBytes: r.manifestBytes,
      manifest: r.manifest,
      id: r.id,
      signaturesBytes: r.signaturesBytes,
    };
    for (const b of ['node', 'tweetnacl'] as const) {
      setEd25519Backend(b);
      sigLayer[b] = await series(() => verifySignatures(input, loaded), Math.max(runs, 30));
    }
  }
  setEd25519Backend(before);

  const f = (ms: number) => `${ms.toFixed(2).padStart(9)} ms`;
  console.log(`package: ${modelMiB} MiB model, signed by 1 key; ${runs} runs, medians; ed25519 backend: ${before}`);
  console.log(`integrity only (open + verifyIntegrity)     ${f(integrityOnly)}`);
  console.log(`verify --trust (signatures + integrity)     ${f(full)}`);
  console.log(`difference (median of paired differences)   ${f(diff)}   ratio ${(full / integrityOnly).toFixed(3)}`);
  console.log('signature side alone:');
  console.log(`  cold (first in process): trust + state    ${f(coldPolicy)}`);
  console.log(`  cold (first in process): signatures       ${f(coldSignatures)}`);
  console.log(`  warm: trust file + state file load        ${f(loadPolicy)}`);
  console.log(`  warm: signature layer, OpenSSL            ${f(sigLayer.node)}`);
  console.log(
    `  warm: signature layer, tweetnacl          ${f(sigLayer.tweetnacl)}   (${(sigLayer.tweetnacl / sigLayer.node).toFixed(1)}× OpenSSL)`,
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
