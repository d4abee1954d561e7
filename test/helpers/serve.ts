/**
 * Helpers for the `xpkg serve` tests: versioned packages made from the multi-variant fixture source
 * (Y = X + k, a given sequence, signed with the test key), a server on loopback with its log lines
 * captured, and small HTTP clients (JSON and the binary tensor extension).
 */
import { copyFile, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { prepare as prepareMultiVariant } from '../../fixtures/multi-variant/build.js';
import { encodeModel } from '../../fixtures/onnx-tiny.js';
import { packFolder } from '../../pack/pack.js';
import { PackageReader } from '../../pack/reader.js';
import { createLogger, type LogFormat } from '../../serve/log.js';
import { type ServeOptions, startServer, type XpkgServer } from '../../serve/server.js';
import { sign } from '../../signing/sign.js';
import { tempDir } from './source.js';

export const TRUST = ['fixtures/keys/test.pub'];

/** Y = X + k in float32, X of shape [N]. */
export function addModel(k: number): Buffer {
  return encodeModel({
    name: `add_${k}`,
    nodes: [{ op: 'Add', inputs: ['X', 'k'], outputs: ['Y'] }],
    inputs: [{ name: 'X', type: 'float32', shape: ['N'] }],
    outputs: [{ name: 'Y', type: 'float32', shape: ['N'] }],
    initializers: [{ name: 'k', type: 'float32', dims: [], raw: new Uint8Array(new Float32Array([k]).buffer) }],
  });
}

/**
 * The multi-variant fixture source with every model replaced by Y = X + k and the given sequence,
 * packed and signed with fixtures/keys/test.key (unless `signed: false`). Returns the package path.
 */
export async function versionedPackage(o: {
  sequence: number;
  k: number;
  signed?: boolean;
  name?: string;
}): Promise<string> {
  const src = tempDir('xpkg-serve-src-');
  await prepareMultiVariant(src);
  const manifest = JSON.parse(await readFile(join(src, 'xpkg.json'), 'utf8'));
  manifest.sequence = o.sequence;
  if (o.name) manifest.name = o.name;
  await writeFile(join(src, 'xpkg.json'), JSON.stringify(manifest, null, 2));
  for (const f of ['add-one-fp32.onnx', 'add-one-int8.onnx', 'add-one-fp16.onnx'])
    await writeFile(join(src, 'models', f), addModel(o.k));
  const out = join(tempDir('xpkg-serve-pkg-'), `v${o.sequence}.xpkg`);
  await packFolder(src, out, { sourceDateEpoch: '' });
  if (o.signed !== false) await sign(out, { key: 'fixtures/keys/test.key', out, passphrase: '', force: true });
  return out;
}

/** Puts a file into the repository the way a deployment should: a hidden temp name, then one rename. */
export async function dropIn(src: string, repo: string, name: string): Promise<void> {
  const tmp = join(repo, `.${name}.tmp`);
  await copyFile(src, tmp);
  await rename(tmp, join(repo, name));
}

export interface TestServer extends XpkgServer {
  lines: Record<string, unknown>[];
}

/** A daemon on a free loopback port, not yet ready, its log written to `onChunk` as the logger writes it. */
export function startWithLog(
  o: Partial<ServeOptions> & { repo: string },
  format: LogFormat,
  onChunk: (text: string) => void,
): Promise<XpkgServer> {
  const sink = new Writable({
    write(chunk, _enc, cb) {
      onChunk(String(chunk));
      cb();
    },
  });
  return startServer({
    port: 0,
    pollMs: 100,
    settleMs: 100,
    drainMs: 5000,
    runner: { trust: TRUST, stateDir: tempDir('xpkg-serve-state-') },
    log: createLogger({ format, level: 'info', destination: sink }),
    ...o,
  });
}

/** A server on a free loopback port; its JSON log lines are kept in `lines`. */
export async function testServer(o: Partial<ServeOptions> & { repo: string }): Promise<TestServer> {
  const lines: Record<string, unknown>[] = [];
  const server = await startWithLog(o, 'json', (text) => {
    for (const l of text.split('\n')) if (l) lines.push(JSON.parse(l));
  });
  await server.ready;
  return Object.assign(server, { lines });
}

export interface Reply {
  status: number;
  headers: Headers;
  body: any;
  raw: Buffer;
}

export async function http(url: string, init: RequestInit = {}): Promise<Reply> {
  const r = await fetch(url, init);
  const raw = Buffer.from(await r.arrayBuffer());
  let body: unknown = raw;
  if ((r.headers.get('content-type') ?? '').includes('json')) body = JSON.parse(raw.toString('utf8'));
  return { status: r.status, headers: r.headers, body, raw };
}

export const postJson = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  http(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });

/** A binary-extension request: the JSON header, then each input's raw bytes in order. */
export function binaryRequest(
  header: unknown,
  parts: Uint8Array[],
): { body: Uint8Array<ArrayBuffer>; headers: Record<string, string> } {
  const json = Buffer.from(JSON.stringify(header));
  const all = Buffer.concat([json, ...parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))]);
  return {
    // a view typed as fetch's body (the DOM lib, which the browser suites load, refuses a Buffer)
    body: new Uint8Array(all.buffer as ArrayBuffer, all.byteOffset, all.length),
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(json.length) },
  };
}

/** A binary-extension response: its JSON header and the bytes of each binary output, in order. */
export function parseBinaryReply(r: Reply): { header: any; outputs: Record<string, Buffer> } {
  const n = Number(r.headers.get('inference-header-content-length'));
  const header = JSON.parse(r.raw.subarray(0, n).toString('utf8'));
  const outputs: Record<string, Buffer> = {};
  let off = n;
  for (const o of header.outputs) {
    const size = o.parameters?.binary_data_size;
    if (size === undefined) continue;
    outputs[o.name] = r.raw.subarray(off, off + size);
    off += size;
  }
  return { header, outputs };
}

/**
 * Waits until `f` returns true (polling), or fails after `ms`; `server`: its last log lines go into
 * the failure, so a timeout in CI says what the daemon was doing.
 */
export async function until(
  f: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
  server?: TestServer,
): Promise<number> {
  const t0 = performance.now();
  while (!(await f())) {
    if (performance.now() - t0 > ms) {
      const log = server
        ? `; the daemon's last log lines:\n${server.lines
            .slice(-12)
            .map((l) => JSON.stringify(l))
            .join('\n')}`
        : '';
      throw new Error(`timed out after ${ms} ms waiting for ${what}${log}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return performance.now() - t0;
}

/** A package file's id (its versions' names in responses). */
export async function idOf(p: string): Promise<string> {
  const r = await PackageReader.open(p);
  try {
    return r.id;
  } finally {
    await r.close();
  }
}

/** The model name of versionedPackage's packages (the multi-variant fixture's). */
export const VERSIONED = 'multi-variant-add-one';

/** Packages of sequence k with Y = X + k, for each k, and their ids (a test's set of versions). */
export async function versions(ks: number[]): Promise<{ pkgs: Record<number, string>; ids: Record<number, string> }> {
  const pkgs: Record<number, string> = {};
  const ids: Record<number, string> = {};
  for (const k of ks) {
    pkgs[k] = await versionedPackage({ sequence: k, k });
    ids[k] = await idOf(pkgs[k]);
  }
  return { pkgs, ids };
}

/** One JSON infer of versionedPackage's model: x in, x + k out. */
export const inferVersioned = (url: string, x = 1) =>
  postJson(`${url}/v2/models/${VERSIONED}/infer`, { inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [x] }] });

/** Servers a test starts (with the repository API), all closed by `closeAll` (an afterEach). */
export function serverPool() {
  let servers: TestServer[] = [];
  return {
    async serve(repo: string, o: Partial<ServeOptions> = {}): Promise<TestServer> {
      const s = await testServer({ repo, repositoryApi: true, ...o });
      servers.push(s);
      return s;
    },
    async closeAll(): Promise<void> {
      await Promise.all(servers.map((s) => s.close()));
      servers = [];
    },
  };
}
