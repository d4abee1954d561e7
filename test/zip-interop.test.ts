/**
 * Interoperability with independent ZIP readers: Python's zipfile (`python3 -m zipfile -t`) and
 * Info-ZIP's `unzip -t` test every example package in fixtures/dist and a > 4 GiB ZIP64 package;
 * both list the same entries as our reader, and `unzip -p` extracts every file with the SHA-256
 * the manifest records. An xpkg is meant to be a plain ZIP to every other tool.
 *
 * In CI (.ci/run installs unzip where it is missing) a missing tool fails the test; elsewhere it is
 * skipped with a warning saying so.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PackageReader } from '../pack/reader.js';
import * as Z from '../pack/zip.js';
import { MANIFEST_PATH } from '../spec/limits.js';
import { tempDir } from './archive-helpers.js';
import { writeSparseZip64 } from './helpers/zip64.js';

const CI = Boolean(process.env.CI);
const works = (cmd: string, args: string[]) => {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return !r.error && r.status === 0;
};
const have = { unzip: works('unzip', ['-v']), python3: works('python3', ['-c', 'import zipfile']) };
for (const [tool, ok] of Object.entries(have)) {
  if (!ok && !CI)
    console.warn(`test/zip-interop: ${tool} is not installed here, so its checks are SKIPPED (CI installs it)`);
}
/** Runs only where the tool exists, except in CI, where a missing tool must fail rather than skip. */
const withTool = (tool: keyof typeof have) => it.skipIf(!have[tool] && !CI);

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
  sha256: string;
}
/** Runs a tool without blocking the worker; stdout is kept as text (up to 1 MiB) and hashed whole. */
async function tool(cmd: string, args: string[]): Promise<Ran> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const hash = createHash('sha256');
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => {
    hash.update(b);
    if (stdout.length < 1 << 20) stdout += b.toString('latin1');
  });
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const [[status]] = await Promise.all([once(child, 'close') as Promise<[number | null]>, once(child, 'spawn')]);
  return { status, stdout, stderr, sha256: hash.digest('hex') };
}

/** Name, size and method of every entry as Python's zipfile reads them. */
async function pythonEntries(pkg: string): Promise<[string, number, number][]> {
  const script =
    'import json, sys, zipfile\nprint(json.dumps([[i.filename, i.file_size, i.compress_type] for i in zipfile.ZipFile(sys.argv[1]).infolist()]))';
  const r = await tool('python3', ['-c', script, pkg]);
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

async function ourEntries(
  pkg: string,
): Promise<{ entries: [string, number, number][]; files: { path: string; sha256: string }[] }> {
  await using reader = await PackageReader.open(pkg);
  return {
    entries: reader.entries.map((e) => [e.name, e.size, e.method] as [string, number, number]),
    files: reader.manifest.files,
  };
}

const EXAMPLES = readdirSync('fixtures/dist')
  .filter((f) => f.endsWith('.xpkg'))
  .sort();

describe('example packages read by independent ZIP readers', { timeout: 180_000 }, () => {
  it('fixtures/dist holds every example package', () => {
    expect(EXAMPLES).toEqual([
      'detector-split.xpkg',
      'detector.xpkg',
      'multi-variant.xpkg',
      'ocr-script.xpkg',
      'paddleocr-v4.xpkg',
      'segmenter.xpkg',
    ]);
  });

  withTool('python3').each(EXAMPLES)(
    'python3 -m zipfile -t %s: no bad entry; same entries as our reader',
    async (name) => {
      const pkg = join('fixtures/dist', name);
      const r = await tool('python3', ['-m', 'zipfile', '-t', pkg]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain('Done testing');
      expect(r.stdout).not.toContain('corrupted');
      expect(await pythonEntries(pkg)).toEqual((await ourEntries(pkg)).entries);
    },
  );

  withTool('unzip').each(EXAMPLES)(
    'unzip -t %s: no errors; unzip -p extracts every file with its manifest SHA-256',
    async (name) => {
      const pkg = join('fixtures/dist', name);
      const t = await tool('unzip', ['-t', pkg]);
      expect(t.status, t.stdout + t.stderr).toBe(0);
      expect(t.stdout).toContain('No errors detected in compressed data');
      const ours = await ourEntries(pkg);
      const listed = await tool('unzip', ['-Z1', pkg]);
      expect(listed.stdout.trimEnd().split('\n')).toEqual(ours.entries.map(([n]) => n));
      for (const f of ours.files) {
        const x = await tool('unzip', ['-p', pkg, f.path]);
        expect(x.status).toBe(0);
        expect([f.path, x.sha256]).toEqual([f.path, f.sha256]);
      }
    },
  );
});

describe('a > 4 GiB ZIP64 package read by independent ZIP readers', { timeout: 300_000 }, () => {
  let made: { path: string; big: number; layouts: Z.EntryLayout[] };
  beforeAll(async () => {
    const path = join(await tempDir('xpkg-zip64-'), 'zip64.xpkg');
    made = { path, ...(await writeSparseZip64(path, { trueDigests: true })) };
  });

  it('is a valid package to our reader, with ZIP64 sizes and offsets', async () => {
    const { path, big, layouts } = made;
    expect(Z.needsZip64Sizes(layouts[1])).toBe(true);
    expect(Z.needsZip64Offset(layouts[2])).toBe(true);
    await using r = await PackageReader.open(path);
    expect(r.entries.map((e) => [e.name, e.size])).toEqual([
      [MANIFEST_PATH, expect.any(Number)],
      ['assets/big.bin', big],
      ['assets/small.txt', 18],
      ['models/net.onnx', 0],
    ]);
    expect((await r.readVerified('assets/small.txt')).toString()).toBe('after the big one\n');
  });

  withTool('python3')(
    'python3 -m zipfile -t checks every CRC, the 4 GiB one included, and lists the same entries',
    async () => {
      const { path } = made;
      const r = await tool('python3', ['-m', 'zipfile', '-t', path]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain('Done testing');
      expect(r.stdout).not.toContain('corrupted');
      expect(await pythonEntries(path)).toEqual((await ourEntries(path)).entries);
    },
  );

  withTool('unzip')('unzip -t finds no errors; unzip -p extracts the small file from past the 4 GiB mark', async () => {
    const { path } = made;
    const t = await tool('unzip', ['-t', path]);
    expect(t.status, t.stdout + t.stderr).toBe(0);
    expect(t.stdout).toContain('No errors detected in compressed data');
    const x = await tool('unzip', ['-p', path, 'assets/small.txt']);
    expect([x.status, x.stdout]).toEqual([0, 'after the big one\n']);
  });
});
