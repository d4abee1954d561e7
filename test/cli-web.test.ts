/**
 * `xpkg web` as a user starts it (the built CLI, a real HTTP server on loopback): it announces its
 * URL as one JSON document, serves the page and the bundle cross-origin isolated, serves packages
 * with byte ranges and the trusted keys to the page, never a file outside its folders, and stops on
 * SIGTERM with status 0. A taken port is E_IO.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { xpkgAsync } from './helpers/cli.js';

const ROOT = join(import.meta.dirname, '..');
const FIXTURES = join(ROOT, 'fixtures', 'dist');
const KEY = join(ROOT, 'fixtures', 'keys', 'test.pub');

describe('xpkg web', () => {
  let child: ChildProcess;
  let base: string;
  beforeAll(async () => {
    child = spawn(
      process.execPath,
      [resolve('bin/xpkg.js'), 'web', '--port', '0', '--packages', FIXTURES, '--trust', KEY, '--json'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
    base = new URL(JSON.parse(line).result.url).origin;
  });
  afterAll(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });

  it('serves the page and the bundle cross-origin isolated, gzipped when asked', async () => {
    const page = await fetch(`${base}/`);
    expect(page.url).toBe(`${base}/web/`);
    expect(page.headers.get('cross-origin-opener-policy')).toBe('same-origin');
    expect(page.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
    expect(await page.text()).toContain('<script type="module" src="app.js">');
    const wasm = await fetch(`${base}/browser/ort-wasm-simd-threaded.wasm`, { headers: { 'Accept-Encoding': 'gzip' } });
    expect(wasm.headers.get('content-type')).toBe('application/wasm');
    expect(wasm.headers.get('content-encoding')).toBe('gzip');
    const bytes = new Uint8Array(await wasm.arrayBuffer());
    expect(bytes.length).toBe((await stat(join(ROOT, 'dist', 'browser', 'ort-wasm-simd-threaded.wasm'))).size);
    // A return visit revalidates instead of downloading the WASM again.
    const etag = wasm.headers.get('etag');
    expect(etag).toMatch(/^".+"$/);
    const again = await fetch(`${base}/browser/ort-wasm-simd-threaded.wasm`, { headers: { 'If-None-Match': etag! } });
    expect(again.status).toBe(304);
    expect(wasm.headers.get('cache-control')).toBe('no-cache');
    // The bundle's chunks are named by their content: cached for good; the entries that name them are revalidated.
    const chunk = (await readdir(join(ROOT, 'dist', 'browser', 'chunks'))).find((n) => n.endsWith('.js'))!;
    const c = await fetch(`${base}/browser/chunks/${chunk}`);
    expect(c.status).toBe(200);
    expect(c.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect((await fetch(`${base}/browser/xpkg.js`)).headers.get('cache-control')).toBe('no-cache');
    expect((await fetch(`${base}/web/app.js`)).headers.get('cache-control')).toBe('no-cache');
    expect((await fetch(`${base}/web/config.json`).then((r) => r.json())).trust).toEqual([await readFile(KEY, 'utf8')]);
  });

  it('serves packages by byte range, with a validator', async () => {
    const pkg = join(FIXTURES, 'multi-variant.xpkg');
    const whole = await readFile(pkg);
    const tail = await fetch(`${base}/packages/multi-variant.xpkg`, { headers: { Range: 'bytes=-22' } });
    expect(tail.status).toBe(206);
    expect(tail.headers.get('content-range')).toBe(`bytes ${whole.length - 22}-${whole.length - 1}/${whole.length}`);
    expect(tail.headers.get('etag')).toMatch(/^".+"$/);
    expect(Buffer.from(await tail.arrayBuffer()).equals(whole.subarray(whole.length - 22))).toBe(true);
    const mid = await fetch(`${base}/packages/multi-variant.xpkg`, { headers: { Range: 'bytes=100-199' } });
    expect(Buffer.from(await mid.arrayBuffer()).equals(whole.subarray(100, 200))).toBe(true);
    expect(
      (await fetch(`${base}/packages/multi-variant.xpkg`, { headers: { Range: `bytes=${whole.length}-` } })).status,
    ).toBe(416);
  });

  it('serves nothing outside its folders', async () => {
    for (const path of [
      '/web/../package.json',
      '/browser/%2e%2e/package.json',
      '/packages/..%2fpackage.json',
      '/dist/web/index.html',
    ])
      expect((await fetch(`${base}${path}`)).status, path).toBe(404);
    expect((await fetch(`${base}/web/`, { method: 'POST' })).status).toBe(405);
  });

  it('a taken port is E_IO; SIGTERM stops the server with status 0', async () => {
    const port = new URL(base).port;
    const taken = await xpkgAsync(['web', '--port', port, '--json']);
    expect(taken.status).toBe(3);
    expect(taken.json?.error?.code).toBe('E_IO');
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(0);
  });
});
