/**
 * Helpers for the split-inference tests: real `xpkg serve` peers from the built CLI (dist/) with a
 * fabric token and an injected host profile, another signed version of the detector-split fixture,
 * and a loopback TCP relay that can end the peer behind it when a request starts arriving.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { HttpOffloader } from '../../fabric/client.js';
import { StaticPeers } from '../../fabric/peers.js';
import { prepare } from '../../fixtures/detector-split/build.js';
import { packFolder } from '../../pack/pack.js';
import { Runner, type RunResult } from '../../runner/runner.js';
import type { SplitPlacement } from '../../runner/types.js';
import { sign } from '../../signing/sign.js';
import type { ManifestSource } from '../../spec/schema.js';
import { tempDir } from './source.js';

export const TOKEN = 'test-fabric-token-0123456789abcdef';

export const PKG = 'fixtures/dist/detector-split.xpkg';
/** The device: a CPU-only host profile. */
export const DEVICE = 'fixtures/hosts/x64-avx2.json';
export const PEER_HOST = 'fixtures/hosts/x64-avx512-vnni.json';
export const LOW = readFileSync('fixtures/detector/eval/001.png'); // the head's score ≈ 0.005
export const HIGH = readFileSync('fixtures/detector/eval/000.png'); // ≈ 0.81
export const DEADLINE_MS = 2000; // the fixture's split step

/** A repository folder holding `pkg` as detector-split.xpkg. */
export async function repoWith(pkg: string): Promise<string> {
  const repo = tempDir('xpkg-fabric-repo-');
  await copyFile(pkg, join(repo, 'detector-split.xpkg'));
  return repo;
}

/** The device: the fixture opened here with an offloader to `urls`. */
export function device(urls: string[], token = TOKEN, pkg = PKG): Promise<Runner> {
  return Runner.open(pkg, {
    trust: ['fixtures/keys/test.pub'],
    stateDir: tempDir('xpkg-fabric-device-'),
    host: DEVICE,
    offloader: new HttpOffloader({ peers: new StaticPeers(urls), token }),
  });
}

export const placement = (r: RunResult): SplitPlacement => r.split!['detector-head'];
export const boxes = (r: RunResult) => r.outputs.boxes as { box: number[]; label: string }[];

export async function tokenFile(token = TOKEN): Promise<string> {
  const f = join(tempDir('xpkg-fabric-token-'), 'token');
  await writeFile(f, `${token}\n`, { mode: 0o600 });
  return f;
}

export interface Peer {
  url: string;
  child: ChildProcess;
  /** The daemon's own process (the child is the launcher that started it, cli/relaunch.ts). */
  pid: number;
  stop(): Promise<void>;
}

/** `xpkg serve` on a free loopback port, serving `repo`, ready (warmed up) when this resolves. */
export async function startPeer(o: {
  repo: string;
  token?: string;
  hostProfile: string;
  /** More `xpkg serve` flags (e.g. --announce). */
  extra?: string[];
}): Promise<Peer> {
  const child = spawn(
    process.execPath,
    [
      resolve('bin/xpkg.js'),
      'serve',
      '--repo',
      o.repo,
      '--port',
      '0',
      '--trust',
      'fixtures/keys/test.pub',
      '--state-dir',
      tempDir('xpkg-fabric-state-'),
      '--host-profile',
      o.hostProfile,
      '--fabric-token-file',
      await tokenFile(o.token),
      '--log-format',
      'json',
      ...(o.extra ?? []),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let url: string | undefined;
  let pid = 0;
  let buf = '';
  const ready = new Promise<void>((ok, fail) => {
    child.once('exit', (code) =>
      fail(new Error(`xpkg serve exited (${code}) before it was ready: ${buf.slice(-2000)}`)),
    );
    child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      buf += s;
      for (const line of buf.split('\n')) {
        if (!line.startsWith('{')) continue;
        const l = JSON.parse(line) as { msg?: string; url?: string; pid?: number };
        if (l.msg === 'listening') [url, pid] = [l.url, l.pid ?? child.pid!];
        if (l.msg === 'ready' && url) ok();
      }
      buf = buf.slice(buf.lastIndexOf('\n') + 1);
    });
  });
  await ready;
  return {
    url: url!,
    child,
    pid,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}

/** The detector-split fixture as another signed version (sequence 2, `edit`ed): the same name, another id. */
export async function otherVersion(edit?: (manifest: ManifestSource) => void): Promise<string> {
  const src = tempDir('xpkg-fabric-src-');
  await prepare(src);
  const m = JSON.parse(await readFile(join(src, 'xpkg.json'), 'utf8'));
  m.sequence = 2;
  edit?.(m);
  await writeFile(join(src, 'xpkg.json'), JSON.stringify(m, null, 2));
  const out = join(tempDir('xpkg-fabric-pkg-'), 'detector-split.xpkg');
  await packFolder(src, out, { sourceDateEpoch: '' });
  await sign(out, { key: 'fixtures/keys/test.key', out, passphrase: '', force: true });
  return out;
}

/**
 * A loopback relay to `target`; `onRequest` runs when the first bytes of a connection arrive. With
 * `stall`, requests are taken in and never passed on (a peer that stopped answering).
 */
export async function relay(
  target: URL,
  onRequest: () => void,
  o: { stall?: boolean } = {},
): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const up = connect(Number(target.port), target.hostname);
    sockets.add(client).add(up);
    let first = true;
    client.on('data', (d) => {
      if (first) {
        first = false;
        onRequest();
      }
      if (!o.stall) up.write(d);
    });
    up.on('data', (d) => client.write(d));
    // either side gone: the other goes too (a killed peer resets the device's connection)
    const end = () => {
      client.destroy();
      up.destroy();
    };
    client.on('close', end).on('error', end);
    up.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
