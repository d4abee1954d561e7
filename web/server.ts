/**
 * `xpkg web`: serves the drop page and the `xpkg/browser` bundle (dist/web, dist/browser) on
 * loopback by default, cross-origin isolated (COOP/COEP, so onnxruntime-web may use threads),
 * text and WASM gzipped once and kept in memory. Optionally a folder of packages under
 * /packages/ with HTTP range support (the browser entry reads URLs in place) and trusted public
 * keys handed to the page as /config.json. Node only; the page itself is static files.
 */
import { constants, type Stats } from 'node:fs';
import { type FileHandle, open, readdir, readFile, realpath, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, isIP } from 'node:net';
import { basename, dirname, extname, join, normalize, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import { UsageError } from '../spec/errors.js';

export interface WebServerOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Folder whose `*.xpkg` files are served under /packages/. */
  packages?: string;
  /** Public key texts the page trusts from the start. */
  trust?: string[];
  /** Leave out COOP/COEP (onnxruntime-web then runs on one thread). */
  isolation?: boolean;
  /** The built dist/ folder (default: the one this module is in). */
  root?: string;
  /**
   * A connection that neither sends nor takes a byte for this long is closed (default 60 s): a
   * client that stops reading a body mid-way would otherwise hold its file open for good.
   */
  idleTimeoutMs?: number;
  /** Called with every byte range of a package served (for tests and benchmarks of in-place reads). */
  onRange?: (name: string, start: number, end: number) => void;
}

export interface WebServer {
  url: string;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.wasm': 'application/wasm',
  '.txt': 'text/plain; charset=utf-8',
  '.xpkg': 'application/octet-stream',
};
/** A package's file name under /packages/ (the listing names only these). */
const PACKAGE = /^[^/\\]+\.xpkg$/;
const COMPRESS = new Set(['.html', '.js', '.mjs', '.css', '.json', '.map', '.wasm', '.txt']);
const gzip = promisify(gzipCb);

/** A validator from size and modification time: a rebuilt file gets a new one. */
const etagOf = (st: { size: number; mtimeMs: number }) =>
  `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;

/** Whether an If-None-Match value names `etag` (a list, weak or strong, or `*`: RFC 9110 §13.1.2). */
function noneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const tags = header.split(',').map((t) => t.trim().replace(/^W\//, ''));
  return tags.includes('*') || tags.includes(etag);
}

/**
 * Whether the request is for this host by name: a server on loopback answers only requests naming a
 * loopback host or an IP address, so a page of another site whose name was rebound to 127.0.0.1
 * (DNS rebinding) cannot read the packages through it.
 */
function hostAllowed(header: string | undefined): boolean {
  if (header === undefined) return true; // HTTP/1.0
  const name = /^\[([^\]]*)\](?::\d*)?$/.exec(header)?.[1] ?? header.replace(/:\d*$/, '');
  const lower = name.toLowerCase().replace(/\.$/, '');
  return isIP(name) !== 0 || lower === 'localhost' || lower.endsWith('.localhost');
}

const isLoopback = (host: string) =>
  host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host) || /^::ffff:127\./i.test(host);

/** Serves `root/web` and `root/browser` (and packages) until closed. */
export async function startWebServer(options: WebServerOptions = {}): Promise<WebServer> {
  const root = options.root ?? join(dirname(fileURLToPath(import.meta.url)), '..');
  for (const d of ['web', 'browser'])
    if (!(await stat(join(root, d, d === 'web' ? 'index.html' : 'xpkg.js')).catch(() => null)))
      throw new UsageError('E_USAGE', `${join(root, d)} is not built: run npm run build`, { root });
  const packages = options.packages;
  if (packages !== undefined && !(await stat(packages).catch(() => null))?.isDirectory())
    throw new UsageError('E_USAGE', `--packages ${packages} is not a folder`, { packages });
  // Links are followed where they stay inside these folders; a package's link may also lead out of
  // its folder to another package (a folder of links to packages kept elsewhere), never to a file
  // not named like one (a link `x.xpkg` → /etc/shadow is not served).
  const rootReal = await realpath(root);
  const packagesReal = packages === undefined ? '' : await realpath(packages);
  const loopback = isLoopback(options.host ?? '127.0.0.1');
  const config = Buffer.from(JSON.stringify({ trust: options.trust ?? [] }));
  /** Gzipped bodies by path and validator, compressed off the event loop once. */
  const gz = new Map<string, Promise<Buffer>>();
  const gzipped = (path: string, etag: string): Promise<Buffer> => {
    const key = `${path} ${etag}`;
    let body = gz.get(key);
    if (!body) {
      body = readFile(path).then((b) => gzip(b, { level: 9 }));
      body.catch(() => gz.delete(key));
      gz.set(key, body);
    }
    return body;
  };

  /** The bundle's chunks, named by their content's hash (browser/build.ts chunkNames). */
  const chunks = join(root, 'browser', 'chunks') + sep;
  const headers = (type: string, path = ''): Record<string, string> => ({
    'Content-Type': type,
    // A chunk's name changes with its content: kept without asking again, so the worker's imports of
    // chunks the page loaded come from the cache and a return visit sends no request for them. The
    // entries and the WASM keep their names across builds: revalidated (ETag, 304) each time.
    'Cache-Control': path.startsWith(chunks) ? 'public, max-age=31536000, immutable' : 'no-cache',
    'X-Content-Type-Options': 'nosniff',
    // The page is never framed by another site (which could lead a click onto "accept unsigned").
    'Content-Security-Policy': "frame-ancestors 'self'",
    'X-Frame-Options': 'SAMEORIGIN',
    ...(options.isolation === false
      ? {}
      : { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' }),
    'Cross-Origin-Resource-Policy': 'same-origin',
  });

  /**
   * Sends bytes `start`..`end` (inclusive) of an open file. A client gone mid-body stops the reads;
   * a file cut short or failing while it is read ends the connection rather than the response, so
   * the client sees it broken instead of taking the next response for the rest of this one.
   */
  async function send(res: ServerResponse, fh: FileHandle, start: number, end: number): Promise<void> {
    const body = fh.createReadStream({ start, end, autoClose: false });
    try {
      await pipeline(body, res, { end: false });
      if (body.bytesRead === end - start + 1) res.end();
      else res.destroy();
    } catch {
      res.destroy();
    } finally {
      body.destroy();
    }
  }

  async function file(req: IncomingMessage, res: ServerResponse, path: string, fh: FileHandle, st: Stats) {
    const type = TYPES[extname(path)] ?? 'application/octet-stream';
    // A validator, so a return visit revalidates instead of downloading the files (14 MB of WASM) again.
    const etag = etagOf(st);
    if (noneMatch(req.headers['if-none-match'], etag)) {
      res.writeHead(304, { ...headers(type, path), ETag: etag });
      return void res.end();
    }
    if (COMPRESS.has(extname(path)) && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''))) {
      const body = await gzipped(path, etag);
      res.writeHead(200, {
        ...headers(type, path),
        ETag: etag,
        'Content-Encoding': 'gzip',
        'Content-Length': body.length,
        Vary: 'Accept-Encoding',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    res.writeHead(200, { ...headers(type, path), ETag: etag, 'Content-Length': st.size });
    if (req.method === 'HEAD' || st.size === 0) res.end();
    else await send(res, fh, 0, st.size - 1);
  }

  /** One `Range: bytes=a-b` (or `-n`) per request: what the browser entry sends. */
  async function ranged(req: IncomingMessage, res: ServerResponse, path: string, fh: FileHandle, st: Stats) {
    const etag = etagOf(st);
    const base = { ...headers(TYPES['.xpkg']), 'Accept-Ranges': 'bytes', ETag: etag };
    if (noneMatch(req.headers['if-none-match'], etag)) {
      res.writeHead(304, base);
      return void res.end();
    }
    // If-Range names the version the client holds the rest of: another one is sent whole (RFC 9110 §13.1.5).
    const ifRange = req.headers['if-range'];
    const m =
      ifRange === undefined || ifRange === etag ? /^bytes=(\d*)-(\d*)$/.exec(String(req.headers.range ?? '')) : null;
    if (!m) {
      res.writeHead(200, { ...base, 'Content-Length': st.size });
      if (req.method === 'HEAD' || st.size === 0) res.end();
      else await send(res, fh, 0, st.size - 1);
      return;
    }
    let start = m[1] === '' ? Math.max(0, st.size - Number(m[2])) : Number(m[1]);
    let end = m[1] === '' || m[2] === '' ? st.size - 1 : Math.min(Number(m[2]), st.size - 1);
    if (m[1] === '' && m[2] === '') start = end + 1;
    if (start > end || start >= st.size) {
      res.writeHead(416, { ...base, 'Content-Range': `bytes */${st.size}` });
      res.end();
      return;
    }
    end = Math.max(start, end);
    options.onRange?.(basename(path), start, end + 1);
    res.writeHead(206, {
      ...base,
      'Content-Range': `bytes ${start}-${end}/${st.size}`,
      'Content-Length': end - start + 1,
    });
    if (req.method === 'HEAD') res.end();
    else await send(res, fh, start, end);
  }

  /**
   * A regular file opened for reading whose real path lies inside `folder`, or (`packageLinks`) is
   * named like a package wherever it is; else null.
   */
  async function regular(
    path: string,
    folder: string,
    packageLinks = false,
  ): Promise<{ fh: FileHandle; st: Stats } | null> {
    const real = await realpath(path).catch(() => null);
    if (real === null || !(real.startsWith(folder + sep) || (packageLinks && PACKAGE.test(basename(real)))))
      return null;
    // Not blocking: a FIFO named like a package would otherwise hold a thread of the pool until written.
    const fh = await open(real, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0)).catch(() => null);
    if (!fh) return null;
    const st = await fh.stat().catch(() => null);
    if (st?.isFile()) return { fh, st };
    await fh.close();
    return null;
  }

  /** Runs `serve` on an opened file and closes it whatever happens. */
  async function withFile(
    f: { fh: FileHandle; st: Stats },
    serve: (fh: FileHandle, st: Stats) => Promise<void>,
  ): Promise<void> {
    try {
      await serve(f.fh, f.st);
    } finally {
      await f.fh.close().catch(() => {});
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' });
      return void res.end();
    }
    if (loopback && !hostAllowed(req.headers.host)) {
      res.writeHead(403, headers('text/plain; charset=utf-8'));
      return void res.end('this server answers requests for localhost or an IP address only\n');
    }
    // A path starting `//` is a path here, not another host's name.
    const target = req.url ?? '/';
    let url: URL;
    let path: string;
    try {
      url = new URL(target.startsWith('/') ? `http://localhost${target}` : target, 'http://localhost');
      path = decodeURIComponent(url.pathname);
    } catch {
      // a target that is no URL (`http://[`) or a path that is no UTF-8
      res.writeHead(400);
      return void res.end();
    }
    if (path === '/' || path === '/web') {
      res.writeHead(302, { Location: `/web/${url.search}` });
      return void res.end();
    }
    if (path === '/web/config.json') {
      res.writeHead(200, { ...headers(TYPES['.json']), 'Content-Length': config.length });
      return void res.end(req.method === 'HEAD' ? undefined : config);
    }
    if (path === '/packages/' && packages !== undefined) {
      const names: string[] = [];
      for (const n of (await readdir(packages)).filter((n) => PACKAGE.test(n)).sort()) {
        const f = await regular(join(packages, n), packagesReal, true);
        if (f) names.push(n);
        await f?.fh.close();
      }
      const body = Buffer.from(JSON.stringify(names));
      res.writeHead(200, { ...headers(TYPES['.json']), 'Content-Length': body.length });
      return void res.end(body);
    }
    const pkg = /^\/packages\/(.+)$/.exec(path);
    if (pkg && packages !== undefined && PACKAGE.test(pkg[1]) && basename(pkg[1]) === pkg[1]) {
      const p = join(packages, pkg[1]);
      const f = await regular(p, packagesReal, true);
      if (f) return withFile(f, (fh, st) => ranged(req, res, p, fh, st));
    }
    // Only files under web/ and browser/ of the built folder, never through `..`.
    const rel = normalize(path.endsWith('/') ? `${path}index.html` : path).replace(/^[/\\]+/, '');
    const top = rel.split(sep)[0];
    if ((top === 'web' || top === 'browser') && !rel.split(sep).includes('..')) {
      const p = join(root, rel);
      const f = await regular(p, rootReal);
      if (f) return withFile(f, (fh, st) => file(req, res, p, fh, st));
    }
    res.writeHead(404, headers('text/plain; charset=utf-8'));
    res.end('not found\n');
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  // no 'timeout' listener: Node destroys a socket idle this long (a slow reader still reading is not idle)
  server.setTimeout(options.idleTimeoutMs ?? 60_000);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8080, options.host ?? '127.0.0.1', () => resolve());
  });
  // The runtime's WASM (14 MB) takes about a second of CPU to gzip: done now, in the background,
  // rather than while the first visitor waits for a first run.
  const wasm = join(root, 'browser', 'ort-wasm-simd-threaded.wasm');
  void stat(wasm)
    .then((st) => gzipped(wasm, etagOf(st)))
    .catch(() => {});
  const a = server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return {
    url: `http://${host}:${a.port}/web/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
