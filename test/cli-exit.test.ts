/**
 * How `xpkg run` starts and ends (issue 11, cold start): in one process, which ends as soon as its
 * output is flushed, without its teardown (cli/exit.ts); only `xpkg serve` goes on in a child
 * (cli/relaunch.ts: its heap flag, and huge-page malloc on Linux with glibc), whose launcher passes
 * signals on and exits as it did. Through the real built CLI on the real fixtures.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { relaunchEnv, relaunchPlan } from '../cli/relaunch.js';
import { exitNow } from '../native/index.js';
import { tempDir } from './helpers/source.js';

const BIN = resolve('bin/xpkg.js');
const KEY = 'fixtures/keys/test.pub';
const IMAGE = 'fixtures/images/example.png';
const OCR = 'fixtures/dist/paddleocr-v4.xpkg';

/** Runs the CLI with stdout piped to a reader that takes nothing for `stallMs`, then all of it. */
function runSlowReader(
  args: string[],
  env: NodeJS.ProcessEnv,
  stallMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.pause();
    setTimeout(() => child.stdout.resume(), stallMs);
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: err }));
  });
}

const linuxFacts = {
  platform: 'linux' as const,
  argv: ['node', 'xpkg.js', 'serve', '--repo', 'r'],
  env: {},
  glibc: () => true,
  thp: () => 'always [madvise] never\n',
};

describe('when the launcher starts a child', () => {
  it('serve on Linux with glibc and THP gets the tunable, added to any already set', () => {
    expect(relaunchEnv(linuxFacts)?.GLIBC_TUNABLES).toBe('glibc.malloc.hugetlb=1');
    expect(
      relaunchEnv({
        ...linuxFacts,
        argv: ['node', 'x', '--json', 'serve', '--repo', 'r'],
        env: { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2', A: '1' },
      }),
    ).toEqual({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1', A: '1' });
  });

  it('not for one-shot commands (run, bench), another OS, musl, THP off, a tunable the user set, or XPKG_RELAUNCH=0', () => {
    for (const argv of [
      ['node', 'x'],
      ['node', 'x', '--help'],
      ['node', 'x', 'run', 'p.xpkg'],
      ['node', 'x', 'bench', 'p.xpkg'],
      ['node', 'x', 'verify', 'serve'],
      ['node', 'x', 'serve-models'],
    ])
      expect(relaunchPlan({ ...linuxFacts, argv })).toBeNull();
    expect(relaunchEnv({ ...linuxFacts, platform: 'darwin' })).toBeNull();
    expect(relaunchEnv({ ...linuxFacts, glibc: () => false })).toBeNull();
    expect(relaunchEnv({ ...linuxFacts, thp: () => 'always madvise [never]\n' })).toBeNull();
    expect(relaunchEnv({ ...linuxFacts, thp: () => null })).toBeNull();
    expect(relaunchEnv({ ...linuxFacts, env: { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' } })).toBeNull();
    expect(relaunchEnv({ ...linuxFacts, env: { XPKG_RELAUNCH: '0' } })).toBeNull();
  });

  it('serve also gets the daemon heap flag, on any OS, unless its process has it already', () => {
    const serve = { ...linuxFacts, argv: ['node', 'x', 'serve', '--repo', 'r'] };
    const flag = '--initial-old-space-size=64';
    expect(relaunchPlan(serve)).toEqual({ env: { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1' }, execArgv: [flag] });
    expect(relaunchPlan({ ...serve, platform: 'darwin', env: { A: '1' } })).toEqual({
      env: { A: '1' },
      execArgv: [flag],
    });
    // the child itself: both already there, nothing to relaunch (no loop)
    expect(
      relaunchPlan({ ...serve, env: { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1' }, execArgv: ['--import', 'h', flag] }),
    ).toBeNull();
    // a user's own size is kept; the tunable still relaunches
    expect(relaunchPlan({ ...serve, execArgv: ['--initial-old-space-size=256'] })?.execArgv).toEqual([]);
    expect(relaunchPlan({ ...serve, platform: 'darwin', argv: ['node', 'x', 'run'] })).toBeNull();
    expect(relaunchPlan({ ...serve, env: { XPKG_RELAUNCH: '0' } })).toBeNull();
  });

  it('a child whose launcher is already gone sees it at once; a stray XPKG_LAUNCHER naming a live process is ignored', () => {
    const watch = (launcher: number) =>
      spawnSync(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `const { launcherGone } = await import(${JSON.stringify(pathToFileURL(resolve('dist/cli/relaunch.js')).href)});\nlauncherGone().then(() => console.log('gone'));`,
        ],
        { encoding: 'utf8', env: { ...process.env, XPKG_LAUNCHER: String(launcher) }, timeout: 20_000 },
      );
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    expect(watch(dead).stdout.trim()).toBe('gone');
    // pid 1 is alive and not the child's parent: the variable was inherited from elsewhere, nothing to watch
    expect(watch(1)).toMatchObject({ status: 0, stdout: '' });
  });
});

describe('one process for run; the launcher of serve', () => {
  it('xpkg run reads the page in this one process, without the tunable', () => {
    const dir = tempDir('xpkg-relaunch-');
    const log = join(dir, 'pids.log');
    const hook = join(dir, 'hook.mjs');
    writeFileSync(
      hook,
      // node runs --import hooks in worker threads too (the image decoder's): each line names its thread
      `import { appendFileSync } from 'node:fs';\nimport { threadId } from 'node:worker_threads';\nappendFileSync(${JSON.stringify(log)}, JSON.stringify({ pid: process.pid, threadId, tunables: process.env.GLIBC_TUNABLES ?? null }) + '\\n');\n`,
    );
    const args = ['run', OCR, '--trust', KEY, '--input', IMAGE, '--state-dir', tempDir()];
    const env = { ...process.env };
    delete env.GLIBC_TUNABLES;
    delete env.XPKG_RELAUNCH;
    const r = spawnSync(process.execPath, ['--import', pathToFileURL(hook).href, BIN, ...args], {
      encoding: 'utf8',
      env,
    });
    expect(r.status, r.stderr).toBe(0);
    const lines = readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const procs = lines.filter((l) => l.threadId === 0);
    expect(procs).toHaveLength(1);
    expect(procs[0]).toMatchObject({ pid: r.pid, tunables: null });
    for (const t of lines) expect(t.pid).toBe(r.pid);
    expect(r.stdout).toContain('The quick brown fox jumps over the lazy dog near the river bank.');
  }, 60_000);

  it('a daemon that cannot start exits with the same status and error document launched as in one process', () => {
    const args = ['serve', '--repo', join(tempDir(), 'no-such-folder'), '--trust', KEY, '--port', '0', '--json'];
    const a = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
    const b = spawnSync(process.execPath, [BIN, ...args], {
      encoding: 'utf8',
      env: { ...process.env, XPKG_RELAUNCH: '0' },
    });
    expect(a.status).not.toBe(0);
    expect(a.status).toBe(b.status);
    expect(JSON.parse(a.stdout).error.code).toBe('E_SERVE_REPO');
    expect(JSON.parse(a.stdout).error.code).toBe(JSON.parse(b.stdout).error.code);
  }, 60_000);

  it.skipIf(process.platform !== 'linux')(
    'a signal the daemon does not handle (SIGHUP) reaches it through the launcher, and the launcher dies of it too',
    async () => {
      const parent: ChildProcess = spawn(
        process.execPath,
        [BIN, 'serve', '--repo', tempDir(), '--trust', KEY, '--port', '0', '--state-dir', tempDir()],
        { stdio: 'ignore' },
      );
      const children = `/proc/${parent.pid}/task/${parent.pid}/children`;
      let child = 0;
      for (let i = 0; i < 300 && !child; i++) {
        await new Promise((r) => setTimeout(r, 50));
        child = Number(existsSync(children) ? readFileSync(children, 'utf8').trim().split(' ')[0] : 0);
      }
      expect(child).toBeGreaterThan(0);
      const exited = new Promise<[number | null, NodeJS.Signals | null]>((r) =>
        parent.on('exit', (code, signal) => r([code, signal])),
      );
      parent.kill('SIGHUP');
      expect(await exited).toEqual([null, 'SIGHUP']);
      // the child is gone too (reaped by the launcher before it died)
      expect(
        existsSync(`/proc/${child}/cmdline`) && readFileSync(`/proc/${child}/cmdline`, 'utf8').includes('serve'),
      ).toBe(false);
    },
    60_000,
  );
});

describe.skipIf(!exitNow())('ending as soon as the output is flushed', () => {
  it('a 400 KB --json document reaches a reader that stalls first, whole', async () => {
    // more than a pipe holds: the process must wait for the reader before it ends
    const r = await runSlowReader(
      ['run', 'fixtures/dist/segmenter.xpkg', '--trust', KEY, '--input', IMAGE, '--json', '--state-dir', tempDir()],
      { XPKG_RELAUNCH: '0' },
      1500,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.length).toBeGreaterThan(256 * 1024);
    const doc = JSON.parse(r.stdout);
    expect(Object.keys(doc.result.outputs)).toEqual(['mask']);
  }, 60_000);

  it('the optimised-model cache a first run fills is complete when the process has ended', () => {
    const cache = tempDir('xpkg-exit-cache-');
    const r = spawnSync(
      process.execPath,
      [BIN, 'run', OCR, '--trust', KEY, '--input', IMAGE, '--state-dir', tempDir()],
      {
        encoding: 'utf8',
        env: { ...process.env, XPKG_CACHE: cache },
      },
    );
    expect(r.status, r.stderr).toBe(0);
    const files = readdirSync(join(cache, 'ort')).sort();
    // one optimised model and its record per model of the pipeline (det, cls, rec), no temp files
    expect(files.filter((f) => f.endsWith('.ort'))).toHaveLength(3);
    expect(files.filter((f) => f.endsWith('.json'))).toHaveLength(3);
    expect(files).toHaveLength(6);
    for (const f of files.filter((x) => x.endsWith('.json')))
      expect(() => JSON.parse(readFileSync(join(cache, 'ort', f), 'utf8'))).not.toThrow();
  }, 60_000);
});

describe('a reader that goes away', () => {
  /** Runs the CLI; `cut` closes its stdout or stderr once the first bytes arrived there. */
  function runCut(
    args: string[],
    cut: 'stdout' | 'stderr',
  ): Promise<{ code: number | null; out: string; err: string }> {
    return new Promise((done, fail) => {
      const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, XPKG_RELAUNCH: '0' } });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d;
        if (cut === 'stdout') child.stdout.destroy();
      });
      child.stderr.on('data', (d: Buffer) => {
        err += d;
        if (cut === 'stderr') child.stderr.destroy();
      });
      if (cut === 'stderr') child.stderr.destroy();
      child.on('error', fail);
      child.on('close', (code) => done({ code, out, err }));
    });
  }

  it('stdout closed after its first bytes (`| head -c`): the command ends with 141 and no stack trace', async () => {
    // a 400 KB document: more than a pipe holds, so writing goes on after the reader left
    const r = await runCut(
      ['run', 'fixtures/dist/segmenter.xpkg', '--trust', KEY, '--input', IMAGE, '--json', '--state-dir', tempDir()],
      'stdout',
    );
    expect(r.out.startsWith('{"result":')).toBe(true);
    expect(r.err).not.toMatch(/EPIPE|Unhandled|at .*\(node:/);
    expect(r.code).toBe(141); // 128 + SIGPIPE, as a shell reports a program a closed pipe ended
  }, 60_000);

  it('stderr closed: the lines for it are dropped and the result still comes out whole', async () => {
    const r = await runCut(
      ['run', OCR, '--trust', KEY, '--input', IMAGE, '--input', IMAGE, '--json', '--state-dir', tempDir()],
      'stderr',
    );
    expect(r.code).toBe(0);
    const lines = r.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.length).toBe(2);
    for (const l of lines) expect(l.result.outputs.lines.length).toBeGreaterThan(0);
  }, 60_000);
});
