/** Shared helpers for the archive tests: temp folders, packing a source given as data, and the outcome of reading bytes. */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll } from 'vitest';
import { type PackOptions, packFolder } from '../pack/pack.js';
import { PackageReader } from '../pack/reader.js';
import { type ErrorCode, XpkgError } from '../spec/errors.js';

const made: string[] = [];
// Registered when a test file imports this module, so it runs after that file's tests.
afterAll(async () => {
  await Promise.all(made.splice(0).map((p) => rm(p, { recursive: true, force: true })));
});

/** A fresh temp folder, removed after the test file. */
export async function tempDir(tag = 'xpkg-arch-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), tag));
  made.push(d);
  return d;
}

export type SourceFiles = Record<string, string | Buffer>;

/** Writes `files` and `xpkg.json` (= `source`) into a new folder and returns it. */
export async function writeSource(files: SourceFiles, source: unknown): Promise<string> {
  const dir = join(await tempDir('xpkg-arch-src-'), 'src');
  for (const [p, data] of Object.entries({ ...files, 'xpkg.json': JSON.stringify(source) })) {
    await mkdir(dirname(join(dir, p)), { recursive: true });
    await writeFile(join(dir, p), data);
  }
  return dir;
}

/** Packs a source folder and returns the package bytes. */
export async function packToBuffer(dir: string, options: PackOptions = {}): Promise<Buffer> {
  const out = join(await tempDir('xpkg-arch-out-'), 'p.xpkg');
  await packFolder(dir, out, options);
  return readFile(out);
}

export function demoSource(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'attack-demo',
    version: '2.1.0',
    sequence: 7,
    license: 'MIT',
    task: 'image-classification',
    inputs: [{ name: 'image', type: 'image' }],
    outputs: [{ name: 'labels', type: 'classification' }],
    models: [
      { id: 'net', variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['models/net.onnx'] }] },
    ],
    pipeline: {
      steps: [
        { op: 'infer', model: 'net' },
        { op: 'script', script: 'scripts/post.js', hook: 'post' },
      ],
      scripts: [{ path: 'scripts/post.js', hooks: ['post'] }],
    },
    assets: [{ id: 'labels', path: 'assets/labels.txt', kind: 'labels' }],
    ...extra,
  };
}

export type Outcome = { ok: true; id: string } | { error: ErrorCode; cls: string };

let seq = 0;
let scratch: string | undefined;
/**
 * Writes `bytes` to a file and opens + fully verifies it. Any exception that is not an XpkgError
 * is rethrown, so a test sees it as a failure; `cls` names the error class (FormatError, …).
 */
export async function outcome(bytes: Buffer): Promise<Outcome> {
  scratch ??= await tempDir('xpkg-arch-case-');
  const path = join(scratch, `case-${seq++ % 4}.xpkg`);
  await writeFile(path, bytes);
  return outcomeOfFile(path);
}

export async function outcomeOfFile(path: string): Promise<Outcome> {
  let r: PackageReader | undefined;
  try {
    r = await PackageReader.open(path);
    await r.verifyIntegrity();
    return { ok: true, id: r.id };
  } catch (e) {
    if (e instanceof XpkgError) return { error: e.code, cls: e.constructor.name };
    throw e;
  } finally {
    await r?.close();
  }
}

/** The error code `bytes` is rejected with (throws if accepted). */
export async function rejection(bytes: Buffer): Promise<ErrorCode> {
  const o = await outcome(bytes);
  if ('ok' in o) throw new Error(`package was accepted (id ${o.id})`);
  return o.error;
}
