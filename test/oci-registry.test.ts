/**
 * Distribution through a real OCI registry (Debian's docker-registry on loopback, started here):
 * push, whole and partial pull, byte identity, deduplication counted in the registry's storage, an
 * interrupted download resumed, a tampered blob refused, concurrent pulls into one cache, run by
 * reference (also offline), and the cache commands.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { EXIT } from '../spec/errors.js';
import { xpkgAsync as xpkg } from './helpers/cli.js';
import {
  registryAvailable,
  startCuttingProxy,
  startRegistry,
  storedBlobs,
  type TestRegistry,
} from './helpers/registry.js';
import { baseManifest, tempDir, writeSource } from './helpers/source.js';

vi.setConfig({ testTimeout: 120_000 });

const MULTI = 'fixtures/dist/multi-variant.xpkg';
const TRUST = ['--trust', 'fixtures/keys/test.pub'];
const available = registryAvailable();
if (!available && process.env.CI) throw new Error('docker-registry is missing (.ci/run installs it)');

/** A fresh cache per use, so no test sees another's. */
const cacheEnv = () => ({ XPKG_CACHE: tempDir('xpkg-cache-'), XPKG_STATE_DIR: tempDir('xpkg-state-') });

/** Packs a small unsigned package whose model file is `model`. */
async function packWith(name: string, model: Buffer): Promise<string> {
  const src = writeSource({ 'models/net.onnx': model }, baseManifest({ name }));
  const out = join(tempDir(), `${name}.xpkg`);
  const r = await xpkg(['pack', src, '-o', out]);
  if (r.status !== 0) throw new Error(r.stderr);
  return out;
}

const random = (n: number, seed: number) => {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
};

describe.skipIf(!available)('xpkg push / pull against docker-registry', () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startRegistry();
  });
  afterAll(async () => reg?.stop());

  it('pushes a package and pulls it back byte-identical; the layers are the files, digests their sha256', async () => {
    const env = cacheEnv();
    const push = await xpkg(['push', MULTI, `${reg.host}/fx/multi:1`, '--json'], env);
    expect(push.status, push.stderr).toBe(0);
    const out = join(tempDir(), 'back.xpkg');
    const pull = await xpkg(['pull', `${reg.host}/fx/multi:1`, '-o', out, '--json'], cacheEnv());
    expect(pull.status, pull.stderr).toBe(0);
    expect(readFileSync(out).equals(readFileSync(MULTI))).toBe(true);
    expect(pull.json!.result.digest).toBe(push.json!.result.digest);
    // Every payload file is a blob of the registry under its own sha256.
    const inspect = await xpkg(['inspect', MULTI, '--json']);
    const stored = storedBlobs(reg);
    for (const f of inspect.json!.result.files as { sha256: string }[])
      expect(stored.has(`sha256:${f.sha256}`)).toBe(true);
    expect(stored.has(`sha256:${inspect.json!.result.id}`)).toBe(true); // the config is the manifest
  });

  it('a partial pull keeps what --variant asks for, verifies, runs it and refuses a variant it lacks', async () => {
    const env = cacheEnv();
    expect((await xpkg(['push', MULTI, `${reg.host}/fx/multi:2`], env)).status).toBe(0);
    const part = join(tempDir(), 'part.xpkg');
    const r = await xpkg(['pull', `${reg.host}/fx/multi:2`, '--variant', 'cpu-fp32', '-o', part, '--json'], cacheEnv());
    expect(r.status, r.stderr).toBe(0);
    expect(r.json!.result.absent.length).toBeGreaterThan(0);
    expect(readFileSync(part).length).toBeLessThan(readFileSync(MULTI).length);
    const v = await xpkg(['verify', part, ...TRUST, '--json'], env);
    expect(v.status, v.stderr).toBe(0);
    expect(v.json!.result.integrity.absent).toEqual(r.json!.result.absent);
    const x = join(tempDir(), 'x.bin');
    writeFileSync(x, Buffer.from(new Float32Array([1, 2, 3]).buffer));
    const ran = await xpkg(['run', part, ...TRUST, '--input', `x=${x}`, '--json'], env);
    expect(ran.status, ran.stderr).toBe(0);
    expect(ran.json!.result.variant['add-one']).toBe('cpu-fp32');
    expect(ran.json!.result.outputs.y.data).toEqual([2, 3, 4]);
    const refused = await xpkg(
      ['run', part, ...TRUST, '--variant', 'cpu-int8-vnni', '--input', `x=${x}`, '--json'],
      env,
    );
    expect(refused.json!.error!.code).toBe('E_RUN_VARIANT_ABSENT');
    expect(refused.status).toBe(EXIT.runner);
    // --host <profile>: exactly the variants explain says that host can run, and their files.
    const jetson = 'fixtures/hosts/jetson-orin.json';
    const explained = await xpkg(['explain', MULTI, '--host', jetson, '--json']);
    const runnable = (explained.json!.result.models[0].variants as { id: string; status: string }[])
      .filter((v) => v.status !== 'rejected')
      .map((v) => v.id);
    const forHost = await xpkg(['pull', `${reg.host}/fx/multi:2`, '--host', jetson, '--json'], cacheEnv());
    expect(forHost.status, forHost.stderr).toBe(0);
    const manifest = (await xpkg(['inspect', MULTI, '--json'])).json!.result;
    const kept = new Set(
      (manifest.models[0].variants as { id: string; files: string[] }[])
        .filter((v) => runnable.includes(v.id))
        .flatMap((v) => v.files),
    );
    expect(kept.size).toBeGreaterThan(0);
    expect(forHost.json!.result.absent.sort()).toEqual(
      (manifest.files as { path: string }[])
        .map((f) => f.path)
        .filter((p) => !kept.has(p))
        .sort(),
    );
    const unknown = await xpkg(['pull', `${reg.host}/fx/multi:2`, '--variant', 'no-such', '--json'], cacheEnv());
    expect(unknown.json!.error!.code).toBe('E_USAGE');
    expect(unknown.status).toBe(EXIT.usage);
    // The same selection pulled twice is the same file (the partial layout is deterministic).
    const again = join(tempDir(), 'again.xpkg');
    expect(
      (await xpkg(['pull', `${reg.host}/fx/multi:2`, '--variant', 'cpu-fp32', '-o', again], cacheEnv())).status,
    ).toBe(0);
    expect(readFileSync(again).equals(readFileSync(part))).toBe(true);
  });

  it('a blob shared by two packages is stored once and mounted, not uploaded, the second time', async () => {
    const env = cacheEnv();
    const shared = random(300_000, 7);
    const a = await packWith('dedup-a', shared);
    const b = await packWith('dedup-b', shared);
    const before = storedBlobs(reg).size;
    const pa = await xpkg(['push', a, `${reg.host}/dedup/a:1`, '--json'], env);
    const pb = await xpkg(['push', b, `${reg.host}/dedup/b:1`, '--json'], env);
    expect(pa.status, pa.stderr).toBe(0);
    expect(pb.status, pb.stderr).toBe(0);
    const blobsA = new Set<string>(pa.json!.result.blobs.map((x: { digest: string }) => x.digest));
    const blobsB = new Set<string>(pb.json!.result.blobs.map((x: { digest: string }) => x.digest));
    const union = new Set([...blobsA, ...blobsB]);
    // +2: the two OCI manifests are blobs in the registry's storage too.
    expect(storedBlobs(reg).size - before).toBe(union.size + 2);
    expect(union.size).toBeLessThan(blobsA.size + blobsB.size);
    const model = pb.json!.result.blobs.find((x: { size: number }) => x.size === shared.length);
    expect(model.outcome).toBe('mounted');
    expect(pb.json!.result.uploadedBytes).toBeLessThan(shared.length);
  });

  it('an interrupted download resumes where it stopped, in a later process and across cut connections', async () => {
    const big = await packWith('resume', random(6 * 1024 * 1024, 11));
    expect((await xpkg(['push', big, `${reg.host}/resume/p:1`], cacheEnv())).status).toBe(0);
    const proxy = await startCuttingProxy(reg.port, 2 * 1024 * 1024);
    try {
      const env = cacheEnv();
      const first = await xpkg(['pull', `${proxy.host}/resume/p:1`, '--json'], { ...env, XPKG_OCI_RETRIES: '0' });
      expect(first.json!.error!.code).toBe('E_OCI_NETWORK');
      expect(first.status).toBe(EXIT.oci);
      expect(readdirSync(join(env.XPKG_CACHE, 'tmp')).some((f) => f.endsWith('.part'))).toBe(true);
      const sentFirst = proxy.bytes();
      const out = join(tempDir(), 'resumed.xpkg');
      const second = await xpkg(['pull', `${proxy.host}/resume/p:1`, '-o', out, '--json'], {
        ...env,
        XPKG_OCI_RETRIES: '8',
      });
      expect(second.status, second.stderr).toBe(0);
      expect(readFileSync(out).equals(readFileSync(big))).toBe(true);
      const t = second.json!.result.transfer;
      expect(t.resumed).toBeGreaterThan(0);
      // Nothing fetched twice: the second process moved only what the first had not.
      const files = (await xpkg(['inspect', big, '--json'])).json!.result.files as { size: number }[];
      expect(t.resumed + t.downloaded).toBe(files.reduce((n, f) => n + f.size, 0));
      expect(proxy.bytes() - sentFirst).toBeLessThan(6 * 1024 * 1024 - t.resumed + 512 * 1024);
    } finally {
      await proxy.close();
    }
  });

  it('a registry serving a tampered blob is refused with E_OCI_DIGEST and nothing is cached', async () => {
    const pkg = await packWith('tamper', random(100_000, 3));
    const push = await xpkg(['push', pkg, `${reg.host}/tamper/p:1`, '--json'], cacheEnv());
    expect(push.status).toBe(0);
    const model = push.json!.result.blobs.find((x: { size: number }) => x.size === 100_000).digest;
    const file = storedBlobs(reg).get(model)!;
    const bytes = readFileSync(file);
    bytes[5000] ^= 1;
    writeFileSync(file, bytes);
    const env = cacheEnv();
    const r = await xpkg(['pull', `${reg.host}/tamper/p:1`, '--json'], env);
    expect(r.json!.error!.code).toBe('E_OCI_DIGEST');
    expect(r.status).toBe(EXIT.oci);
    expect(readdirSync(join(env.XPKG_CACHE, 'packages'))).toEqual([]);
  });

  it('a package pushed in chunks: concurrent pulls of it into one cache all succeed and leave one intact copy', async () => {
    const pkg = await packWith('concurrent', random(3 * 1024 * 1024, 5));
    // Pushed in 1 MiB PATCH chunks (the chunked upload path; 64 MiB chunks by default).
    const push = await xpkg(['push', pkg, `${reg.host}/conc/p:1`, '--json'], {
      ...cacheEnv(),
      XPKG_OCI_CHUNK_BYTES: String(1 << 20),
    });
    expect(push.status, push.stderr).toBe(0);
    expect(
      push.json!.result.blobs.some(
        (b: { size: number; outcome: string }) => b.size > 1 << 20 && b.outcome === 'uploaded',
      ),
    ).toBe(true);
    const env = cacheEnv();
    const outs = [0, 1, 2].map((i) => join(tempDir(), `c${i}.xpkg`));
    const runs = await Promise.all(outs.map((o) => xpkg(['pull', `${reg.host}/conc/p:1`, '-o', o, '--json'], env)));
    for (const r of runs) expect(r.status, r.stderr).toBe(0);
    for (const o of outs) expect(readFileSync(o).equals(readFileSync(pkg))).toBe(true);
    // One assembled the package; the others found it done (or waited on its lock).
    expect(runs.filter((r) => r.json!.result.cached === false).length).toBe(1);
    expect(readdirSync(join(env.XPKG_CACHE, 'packages'))).toHaveLength(1);
    const v = await xpkg(['cache', 'verify', '--json'], env);
    expect(v.status, v.stderr).toBe(0);
  });

  it('runs by reference from an empty cache, then from the cache with the registry unreachable', async () => {
    expect((await xpkg(['push', MULTI, `${reg.host}/fx/run:1`], cacheEnv())).status).toBe(0);
    const proxy = await startCuttingProxy(reg.port, Number.POSITIVE_INFINITY);
    const env = cacheEnv();
    const x = join(tempDir(), 'x.bin');
    writeFileSync(x, Buffer.from(new Float32Array([5]).buffer));
    const args = ['run', `oci://${proxy.host}/fx/run:1`, ...TRUST, '--input', `x=${x}`, '--json'];
    const cold = await xpkg(args, env);
    expect(cold.status, cold.stderr).toBe(0);
    expect(cold.json!.result.outputs.y.data).toEqual([6]);
    // Only what this host can run was fetched: a partial package in the cache.
    const files = readdirSync(join(env.XPKG_CACHE, 'packages'));
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^[a-f0-9]{64}\.[a-f0-9]{16}\.xpkg$/);
    await proxy.close();
    const offline = await xpkg(args, env);
    expect(offline.status, offline.stderr).toBe(0);
    expect(offline.json!.result.outputs.y.data).toEqual([6]);
    // A short name through the default registry.
    const short = await xpkg(['run', 'fx/run:1', ...TRUST, '--input', `x=${x}`, '--json'], {
      ...env,
      XPKG_REGISTRY: reg.host,
    });
    expect(short.status, short.stderr).toBe(0);
  });

  it('cache ls lists, verify catches a damaged package, gc removes what no reference reaches', async () => {
    const env = cacheEnv();
    expect((await xpkg(['push', MULTI, `${reg.host}/fx/cache:1`], env)).status).toBe(0);
    expect((await xpkg(['pull', `${reg.host}/fx/cache:1`], env)).status).toBe(0);
    const ls = await xpkg(['cache', 'ls', '--json'], env);
    expect(ls.json!.result.references.map((r: { reference: string }) => r.reference)).toContain(
      `${reg.host}/fx/cache:1`,
    );
    expect(ls.json!.result.packages).toHaveLength(1);
    const file = join(env.XPKG_CACHE, 'packages', ls.json!.result.packages[0].file);
    const bytes = readFileSync(file);
    bytes[bytes.length - 200_000] ^= 1;
    writeFileSync(file, bytes);
    const bad = await xpkg(['cache', 'verify', '--json'], env);
    expect(bad.json!.error!.code).toBe('E_OCI_CACHE');
    expect(bad.status).toBe(EXIT.oci);
    const gc = await xpkg(['cache', 'gc', '--all', '--json'], env);
    expect(gc.status).toBe(0);
    expect(existsSync(file)).toBe(false);
    expect((await xpkg(['cache', 'verify', '--json'], env)).status).toBe(0);
  });
});
