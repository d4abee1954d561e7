/**
 * `xpkg serve` as a user runs it (the built CLI, dist/): JSON logs with request ids on stderr,
 * readiness after warm-up, a graceful SIGTERM (the request in flight finishes, exit 0), the daemon
 * in a child with its heap flag (cli/relaunch.ts) stopping once on a Ctrl-C, and the daemon's own
 * exit status for a bad repository.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../spec/errors.js';
import { xpkgAsync } from './helpers/cli.js';
import { http } from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

function serve(
  args: string[],
  node: string[] = [],
): { child: ChildProcess; lines: Record<string, any>[]; stdout: () => string } {
  const child = spawn(process.execPath, [...node, resolve('bin/xpkg.js'), 'serve', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, any>[] = [];
  let out = '';
  let buf = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    buf += s;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line.startsWith('{') ? JSON.parse(line) : { text: line });
    }
  });
  return { child, lines, stdout: () => out };
}

/** The daemon under the launcher, after a failed test (SIGKILL to the launcher does not reach it). */
function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {}
}

async function waitFor<T>(f: () => T | undefined, ms: number, what: string): Promise<T> {
  const t0 = performance.now();
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (performance.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('xpkg serve (CLI)', () => {
  it('logs JSON lines with request ids, is ready after warm-up, and stops gracefully on SIGTERM', async () => {
    const repo = tempDir('xpkg-serve-repo-');
    await copyFile('fixtures/dist/detector.xpkg', join(repo, 'detector.xpkg'));
    const d = serve([
      '--repo',
      repo,
      '--port',
      '0',
      '--trust',
      'fixtures/keys/test.pub',
      '--state-dir',
      tempDir(),
      '--log-format',
      'json',
      '--json',
    ]);
    try {
      const url = await waitFor(
        () => d.lines.find((l) => l.msg === 'listening')?.url as string | undefined,
        20_000,
        'listening',
      );
      await waitFor(() => d.lines.find((l) => l.msg === 'ready'), 30_000, 'ready');
      expect((await http(`${url}/v2/health/ready`)).status).toBe(200);
      const big = await sharp('fixtures/detector/eval/000.png').resize(2500, 2500).jpeg().toBuffer();
      const inflight = http(`${url}/xpkg/models/detector/run`, {
        method: 'POST',
        headers: { 'content-type': 'image/jpeg', 'x-request-id': 'last-one' },
        body: big,
      });
      await new Promise((r) => setTimeout(r, 30));
      d.child.kill('SIGTERM');
      const r = await inflight;
      expect(r.status).toBe(200);
      expect(r.body.result.outputs.boxes.length).toBeGreaterThan(0);
      const code = await new Promise<number | null>((res) => d.child.once('exit', (c) => res(c)));
      expect(code).toBe(0);
      expect(JSON.parse(d.stdout())).toEqual({ result: { url, stopped: 'SIGTERM' } });
      expect(d.lines.every((l) => !('text' in l) || l.text.startsWith('xpkg serve: stopped'))).toBe(true);
      expect(d.lines.find((l) => l.reqId === 'last-one')).toMatchObject({
        msg: 'request',
        status: 200,
        model: 'detector',
      });
      expect(d.lines.map((l) => l.msg)).toEqual(expect.arrayContaining(['model loaded', 'stopping', 'stopped']));
      await expect(fetch(`${url}/v2/health/live`)).rejects.toThrow();
    } finally {
      d.child.kill('SIGKILL');
      const pid = d.lines.find((l) => l.msg === 'listening')?.pid;
      if (pid) killQuietly(pid);
    }
  });

  it('runs in a child with the daemon heap flag (cli/relaunch.ts); a Ctrl-C reaching both processes stops it once, gracefully', async () => {
    const repo = tempDir('xpkg-serve-repo-');
    await copyFile('fixtures/dist/detector.xpkg', join(repo, 'detector.xpkg'));
    const dir = tempDir('xpkg-serve-hook-');
    const log = join(dir, 'procs.log');
    const hook = join(dir, 'hook.mjs');
    writeFileSync(
      hook,
      `import { appendFileSync } from 'node:fs';\nappendFileSync(${JSON.stringify(log)}, JSON.stringify({ pid: process.pid, ppid: process.ppid, execArgv: process.execArgv }) + '\\n');\n`,
    );
    const args = ['--repo', repo, '--port', '0', '--trust', 'fixtures/keys/test.pub', '--state-dir', tempDir()];
    const d = serve([...args, '--log-format', 'json', '--json'], ['--import', pathToFileURL(hook).href]);
    let pid = 0;
    try {
      const listening = await waitFor(() => d.lines.find((l) => l.msg === 'listening'), 20_000, 'listening');
      pid = listening.pid;
      await waitFor(() => d.lines.find((l) => l.msg === 'ready'), 30_000, 'ready');
      const procs = readFileSync(log, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      // the launcher, then the daemon (its model workers start without the hook)
      expect(procs.map((p) => p.pid)).toEqual([d.child.pid, pid]);
      expect(procs[1].ppid).toBe(d.child.pid);
      expect(procs[1].execArgv).toContain('--initial-old-space-size=64');
      expect(procs[0].execArgv).not.toContain('--initial-old-space-size=64');
      // a terminal's Ctrl-C goes to the whole process group: the daemon gets it, then the launcher's copy
      process.kill(pid, 'SIGINT');
      d.child.kill('SIGINT');
      const code = await new Promise<number | null>((res) => d.child.once('exit', (c) => res(c)));
      expect(code).toBe(0);
      expect(JSON.parse(d.stdout())).toEqual({ result: { url: listening.url, stopped: 'SIGINT' } });
      expect(d.lines.filter((l) => l.msg === 'stopping')).toHaveLength(1);
      expect(d.lines.map((l) => l.msg)).toContain('stopped');
    } finally {
      d.child.kill('SIGKILL');
      if (pid) killQuietly(pid);
    }
  });

  it('a launcher killed outright (SIGKILL) takes the daemon with it: a graceful stop within seconds', async () => {
    const repo = tempDir('xpkg-serve-repo-');
    const d = serve(['--repo', repo, '--port', '0', '--trust', 'fixtures/keys/test.pub', '--log-format', 'json']);
    let pid = 0;
    try {
      pid = (await waitFor(() => d.lines.find((l) => l.msg === 'listening'), 20_000, 'listening')).pid;
      expect(pid).not.toBe(d.child.pid);
      d.child.kill('SIGKILL');
      const stopping = await waitFor(() => d.lines.find((l) => l.msg === 'stopping'), 15_000, 'the daemon stopping');
      expect(stopping.signal).toBe('launcher gone');
      await waitFor(() => (existsSync(`/proc/${pid}`) ? undefined : true), 15_000, 'the daemon gone');
    } finally {
      if (pid) killQuietly(pid);
    }
  });

  it('a missing repository is E_SERVE_REPO with the daemon exit status; a bad flag is a usage error', async () => {
    const r = await xpkgAsync(['serve', '--repo', join(tempDir(), 'nope'), '--port', '0', '--json']);
    expect([r.status, r.json?.error?.code]).toEqual([EXIT.serve, 'E_SERVE_REPO']);
    const u = await xpkgAsync(['serve', '--repo', '.', '--isolation', 'vm', '--json']);
    expect([u.status, u.json?.error?.code]).toEqual([EXIT.usage, 'E_USAGE']);
  });
});
