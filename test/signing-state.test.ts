/**
 * Anti-rollback state under hostile conditions: a damaged copy of a newer release must not lock out
 * the intact older one (records are raised only after every byte in use verified), concurrent
 * writers in separate processes never lose each other's records, and a state folder on a pseudo
 * file system fails at once with its code instead of spinning.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, vi } from 'vitest';
import { packFolder } from '../pack/pack.js';
import { PackageReader } from '../pack/reader.js';
import { Runner } from '../runner/runner.js';
import { formatPublicKey, generateKeyPair, type KeyPair } from '../signing/keys.js';
import { withFileLock } from '../signing/lock.js';
import { sign } from '../signing/sign.js';
import { FileRollbackStore, ROLLBACK_FILE } from '../signing/state.js';
import { verify } from '../signing/verify.js';
import { EXIT } from '../spec/errors.js';
import { IMAGE_MODEL, writeImageSource, writePng, xpkgAsync } from './hardening-cli-helpers.js';
import { codeOf } from './helpers/errors.js';
import { tempDir } from './helpers/source.js';

// Every test here starts CLI processes (about 1–5 s each on a loaded two-core machine).
vi.setConfig({ testTimeout: 240_000 });

/** A signed image package with the given sequence. */
async function release(dir: string, key: KeyPair, sequence: number): Promise<string> {
  const src = await writeImageSource(join(dir, `src-${sequence}`), { name: 'rollback-demo', sequence });
  const out = join(dir, `v${sequence}.xpkg`);
  await packFolder(src, out);
  await sign(out, { key });
  return out;
}

/** A copy of `pkg` with one byte of its model flipped (the signature still verifies; the digest does not). */
async function damaged(pkg: string): Promise<string> {
  const reader = await PackageReader.open(pkg);
  const at = reader.entry(IMAGE_MODEL)!.dataOffset + 10;
  await reader.close();
  const bytes = await readFile(pkg);
  bytes[at] ^= 0x40;
  const out = pkg.replace(/\.xpkg$/, '-damaged.xpkg');
  await writeFile(out, bytes);
  return out;
}

async function setup() {
  const dir = tempDir('xpkg-rollback-');
  const key = generateKeyPair();
  const pub = join(dir, 'k.pub');
  await writeFile(pub, formatPublicKey(key.publicKey));
  const v1 = await release(dir, key, 1);
  const v2 = await release(dir, key, 2);
  const png = await writePng(join(dir, 'in.png'));
  return { dir, pub, v1, v2, bad: await damaged(v2), png, state: join(dir, 'state') };
}

describe('anti-rollback is raised only after verified bytes ran', () => {
  it('Runner: a damaged v2 fails with E_DIGEST_MISMATCH and the intact v1 still runs; an intact v2 then locks v1 out', async () => {
    const s = await setup();
    const opts = { trust: [s.pub], stateDir: s.state };
    {
      await using bad = await Runner.open(s.bad, opts);
      expect(await codeOf(bad.run({ image: s.png }))).toBe('E_DIGEST_MISMATCH');
    }
    {
      await using v1 = await Runner.open(s.v1, opts);
      const r = await v1.run({ image: s.png });
      expect((r.outputs.y as { dims: number[] }).dims).toEqual([1, 3, 4, 4]);
    }
    {
      // Opening (verifying the signature) alone records nothing either.
      await using v2 = await Runner.open(s.v2, opts);
      expect(v2.verification.signatures).toMatchObject({
        recorded: 0,
        pending: [{ name: 'rollback-demo', sequence: 2 }],
      });
      expect(await codeOf(Runner.open(s.v1, opts).then((r) => r.close()))).toBe('OK');
      await v2.run({ image: s.png });
      expect(v2.verification.signatures).toMatchObject({ recorded: 1, pending: [] });
    }
    expect(await codeOf(Runner.open(s.v1, opts))).toBe('E_POLICY_ROLLBACK');
  });

  it('CLI: `xpkg run` of a damaged v2 exits with the integrity status and `xpkg run` of v1 then succeeds', async () => {
    const s = await setup();
    const flags = ['--trust', s.pub, '--state-dir', s.state, '-i', s.png, '--json'];
    const bad = await xpkgAsync(['run', s.bad, ...flags]);
    expect(bad.json!.error!.code).toBe('E_DIGEST_MISMATCH');
    expect(bad.status).toBe(EXIT.integrity);
    const v1 = await xpkgAsync(['run', s.v1, ...flags]);
    expect(v1.status).toBe(0);
    expect(v1.json!.result.outputs.y.dims).toEqual([1, 3, 4, 4]);
    // `xpkg verify` (full integrity) of the damaged copy records nothing either.
    expect(
      (await xpkgAsync(['verify', s.bad, '--trust', s.pub, '--state-dir', s.state, '--json'])).json!.error!.code,
    ).toBe('E_DIGEST_MISMATCH');
    expect((await xpkgAsync(['run', s.v1, ...flags])).status).toBe(0);
    expect((await xpkgAsync(['run', s.v2, ...flags])).status).toBe(0);
    const refused = await xpkgAsync(['run', s.v1, ...flags]);
    expect(refused.json!.error!.code).toBe('E_POLICY_ROLLBACK');
    expect(refused.status).toBe(EXIT.policy);
  });
});

describe('rollback state file', () => {
  it('keeps every record when several processes write at once', async () => {
    const dir = tempDir('xpkg-state-race-');
    const procs = 6;
    const each = 15;
    const start = Date.now() + 1500;
    const state = resolve('dist/signing/state.js');
    // Each child records `each` package names one by one, all children starting at the same moment.
    const script = `
      const { FileRollbackStore } = await import(${JSON.stringify(state)});
      const [dir, id, each, start] = process.argv.slice(1);
      while (Date.now() < Number(start)) await new Promise((r) => setTimeout(r, 1));
      const store = await FileRollbackStore.open(dir);
      for (let j = 0; j < Number(each); j++) await store.record([{ keyid: 'a'.repeat(64), name: 'p' + id + '-' + j, sequence: j + 1 }]);
    `;
    const codes = await Promise.all(
      Array.from(
        { length: procs },
        (_, i) =>
          new Promise<number | null>((done) => {
            const child = spawn(
              process.execPath,
              ['--input-type=module', '-e', script, dir, String(i), String(each), String(start)],
              { stdio: ['ignore', 'ignore', 'inherit'] },
            );
            child.on('exit', (code) => done(code));
          }),
      ),
    );
    expect(codes).toEqual(Array(procs).fill(0));
    const store = await FileRollbackStore.open(dir);
    const missing: string[] = [];
    for (let i = 0; i < procs; i++)
      for (let j = 0; j < each; j++)
        if (store.highest('a'.repeat(64), `p${i}-${j}`) !== j + 1) missing.push(`p${i}-${j}`);
    expect(missing).toEqual([]);
  });

  it('breaks a lock left by a dead process, and gives up on a live one after the bounded wait', async () => {
    const dir = tempDir('xpkg-state-lock-');
    const dead = await new Promise<number>((done) => {
      const child = spawn(process.execPath, ['-e', '']);
      child.on('exit', () => done(child.pid!));
    });
    const { hostname } = await import('node:os');
    await writeFile(join(dir, `${ROLLBACK_FILE}.lock`), `${dead} ${hostname()}\n`);
    const store = await FileRollbackStore.open(dir, { waitMs: 2000 });
    await store.record([{ keyid: 'b'.repeat(64), name: 'x', sequence: 3 }]);
    expect((await FileRollbackStore.open(dir)).highest('b'.repeat(64), 'x')).toBe(3);

    await writeFile(join(dir, `${ROLLBACK_FILE}.lock`), `${process.pid} ${hostname()}\n`);
    const t0 = Date.now();
    const held = await FileRollbackStore.open(dir, { waitMs: 300 });
    expect(await codeOf(held.record([{ keyid: 'b'.repeat(64), name: 'x', sequence: 4 }]))).toBe('E_POLICY_STATE');
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('a holder whose lock was broken as stale leaves the lock its successor took in place', async () => {
    const lock = join(tempDir('xpkg-state-lock-'), 'x.lock');
    const gate = () => {
      let open!: () => void;
      return { wait: new Promise<void>((r) => (open = r)), open: () => open() };
    };
    const [firstIn, firstOut, secondIn, secondOut] = [gate(), gate(), gate(), gate()];
    const opts = { staleMs: 50, waitMs: 5000 };
    const first = withFileLock(lock, async () => (firstIn.open(), firstOut.wait), opts);
    await firstIn.wait;
    await sleep(150); // the first holder overruns staleMs: the next waiter breaks its lock
    const second = withFileLock(lock, async () => (secondIn.open(), secondOut.wait), opts);
    await secondIn.wait;
    firstOut.open();
    await first;
    expect(existsSync(lock)).toBe(true); // still the second holder's
    secondOut.open();
    await second;
    expect(existsSync(lock)).toBe(false);
  });

  it('a state folder on a pseudo file system fails at once with E_POLICY_STATE (library, verify and run)', async () => {
    const s = await setup();
    for (const stateDir of ['/proc/xpkg-state', '/proc/self/xpkg/state', '/sys/xpkg-state']) {
      expect(await codeOf(verify(s.v1, { trust: [s.pub], stateDir }))).toBe('E_POLICY_STATE');
    }
    // Before the fix these spun forever: the time limit kills such a process (no JSON, the test fails).
    const v = await xpkgAsync(['verify', s.v1, '--trust', s.pub, '--state-dir', '/proc/xpkg-state', '--json'], {
      timeoutMs: 60_000,
    });
    expect(v.json!.error!.code).toBe('E_POLICY_STATE');
    expect(v.status).toBe(EXIT.policy);
    const r = await xpkgAsync(
      ['run', s.v1, '--trust', s.pub, '--state-dir', '/proc/xpkg-state', '-i', s.png, '--json'],
      { timeoutMs: 60_000 },
    );
    expect(r.json!.error!.code).toBe('E_POLICY_STATE');
  });
});
