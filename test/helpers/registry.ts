/**
 * Real OCI registries on loopback for the distribution tests: Debian's `docker-registry` (the CNCF
 * distribution registry) started with a temp config on a free port, optionally behind htpasswd
 * Basic auth or token auth served by a small real token server (ES256 JWTs signed with a key whose
 * self-signed certificate the registry trusts). Plus a TCP proxy that cuts connections, to
 * interrupt downloads.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createPrivateKey, randomBytes, sign } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { tempDir } from './source.js';

export const USER = 'xpkg-test';
export const PASSWORD = 'not-a-secret';
// `htpasswd -nbB xpkg-test not-a-secret` (the registry reads bcrypt only; Node has no bcrypt).
const HTPASSWD = 'xpkg-test:$2y$05$2RSD5L1kBmO.lxkF5K93teaZnCu93jjxescOUhHvRZCUizNsQSjbO\n';

export function registryAvailable(): boolean {
  try {
    execFileSync('docker-registry', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function toolAvailable(tool: string, args = ['--version']): boolean {
  try {
    execFileSync(tool, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

export interface TestRegistry {
  /** `127.0.0.1:<port>` */
  host: string;
  port: number;
  /** The registry's storage folder (blobs under docker/registry/v2/blobs/sha256). */
  storage: string;
  dir: string;
  stop(): Promise<void>;
}

/** Blob data files in the registry's storage: one per distinct digest. */
export function storedBlobs(reg: TestRegistry): Map<string, string> {
  const root = join(reg.storage, 'docker/registry/v2/blobs/sha256');
  const out = new Map<string, string>();
  let prefixes: string[] = [];
  try {
    prefixes = readdirSync(root);
  } catch {
    return out;
  }
  for (const p of prefixes)
    for (const hex of readdirSync(join(root, p))) out.set(`sha256:${hex}`, join(root, p, hex, 'data'));
  return out;
}

interface TokenServer {
  url: string;
  cert: string;
  /** Tokens issued, for assertions. */
  issued: number;
  close(): Promise<void>;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/** A token server: Basic credentials in, an ES256 JWT granting the requested repository actions out. */
async function startTokenServer(dir: string, service: string, issuer: string): Promise<TokenServer> {
  const key = join(dir, 'token.key');
  const cert = join(dir, 'token.crt');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '2',
      '-subj',
      '/CN=xpkg-test-token',
    ],
    { stdio: 'ignore' },
  );
  const pem = readFileSync(cert, 'utf8');
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const privateKey = createPrivateKey(readFileSync(key));
  const state = { issued: 0 };
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const auth = req.headers.authorization ?? '';
    const given = auth.startsWith('Basic ') ? Buffer.from(auth.slice(6), 'base64').toString('utf8') : '';
    if (given !== `${USER}:${PASSWORD}`) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
      return;
    }
    const access = u.searchParams.getAll('scope').map((s) => {
      const [type, ...rest] = s.split(':');
      const actions = rest.pop() ?? '';
      return { type, name: rest.join(':'), actions: actions.split(',').filter(Boolean) };
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'ES256', x5c: [der.toString('base64')] };
    const claims = {
      iss: issuer,
      sub: USER,
      aud: service,
      exp: now + 300,
      nbf: now - 10,
      iat: now,
      jti: randomBytes(8).toString('hex'),
      access,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
    state.issued++;
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ token: `${input}.${b64url(sig)}`, expires_in: 300 }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/token`,
    cert,
    get issued() {
      return state.issued;
    },
    close: () => new Promise((r) => server.close(() => r())),
  };
}

async function waitUp(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${log()}`);
    const ok = await new Promise<boolean>((r) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/v2/' }, (res) => {
        res.resume();
        r(true);
      });
      req.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`docker-registry did not answer on ${port}: ${log()}`);
}

export async function startRegistry(
  auth: 'none' | 'basic' | 'token' = 'none',
): Promise<TestRegistry & { tokens?: TokenServer }> {
  const dir = tempDir('xpkg-registry-');
  const storage = join(dir, 'storage');
  mkdirSync(storage);
  const port = await freePort();
  let authBlock = '';
  let tokens: TokenServer | undefined;
  if (auth === 'basic') {
    writeFileSync(join(dir, 'htpasswd'), HTPASSWD);
    authBlock = `auth:\n  htpasswd:\n    realm: xpkg-test\n    path: ${join(dir, 'htpasswd')}\n`;
  } else if (auth === 'token') {
    tokens = await startTokenServer(dir, 'xpkg-test-registry', 'xpkg-test-issuer');
    authBlock = `auth:\n  token:\n    realm: ${tokens.url}\n    service: xpkg-test-registry\n    issuer: xpkg-test-issuer\n    rootcertbundle: ${tokens.cert}\n`;
  }
  const config = join(dir, 'config.yml');
  writeFileSync(
    config,
    `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${storage}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n${authBlock}`,
  );
  const child = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (err = (err + s).slice(-4000)));
  await waitUp(port, child, () => err);
  return {
    host: `127.0.0.1:${port}`,
    port,
    storage,
    dir,
    ...(tokens ? { tokens } : {}),
    async stop() {
      // a child killed by a signal has signalCode set and exitCode null: stopping twice must not wait again
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      await tokens?.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Credentials for the test user in a Docker config folder (DOCKER_CONFIG) or a Podman auth file. */
export function writeAuthFile(path: string, host: string): void {
  const auth = Buffer.from(`${USER}:${PASSWORD}`).toString('base64');
  writeFileSync(path, JSON.stringify({ auths: { [host]: { auth } } }));
}

export interface CuttingProxy {
  host: string;
  /** Bytes sent to clients, over all connections. */
  bytes(): number;
  /** Cut every connection after this many response bytes (Infinity: never). */
  cutAfter: number;
  close(): Promise<void>;
}

/** A TCP proxy in front of a registry that drops each connection after `cutAfter` bytes to the client. */
export async function startCuttingProxy(target: number, cutAfter: number): Promise<CuttingProxy> {
  let total = 0;
  const sockets = new Set<net.Socket>();
  const proxy: CuttingProxy = {
    host: '',
    bytes: () => total,
    cutAfter,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    sockets.add(client).add(upstream);
    let sent = 0;
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      const room = proxy.cutAfter - sent;
      const part = chunk.length > room ? chunk.subarray(0, Math.max(0, room)) : chunk;
      sent += part.length;
      total += part.length;
      if (part.length) client.write(part);
      if (chunk.length > room) {
        client.destroy();
        upstream.destroy();
      }
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    upstream.on('end', end).on('error', end);
    client.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  proxy.host = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return proxy;
}
