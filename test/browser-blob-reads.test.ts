/// <reference lib="dom" />
// Code handed to page.evaluate runs in the page: it is typed with the DOM library.
/**
 * A File's bytes read through reused buffers in a real Chromium (browser/sources.ts: the Blob's
 * stream copied into them), against fresh `slice().arrayBuffer()` reads (the path without Blob
 * streams): the strict reader over each gives the same verification result and code on every spec
 * vector, on a 40 MB package and on a copy of it with one byte flipped, and the same bytes of every
 * file read whole; the reused path makes at most a few buffers whatever it read, and a page that
 * verifies the same File over and over never stalls.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { twinsPlugin } from '../browser/build.js';
import { packFolder } from '../pack/pack.js';
import { PackageReader } from '../pack/reader.js';
import { XpkgError } from '../spec/errors.js';
import { type BrowserRig, haveBrowser, startRig } from './helpers/browser.js';
import { oneModelManifest, writeSource } from './helpers/source.js';

const ROOT = join(import.meta.dirname, '..');
const VECTORS = join(ROOT, 'spec', 'vectors');
const MODEL_BYTES = 40e6; // 10 blocks of 4 MiB

type Outcome = { ok: true } | { code: string; block?: number };

/** What testBundle() puts on the page's window (a type only: the code using it runs in the page). */
interface BlobReads {
  BlobSource: new (
    b: Blob,
    name: string,
    reuse: boolean,
  ) => { buffersMade: number; bytesRead: number; byobStalls: number };
  PackageReader: {
    fromSource(s: InstanceType<BlobReads['BlobSource']>): Promise<{
      manifest: { files: { path: string }[] };
      verifyIntegrity(): Promise<unknown>;
      readVerified(path: string): Promise<Uint8Array>;
      close(): Promise<void>;
    }>;
  };
}

async function nodeOutcome(file: string): Promise<Outcome> {
  const r = await PackageReader.open(file).catch((e) => e as Error);
  if (r instanceof Error) return { code: (r as XpkgError).code };
  try {
    await r.verifyIntegrity();
    return { ok: true };
  } catch (e) {
    if (e instanceof XpkgError) return { code: e.code };
    throw e;
  } finally {
    await r.close();
  }
}

/** The browser's reader and Blob source, bundled as the library is (its browser twins, the Buffer shim). */
async function testBundle(): Promise<string> {
  const r = await build({
    stdin: {
      contents: "export { BlobSource } from './browser/sources.ts'; export { PackageReader } from './pack/reader.ts';",
      resolveDir: ROOT,
      loader: 'ts',
    },
    absWorkingDir: ROOT,
    bundle: true,
    write: false,
    format: 'iife',
    globalName: 'blobReads',
    platform: 'browser',
    target: ['chrome120'],
    inject: [join(ROOT, 'browser/buffer-shim.ts')],
    plugins: [twinsPlugin(ROOT)],
    logLevel: 'warning',
  });
  return r.outputFiles[0].text;
}

describe.skipIf(!haveBrowser)('a Blob read through reused buffers in Chromium', () => {
  let rig: BrowserRig;
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'xpkg-blob-reads-'));
    const src = join(dir, 'src');
    writeSource({ 'models/big.onnx': randomBytes(MODEL_BYTES) }, oneModelManifest(), src, false);
    await packFolder(src, join(dir, 'big.xpkg'));
    const bytes = await readFile(join(dir, 'big.xpkg'));
    bytes[Math.floor(bytes.length / 2)] ^= 0x01; // inside the model, a block in the middle
    await writeFile(join(dir, 'flipped.xpkg'), bytes);
    for (const f of await readdir(VECTORS))
      if (f.endsWith('.xpkg')) await writeFile(join(dir, `vector-${f}`), await readFile(join(VECTORS, f)));
    rig = await startRig({ packages: dir });
  }, 120_000);
  afterAll(async () => {
    await rig?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('same results, codes and bytes as fresh slices; at most IN_FLIGHT buffers made', async () => {
    const names = (await readdir(dir)).filter((f) => f.endsWith('.xpkg')).sort();
    const node: Record<string, Outcome> = {};
    for (const n of names) node[n] = await nodeOutcome(join(dir, n));
    expect(node['big.xpkg']).toEqual({ ok: true });
    expect(node['flipped.xpkg']).toEqual({ code: 'E_DIGEST_MISMATCH' });

    const page = await rig.page();
    await page.goto(rig.server.url);
    await page.addScriptTag({ content: await testBundle() });
    const got = await page.evaluate(async (names: string[]) => {
      const { BlobSource, PackageReader } = (window as unknown as { blobReads: BlobReads }).blobReads;
      const sha = async (b: Uint8Array) =>
        Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', b as Uint8Array<ArrayBuffer>)), (x) =>
          x.toString(16).padStart(2, '0'),
        ).join('');
      const read = async (blob: Blob, reuse: boolean) => {
        const source = new BlobSource(blob, 'p', reuse);
        let outcome: Record<string, unknown> = { ok: true };
        const files: Record<string, string> = {};
        try {
          const reader = await PackageReader.fromSource(source);
          try {
            await reader.verifyIntegrity();
            // Every file read whole, as a load for running reads it.
            for (const f of reader.manifest.files) files[f.path] = await sha(await reader.readVerified(f.path));
          } finally {
            await reader.close();
          }
        } catch (e) {
          const { code, detail } = e as { code?: string; detail?: { block?: number } };
          outcome = { code: code ?? String(e), ...(detail?.block !== undefined ? { block: detail.block } : {}) };
        }
        return {
          outcome,
          files,
          buffersMade: source.buffersMade,
          bytesRead: source.bytesRead,
          byobStalls: source.byobStalls,
        };
      };
      const out: Record<string, unknown> = {};
      for (const n of names) {
        const blob = await (await fetch(`/packages/${n}`)).blob();
        out[n] = { reused: await read(blob, true), fresh: await read(blob, false) };
      }
      return out as Record<
        string,
        { reused: Awaited<ReturnType<typeof read>>; fresh: Awaited<ReturnType<typeof read>> }
      >;
    }, names);

    for (const n of names) {
      const { reused, fresh } = got[n];
      expect(reused.outcome, n).toEqual(fresh.outcome);
      expect(reused.files, n).toEqual(fresh.files);
      expect(reused.bytesRead, n).toBe(fresh.bytesRead);
      expect('code' in reused.outcome ? reused.outcome.code : undefined, `${n}: against Node`).toBe(
        'code' in node[n] ? node[n].code : undefined,
      );
      expect(fresh.buffersMade, n).toBe(0);
    }
    // The 40 MB package: verified (10 blocks) and its model read whole for running, through the same few buffers.
    const big = got['big.xpkg'].reused;
    expect(Object.keys(big.files).sort()).toEqual(['models/big.onnx']);
    expect(big.bytesRead).toBeGreaterThan(2 * MODEL_BYTES);
    expect(big.buffersMade).toBeGreaterThan(0);
    // (a BYOB read Chromium never answers keeps its buffer: one more a stall)
    expect(big.buffersMade).toBeLessThanOrEqual(4 + big.byobStalls);
    // The flipped byte: the block it lies in, named alike by both paths.
    expect(got['flipped.xpkg'].reused.outcome).toMatchObject({ code: 'E_DIGEST_MISMATCH', block: expect.any(Number) });
  }, 120_000);

  it('verifying one File again and again in a page never stalls', async () => {
    const page = await rig.page();
    await page.goto(rig.server.url);
    await page.addScriptTag({ content: await testBundle() });
    // 100 verifications of the 40 MB package: 1,000 block reads. A first version's BYOB readers
    // stalled every read of the Blob after a few hundred in Chromium 156; the stall guard reads on.
    const got = await page.evaluate(async () => {
      const { BlobSource, PackageReader } = (window as unknown as { blobReads: BlobReads }).blobReads;
      const blob = await (await fetch('/packages/big.xpkg')).blob();
      for (let i = 0; i < 100; i++) {
        const reader = await PackageReader.fromSource(new BlobSource(blob, 'p', true));
        const done = await Promise.race([
          reader.verifyIntegrity().then(() => true),
          new Promise<boolean>((r) => setTimeout(() => r(false), 10_000)),
        ]);
        if (!done) return { stalledAt: i };
        await reader.close();
      }
      return { stalledAt: null };
    });
    expect(got).toEqual({ stalledAt: null });
  }, 180_000);

  it.each(['never answers', 'fails'])(
    'a BYOB read that %s: the block is read again through chunks, same outcomes',
    async (how) => {
      const page = await rig.page();
      await page.goto(rig.server.url);
      await page.addScriptTag({ content: await testBundle() });
      const got = await page.evaluate(async (how) => {
        const { BlobSource, PackageReader } = (window as unknown as { blobReads: BlobReads }).blobReads;
        // A Blob whose byte streams hand BYOB readers that never answer (what Chromium 156 did after
        // hundreds of reads of a fetched Blob) or fail ("network error", as with 4 MiB reads of an
        // in-memory Blob); default readers, slices and arrayBuffer() work.
        const byobRead = () =>
          how === 'fails' ? Promise.reject(new TypeError('network error')) : new Promise<never>(() => {});
        const stalling = (b: Blob): Blob =>
          ({
            size: b.size,
            type: b.type,
            slice: (start?: number, end?: number) => stalling(b.slice(start, end)),
            arrayBuffer: () => b.arrayBuffer(),
            stream: () => {
              const s = b.stream();
              const getReader = s.getReader.bind(s) as (o?: { mode?: 'byob' }) => ReadableStreamReader<Uint8Array>;
              return Object.assign(s, {
                getReader: (o?: { mode?: 'byob' }) =>
                  o?.mode === 'byob' ? { read: byobRead, releaseLock() {} } : getReader(o),
              });
            },
          }) as unknown as Blob;
        const out: Record<string, unknown> = {};
        for (const n of ['big.xpkg', 'flipped.xpkg']) {
          const source = new BlobSource(stalling(await (await fetch(`/packages/${n}`)).blob()), n, true);
          const t0 = performance.now();
          try {
            const reader = await PackageReader.fromSource(source);
            try {
              await reader.verifyIntegrity();
              out[n] = { ok: true };
            } finally {
              await reader.close();
            }
          } catch (e) {
            out[n] = { code: (e as { code?: string }).code ?? String(e) };
          }
          out[`${n} stalls`] = source.byobStalls;
          out[`${n} ms`] = performance.now() - t0;
        }
        return out;
      }, how);
      expect(got['big.xpkg']).toEqual({ ok: true });
      expect(got['flipped.xpkg']).toEqual({ code: 'E_DIGEST_MISMATCH' });
      // the reads in flight stall together (at most 4 at once); then the page reads through chunks,
      // so the second package never tries BYOB
      expect(got['big.xpkg stalls']).toBeGreaterThanOrEqual(1);
      expect(got['big.xpkg stalls']).toBeLessThanOrEqual(4);
      expect(got['flipped.xpkg stalls']).toBe(0);
      expect(got['flipped.xpkg ms'] as number).toBeLessThan(2000);
    },
    60_000,
  );
});
