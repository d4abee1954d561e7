/// <reference lib="dom" />
// Code handed to page.evaluate runs in the page: it is typed with the DOM library.
/**
 * Every frozen vector of spec/vectors, opened and verified in a real Chromium through `xpkg/browser`
 * (its worker, WebCrypto block digests, DecompressionStream), gives the result and code Node's
 * verifier gives for the same file: once from bytes in memory and once from its URL with range
 * requests. Node's answers are computed here, not copied from expected.json (which they must also match).
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verify } from '../signing/verify.js';
import { XpkgError } from '../spec/errors.js';
import { type BrowserRig, BUILT, haveBrowser, type Lib, loadLibrary, startRig } from './helpers/browser.js';

const DIR = join(import.meta.dirname, '..', 'spec', 'vectors');
type Outcome = { ok: true; id: string } | { error: string };

async function nodeOutcome(file: string): Promise<Outcome> {
  try {
    const r = await verify(join(DIR, file), { allowUnsigned: true, rollbackStore: null });
    return { ok: true, id: r.packageId };
  } catch (e) {
    if (e instanceof XpkgError) return { error: e.code };
    throw e;
  }
}

describe.skipIf(!haveBrowser)('spec/vectors in Chromium', () => {
  let rig: BrowserRig;
  beforeAll(async () => {
    if (!BUILT) throw new Error('dist/browser is not built: run npm run build');
    rig = await startRig({ packages: DIR });
  });
  afterAll(() => rig?.close());

  it('every vector: same result and code as Node, from bytes and from a URL', async () => {
    const files = (await readdir(DIR)).filter((f) => f.endsWith('.xpkg')).sort();
    const expected = JSON.parse(await readFile(join(DIR, 'expected.json'), 'utf8')) as Record<
      string,
      { error?: string }
    >;
    const node: Record<string, Outcome> = {};
    for (const f of files) node[f] = await nodeOutcome(f);
    const page = await rig.page();
    await page.goto(rig.server.url);
    await loadLibrary(page);
    const browser = await page.evaluate(async (names: string[]) => {
      const { openPackage } = (window as unknown as { xpkg: Lib }).xpkg;
      const outcome = async (input: Uint8Array | string) => {
        try {
          const pkg = await openPackage(input, { allowUnsigned: true });
          try {
            return { ok: true as const, id: (await pkg.verify()).packageId };
          } finally {
            await pkg.close();
          }
        } catch (e) {
          return { error: (e as { code?: string }).code ?? String(e) };
        }
      };
      const out: Record<string, { bytes: unknown; url: unknown }> = {};
      for (const n of names) {
        const bytes = new Uint8Array(await (await fetch(`/packages/${n}`)).arrayBuffer());
        out[n] = { bytes: await outcome(bytes), url: await outcome(`/packages/${n}`) };
      }
      return out;
    }, files);
    for (const f of files) {
      expect(browser[f].bytes, `${f} from bytes`).toEqual(node[f]);
      expect(browser[f].url, `${f} from its URL`).toEqual(node[f]);
      expect('error' in node[f] ? node[f].error : undefined, `${f}: Node against expected.json`).toBe(
        expected[f].error,
      );
    }
  });
});
