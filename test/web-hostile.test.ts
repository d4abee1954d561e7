/**
 * `xpkg web`'s server against odd and hostile requests and a packages folder that changes under it
 * (a real HTTP server on loopback, in this process, so a crash fails the suite and its open files
 * can be counted): paths in every encoding, links out of the packages folder, conditional and
 * range headers, other hosts' names (DNS rebinding), clients gone mid-body, packages deleted or cut
 * short while served. It must never crash, never serve outside its folders, always answer.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readlinkSync, truncateSync, unlinkSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWebServer, type WebServer } from '../web/server.js';

const ROOT = join(import.meta.dirname, '..');
const PKG = join(ROOT, 'fixtures', 'dist', 'multi-variant.xpkg');
const BUILT = existsSync(join(ROOT, 'dist', 'web', 'index.html'));

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

describe.skipIf(!BUILT)('xpkg web against hostile requests', () => {
  let dir: string;
  let outside: string;
  let server: WebServer;
  let port: number;
  let whole: Buffer;
  /** What onRange does to the package served (deletes or truncates it mid-request). */
  const onServe = new Map<string, () => void>();

  /** One request on its own connection, with any Host header and a raw path. */
  const get = (path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Reply> =>
    new Promise((resolve, reject) => {
      const r = request({ host: '127.0.0.1', port, path, method, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      r.setTimeout(10_000, () => r.destroy(new Error(`${path}: no answer in 10 s`)));
      r.on('error', reject);
      r.end();
    });

  /** How many of this process's descriptors are open on a file of the packages folder. */
  const openFds = (name: string) =>
    readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`) === join(dir, name);
      } catch {
        return false;
      }
    }).length;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'xpkg-web-hostile-'));
    outside = await mkdtemp(join(tmpdir(), 'xpkg-web-outside-'));
    whole = await readFile(PKG);
    await writeFile(join(outside, 'secret.txt'), 'not for the web');
    copyFileSync(PKG, join(dir, 'a.xpkg'));
    copyFileSync(PKG, join(outside, 'kept-elsewhere.xpkg'));
    await symlink(join(outside, 'secret.txt'), join(dir, 'escape.xpkg'));
    // a folder of links to packages kept elsewhere is served (the link leads to a package)
    await symlink(join(outside, 'kept-elsewhere.xpkg'), join(dir, 'linked.xpkg'));
    await symlink(join(dir, 'a.xpkg'), join(dir, 'alias.xpkg'));
    await mkdir(join(dir, 'folder.xpkg'));
    await writeFile(join(dir, 'big.xpkg'), Buffer.alloc(32 << 20));
    // names the /packages/ route never serves (nothing before the extension, a Windows separator)
    copyFileSync(PKG, join(dir, '.xpkg'));
    copyFileSync(PKG, join(dir, 'back\\slash.xpkg'));
    server = await startWebServer({
      port: 0,
      root: join(ROOT, 'dist'),
      packages: dir,
      onRange: (name) => onServe.get(name)?.(),
    });
    port = Number(new URL(server.url).port);
  });
  afterAll(async () => {
    await server?.close();
    for (const d of [dir, outside]) if (d) await rm(d, { recursive: true, force: true });
  });

  it('answers paths in every encoding with 404 (or the file inside), never a file outside', async () => {
    for (const path of [
      '/web/..%2f..%2fpackage.json',
      '/web/%2e%2e/%2e%2e/package.json',
      '/web/%2E%2E%2F%2E%2E%2Fpackage.json',
      '/web/..%5c..%5cpackage.json',
      '/web/..\\..\\package.json',
      '/browser/%252e%252e/package.json',
      '/web/index.html%00',
      '/web/%00/../../package.json',
      '/packages/..%2fa.xpkg',
      '/packages/%2e%2e%2f%2e%2e%2fpackage.json.xpkg',
      '/packages/a.xpkg%00',
      `/web/${'a'.repeat(4000)}`,
      '/dist/web/index.html',
      '//etc/passwd',
    ])
      expect((await get(path)).status, path).toBe(404);
    expect((await get('/web/%ff')).status).toBe(400);
    // a path that starts with `//` is a path here, not the name of another host
    expect((await get('//web/index.html')).status).toBe(200);
    expect((await get('/web//index.html')).status).toBe(200);
    expect((await get('/packages/a.xpkg?x=../../etc/passwd')).status).toBe(200);
  });

  it('answers request targets that are no URL with 400, not 500', async () => {
    const status = (line: string) =>
      new Promise<string>((resolve) => {
        const sock = connect(port, '127.0.0.1', () =>
          sock.write(`${line}\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`),
        );
        let head = '';
        sock.on('data', (c) => (head += c));
        sock.on('error', () => {});
        sock.on('close', () => resolve(head.split(' ')[1] ?? ''));
        sock.setTimeout(5000, () => sock.destroy());
      });
    for (const line of ['GET http://[ HTTP/1.1', 'GET http://[::1 HTTP/1.1', 'GET /%E0%A4%A HTTP/1.1'])
      expect(await status(line), line).toBe('400');
  });

  it('serves no link out of the packages folder but to a package, and lists only what it serves (links out, folders, odd names)', async () => {
    expect((await get('/packages/escape.xpkg')).status).toBe(404);
    const linked = await get('/packages/linked.xpkg');
    expect(linked.status).toBe(200);
    expect(linked.body.equals(whole)).toBe(true);
    expect((await get('/packages/escape.xpkg', { Range: 'bytes=0-3' })).status).toBe(404);
    expect((await get('/packages/folder.xpkg')).status).toBe(404);
    const alias = await get('/packages/alias.xpkg');
    expect(alias.status).toBe(200);
    expect(alias.body.equals(whole)).toBe(true);
    expect((await get('/packages/.xpkg')).status).toBe(404);
    expect((await get('/packages/back%5cslash.xpkg')).status).toBe(404);
    expect(JSON.parse((await get('/packages/')).body.toString())).toEqual([
      'a.xpkg',
      'alias.xpkg',
      'big.xpkg',
      'linked.xpkg',
    ]);
  });

  it('answers every method but GET and HEAD with 405 and Allow', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'PROPFIND']) {
      const r = await get('/packages/a.xpkg', {}, method);
      expect(r.status, method).toBe(405);
      expect(r.headers.allow, method).toBe('GET, HEAD');
    }
    const head = await get('/packages/a.xpkg', { Range: 'bytes=0-9' }, 'HEAD');
    expect(head.status).toBe(206);
    expect(head.body.length).toBe(0);
  });

  it('answers odd ranges with 206, 200 or 416, never more than the file', async () => {
    const n = whole.length;
    const cases: [string, number, string | undefined][] = [
      ['bytes=1-1', 206, `bytes 1-1/${n}`],
      ['bytes=0-99999999999999999999', 206, `bytes 0-${n - 1}/${n}`],
      ['bytes=-99999999999999', 206, `bytes 0-${n - 1}/${n}`],
      ['bytes=5-2', 416, `bytes */${n}`],
      ['bytes=-0', 416, `bytes */${n}`],
      [`bytes=${n}-`, 416, `bytes */${n}`],
      ['bytes=99999999999999999999999-', 416, `bytes */${n}`],
      ['bytes=0-1,5-6', 200, undefined],
      ['bytes=abc', 200, undefined],
      ['items=0-1', 200, undefined],
      [`bytes=${'9'.repeat(4000)}-`, 416, `bytes */${n}`],
    ];
    for (const [range, status, contentRange] of cases) {
      const r = await get('/packages/a.xpkg', { Range: range });
      expect(r.status, range).toBe(status);
      expect(r.headers['content-range'], range).toBe(contentRange);
      if (status === 200) expect(r.body.equals(whole), range).toBe(true);
      expect(r.body.length, range).toBe(Number(r.headers['content-length'] ?? 0));
    }
  });

  it('honours If-Range: a range of another version is not spliced into the one the client holds', async () => {
    const etag = (await get('/packages/a.xpkg', { Range: 'bytes=0-0' })).headers.etag as string;
    const same = await get('/packages/a.xpkg', { Range: 'bytes=0-9', 'If-Range': etag });
    expect(same.status).toBe(206);
    for (const other of ['"0-0"', `W/${etag}`, 'Wed, 21 Oct 2015 07:28:00 GMT']) {
      const r = await get('/packages/a.xpkg', { Range: 'bytes=0-9', 'If-Range': other });
      expect(r.status, other).toBe(200);
      expect(r.body.equals(whole), other).toBe(true);
    }
  });

  it('answers If-None-Match lists, weak validators and * with 304', async () => {
    for (const path of ['/web/index.html', '/packages/a.xpkg']) {
      const etag = (await get(path)).headers.etag as string;
      for (const inm of [etag, `"x", ${etag}`, `W/${etag}`, '*'])
        expect((await get(path, { 'If-None-Match': inm })).status, `${path} ${inm}`).toBe(304);
      expect((await get(path, { 'If-None-Match': '"x", "y"' })).status, path).toBe(200);
    }
  });

  it('answers only requests naming localhost or an IP address (no DNS rebinding onto loopback)', async () => {
    for (const host of ['evil.example', 'evil.example:80', `127.0.0.1.evil.example:${port}`, 'localhost.evil'])
      expect((await get('/packages/a.xpkg', { Host: host })).status, host).toBe(403);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'LOCALHOST', 'app.localhost', `[::1]:${port}`])
      expect((await get('/packages/a.xpkg', { Host: host })).status, host).toBe(200);
  });

  it('keeps serving when a package is deleted while it is served', async () => {
    copyFileSync(PKG, join(dir, 'gone.xpkg'));
    onServe.set('gone.xpkg', () => unlinkSync(join(dir, 'gone.xpkg')));
    const r = await get('/packages/gone.xpkg', { Range: 'bytes=0-' });
    // the file was open when it was deleted: its bytes, or at worst a broken connection, never a crash
    expect(r.status).toBe(206);
    expect((await get('/packages/gone.xpkg')).status).toBe(404);
    expect((await get('/packages/a.xpkg', { Range: 'bytes=0-9' })).status).toBe(206);
  });

  it('a package cut short while served ends the connection instead of leaving the client waiting', async () => {
    copyFileSync(PKG, join(dir, 'short.xpkg'));
    onServe.set('short.xpkg', () => truncateSync(join(dir, 'short.xpkg'), 100));
    // keep-alive: a response short of its Content-Length must not leave the connection open, or
    // the client takes the next response's bytes for the rest of this body
    const closed = await new Promise<{ closed: boolean; bytes: number }>((resolve) => {
      const sock = connect(port, '127.0.0.1', () =>
        sock.write(`GET /packages/short.xpkg HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nRange: bytes=0-999\r\n\r\n`),
      );
      let bytes = 0;
      sock.on('data', (c) => (bytes += c.length));
      sock.on('error', () => {});
      const t = setTimeout(() => {
        sock.destroy();
        resolve({ closed: false, bytes });
      }, 5000);
      sock.on('close', () => {
        clearTimeout(t);
        resolve({ closed: true, bytes });
      });
    });
    expect(closed.closed).toBe(true);
    expect((await get('/packages/a.xpkg', { Range: 'bytes=0-9' })).status).toBe(206);
  });

  it.skipIf(!existsSync('/proc/self/fd'))('closes the file of a client gone mid-body', async () => {
    for (let k = 0; k < 8; k++)
      await new Promise<void>((resolve) => {
        const sock = connect(port, '127.0.0.1', () =>
          sock.write(`GET /packages/big.xpkg HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`),
        );
        sock.on('error', () => {});
        sock.once('data', () => {
          sock.destroy();
          resolve();
        });
      });
    await expect.poll(() => openFds('big.xpkg'), { timeout: 5000 }).toBe(0);
    expect((await get('/packages/a.xpkg', { Range: 'bytes=0-9' })).status).toBe(206);
  });

  it.skipIf(!existsSync('/proc/self/fd'))('closes the file of a client that stops reading mid-body', async () => {
    const idle = await startWebServer({ port: 0, root: join(ROOT, 'dist'), packages: dir, idleTimeoutMs: 300 });
    const p = Number(new URL(idle.url).port);
    try {
      const sock = connect(p, '127.0.0.1', () =>
        sock.write(`GET /packages/big.xpkg HTTP/1.1\r\nHost: 127.0.0.1:${p}\r\n\r\n`),
      );
      sock.on('error', () => {});
      // the first bytes come, then nothing is read: the server's writes stall on a full socket
      await new Promise((resolve) => sock.once('data', resolve));
      sock.pause();
      const closed = new Promise((resolve) => sock.once('close', resolve));
      await expect.poll(() => openFds('big.xpkg'), { timeout: 5000 }).toBe(0);
      sock.resume();
      await closed;
    } finally {
      await idle.close();
    }
  });

  it.skipIf(process.platform === 'win32')('a FIFO named like a package is not opened', async () => {
    execFileSync('mkfifo', [join(dir, 'pipe.xpkg')]);
    expect((await get('/packages/pipe.xpkg')).status).toBe(404);
    expect((await get('/packages/a.xpkg', { Range: 'bytes=0-9' })).status).toBe(206);
    unlinkSync(join(dir, 'pipe.xpkg'));
  });
});
