/**
 * `xpkg web`: serves the drop page and the `xpkg/browser` bundle (dist/web, dist/browser) on
 * loopback by default, cross-origin isolated (COOP/COEP, so onnxruntime-web may use threads),
 * text and WASM gzipped once and kept in memory. Optionally a folder of packages under
 * /packages/ with HTTP range support (the browser entry reads URLs in place) and trusted public
 * keys handed to the page as /config.json. Node only; the page itself is static files.
 */
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, dirname, extname, join, normalize, sep } from 'node:path';
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
const COMPRESS = new Set(['.html', '.js', '.mjs', '.css', '.json', '.map', '.wasm', '.txt']);
const gzip = promisify(gzipCb);

/** A validator from size and modification time: a rebuilt file gets a new one. */
const etagOf = (st: { size: number; mtimeMs: number }) =>
  `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;

/** Serves `root/web` and `root/browser` (and packages) until closed. */
export async function startWebServer(options: WebServerOptions = {}): Promise<WebServer> {
  const root = options.root ?? join(dirname(fileURLToPath(import.meta.url)), '..');
  for (const d of ['web', 'browser'])
    if (!(await stat(join(root, d, d === 'web' ? 'index.html' : 'xpkg.js')).catch(() => null)))
      throw new UsageError('E_USAGE', `${join(root, d)} is not built: run npm run build`, { root });
  const packages = options.packages;
  if (packages !== undefined && !(await stat(packages).catch(() => null))?.isDirectory())
    throw new UsageError('E_USAGE', `--packages ${packages} is not a folder`, { packages });
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
    ...(options.isolation === false
      ? {}
      : { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' }),
    'Cross-Origin-Resource-Policy': 'same-origin',
  });

  async function file(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const type = TYPES[extname(path)] ?? 'application/octet-stream';
    const st = await stat(path);
    // A validator, so a return visit revalidates instead of downloading the files (14 MB of WASM) again.
    const etag = etagOf(st);
    if (req.headers['if-none-match'] === etag) {
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
    if (req.method === 'HEAD') res.end();
    else createReadStream(path).pipe(res);
  }

  /** One `Range: bytes=a-b` (or `-n`) per request: what the browser entry sends. */
  async function ranged(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const st = await stat(path);
    const etag = etagOf(st);
    const base = { ...headers(TYPES['.xpkg']), 'Accept-Ranges': 'bytes', ETag: etag };
    const m = /^bytes=(\d*)-(\d*)$/.exec(String(req.headers.range ?? ''));
    if (!m) {
      res.writeHead(200, { ...base, 'Content-Length': st.size });
      if (req.method === 'HEAD') res.end();
      else createReadStream(path).pipe(res);
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
    else createReadStream(path, { start, end }).pipe(res);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' });
      return void res.end();
    }
    const url = new URL(req.url ?? '/', 'http://localhost');
    let path: string;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
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
      const names = (await readdir(packages)).filter((n) => n.endsWith('.xpkg')).sort();
      const body = Buffer.from(JSON.stringify(names));
      res.writeHead(200, { ...headers(TYPES['.json']), 'Content-Length': body.length });
      return void res.end(body);
    }
    const pkg = /^\/packages\/([^/]+\.xpkg)$/.exec(path);
    if (pkg && packages !== undefined && basename(pkg[1]) === pkg[1]) {
      const p = join(packages, pkg[1]);
      if ((await stat(p).catch(() => null))?.isFile()) return ranged(req, res, p);
    }
    // Only files under web/ and browser/ of the built folder, never through `..`.
    const rel = normalize(path.endsWith('/') ? `${path}index.html` : path).replace(/^[/\\]+/, '');
    const top = rel.split(sep)[0];
    if ((top === 'web' || top === 'browser') && !rel.split(sep).includes('..')) {
      const p = join(root, rel);
      if ((await stat(p).catch(() => null))?.isFile()) return file(req, res, p);
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
