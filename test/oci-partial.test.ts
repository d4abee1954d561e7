/**
 * Partial packages (spec/OCI.md §4) at the format level, with no registry: the layout a partial
 * pull writes is a strict archive the one reader opens and verifies (signatures included, since the
 * manifest is untouched), and every inconsistent `xpkg/partial.json` is refused with its code.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Artifact, artifactOf, hexOf, MEDIA } from '../oci/artifact.js';
import { layoutPartial, type Plan, type PlanInput, planPartial, planWhole } from '../oci/plan.js';
import { inspectPackage } from '../pack/inspect.js';
import { packFolder } from '../pack/pack.js';
import { PackageReader } from '../pack/reader.js';
import { unpackPackage } from '../pack/unpack.js';
import { verify } from '../signing/verify.js';
import { canonicalBytes } from '../spec/canonical.js';
import { XpkgError } from '../spec/errors.js';
import { partialBytes } from '../spec/partial.js';
import { baseManifest, tempDir, writeSource } from './helpers/source.js';

const MULTI = 'fixtures/dist/multi-variant.xpkg';

async function inputOf(pkg: string): Promise<{ input: PlanInput; art: Artifact }> {
  const reader = await PackageReader.open(pkg);
  try {
    const art = await artifactOf(reader);
    const blob = (type: string) => art.blobs.find((b) => b.descriptor.mediaType === type)?.bytes ?? null;
    return {
      art,
      input: {
        oci: art.manifest,
        manifest: reader.manifest,
        manifestBytes: reader.manifestBytes,
        skeleton: blob(MEDIA.skeleton)!,
        signatures: blob(MEDIA.signatures),
      },
    };
  } finally {
    await reader.close();
  }
}

/** Writes a plan to a file, taking each layer's bytes from the source package. */
async function write(plan: Plan, from: string): Promise<string> {
  const reader = await PackageReader.open(from);
  const out = Buffer.alloc(plan.size);
  for (const p of plan.pieces) {
    if ('bytes' in p) p.bytes.copy(out, p.at);
    else if (p.layer.size) (await reader.readRaw(reader.entry(p.path)!)).copy(out, p.at);
  }
  await reader.close();
  const file = join(tempDir(), 'p.xpkg');
  writeFileSync(file, out);
  return file;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return e instanceof XpkgError ? e.code : String(e);
  }
  return 'no error';
}

const openAndCheck = async (file: string) => {
  const r = await PackageReader.open(file);
  try {
    return await r.verifyIntegrity();
  } finally {
    await r.close();
  }
};

describe('partial packages', () => {
  it('the whole plan reassembles the package byte for byte', async () => {
    const { input } = await inputOf(MULTI);
    expect(readFileSync(await write(planWhole(input), MULTI)).equals(readFileSync(MULTI))).toBe(true);
    // Alignment padding (all zero) is left out of the skeleton: it is a small fraction of the
    // archive's non-payload bytes.
    const overhead = readFileSync(MULTI).length - input.manifest.files.reduce((n, f) => n + f.size, 0);
    expect(input.skeleton.length).toBeLessThan(overhead / 10);
  });

  it('a partial package opens, verifies its signature and present files, and records exactly what it lacks', async () => {
    const { input, art } = await inputOf(MULTI);
    const plan = planPartial(input, new Set(['cpu-fp32']));
    expect(plan.absent).not.toContain('models/add-one-fp32.onnx');
    expect(plan.absent.length).toBe(input.manifest.files.length - 1);
    const file = await write(plan, MULTI);
    const report = await openAndCheck(file);
    expect(report.absent).toEqual(plan.absent);
    expect(report.files).toBe(1);
    const v = await verify(file, { trust: ['fixtures/keys/test.pub'], rollbackStore: null });
    expect(v.signatures.status).toBe('verified');
    expect(v.packageId).toBe(hexOf(art.manifest.config.digest)); // same manifest, same id, same signature
  });

  it('assets are never left out, even when no variant is kept', async () => {
    const src = writeSource({ 'models/net.onnx': Buffer.alloc(70_000, 1) }, baseManifest());
    const pkg = join(tempDir(), 'demo.xpkg');
    await packFolder(src, pkg);
    const { input } = await inputOf(pkg);
    const plan = planPartial(input, new Set());
    expect(plan.absent).toEqual(['models/net.onnx']);
    const file = await write(plan, pkg);
    expect((await openAndCheck(file)).files).toBe(1); // the labels asset
    // A record that leaves out the asset is refused.
    const bad = layoutPartial(input, ['assets/labels.txt'], partialBytes(['assets/labels.txt']));
    expect(await codeOf(openAndCheck(await write(bad, pkg)))).toBe('E_FILE_PARTIAL');
  });

  it('refuses records that are not canonical, empty, or that disagree with the archive', async () => {
    const { input } = await inputOf(MULTI);
    const absent = planPartial(input, new Set(['cpu-fp32'])).absent;
    const cases: [string, readonly string[], Buffer, string][] = [
      ['white space', absent, Buffer.from(JSON.stringify({ absent }, null, 1)), 'E_FILE_PARTIAL'],
      ['unsorted', absent, canonicalBytes({ absent: [...absent].reverse() }), 'E_FILE_PARTIAL'],
      ['empty', [], canonicalBytes({ absent: [] }), 'E_FILE_PARTIAL'],
      ['extra key', absent, canonicalBytes({ absent, more: 1 }), 'E_FILE_PARTIAL'],
      ['lists a present file', absent, partialBytes([...absent, 'models/add-one-fp32.onnx']), 'E_FILE_PARTIAL'],
      ['lists an unknown file', absent, partialBytes([...absent, 'models/nope.onnx']), 'E_FILE_PARTIAL'],
      ['omits an absent file', absent, partialBytes(absent.slice(1)), 'E_FILE_MISSING'],
    ];
    for (const [what, gone, record, code] of cases)
      expect(await codeOf(openAndCheck(await write(layoutPartial(input, gone, record), MULTI))), what).toBe(code);
  });

  it('unpack refuses a partial package (E_FILE_PARTIAL) and writes nothing; inspect marks its absent files', async () => {
    const { input } = await inputOf(MULTI);
    const plan = planPartial(input, new Set(['cpu-fp32']));
    const file = await write(plan, MULTI);
    const dest = join(tempDir(), 'out');
    expect(await codeOf(unpackPackage(file, dest))).toBe('E_FILE_PARTIAL');
    expect(existsSync(dest)).toBe(false);
    const files = (await inspectPackage(file)).files;
    expect(files.filter((f) => f.stored === 'absent').map((f) => f.path)).toEqual(plan.absent);
    expect(files.find((f) => f.path === 'models/add-one-fp32.onnx')?.stored).toBe('stored');
  });
});
