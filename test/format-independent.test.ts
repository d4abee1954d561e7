/**
 * The format as an independent implementer reads it: test/helpers/xpkg_indep.py is a writer and a
 * checker written in Python's stdlib from spec/FORMAT.md and spec/SIGNATURES.md alone.
 * (1) Packages it writes with each freedom the spec allows are accepted by `xpkg verify` and
 * `xpkg inspect` with the id it computed, and stay valid once `xpkg sign` adds a signature.
 * (2) Packages xpkg writes (the fixtures, a fresh pack with Unicode names, a signed one) pass every
 * MUST the checker knows. (3) Where the spec and the code disagreed, the spec's reading is pinned.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { packFolder } from '../pack/index.js';
import { rfc3339Instant } from '../spec/date-time.js';
import { tempDir, writeSource } from './archive-helpers.js';
import { xpkgAsync } from './helpers/cli.js';

const run = promisify(execFile);
const HELPER = 'test/helpers/xpkg_indep.py';
const KEY = 'fixtures/keys/test.key';
const PUB = 'fixtures/keys/test.pub';
const CI = Boolean(process.env.CI);
const havePython = await run('python3', ['-c', 'import zlib, hashlib']).then(
  () => true,
  () => false,
);
if (!havePython && !CI) console.warn('test/format-independent: python3 is missing here, so it is SKIPPED');
const withPython = describe.skipIf(!havePython && !CI);

interface Checked {
  id: string;
  problems: string[];
  layout: [string, number, number][];
}
async function py<T>(...args: string[]): Promise<T> {
  const { stdout } = await run('python3', [HELPER, ...args], { maxBuffer: 1 << 24 });
  return JSON.parse(stdout) as T;
}
const check = (pkg: string) => py<Checked>('check', pkg);

let dir: string;
/** Writes `plan` with the Python writer; returns the package path and the id Python computed. */
async function pyWrite(name: string, plan: Record<string, unknown>): Promise<{ pkg: string; id: string }> {
  const planPath = join(dir, `${name}.json`);
  writeFileSync(planPath, JSON.stringify(plan));
  const pkg = join(dir, `${name}.xpkg`);
  const { id } = await py<{ id: string }>('write', planPath, pkg);
  return { pkg, id };
}

const model = (file = 'models/net.onnx') => ({
  id: 'net',
  variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: [file] }],
});
function manifest(extra: Record<string, unknown> = {}, assets: string[] = []): Record<string, unknown> {
  return {
    name: 'indep',
    version: '1.0.0',
    sequence: 1,
    license: 'MIT',
    task: 'other',
    inputs: [{ name: 'x', type: 'tensor', dtype: 'float32' }],
    outputs: [{ name: 'y', type: 'tensor' }],
    models: [model()],
    pipeline: { steps: [{ op: 'infer', model: 'net', params: { inputs: 'x', outputs: 'y' } }] },
    ...(assets.length ? { assets: assets.map((path, i) => ({ id: `a${i}`, path, kind: 'other' })) } : {}),
    ...extra,
  };
}
const net = { 'models/net.onnx': { pattern: 1000 } };
const text = (t: string) => ({ text: t });

/** Each is a way the spec lets a writer lay out a package. */
const conformant: Record<string, Record<string, unknown>> = {
  'payloads in reverse order': {
    manifest: manifest({}, ['a.txt', 'z.txt']),
    files: { ...net, 'a.txt': text('a'), 'z.txt': text('z') },
    order: ['z.txt', 'models/net.onnx', 'a.txt'],
  },
  'deflated assets, an empty one among them': {
    manifest: manifest({}, ['a.txt', 'b.txt']),
    files: { ...net, 'a.txt': text('hello '.repeat(100)), 'b.txt': text('') },
    deflate: ['a.txt', 'b.txt'],
  },
  'deflated manifest': {
    manifest: manifest({}, ['a.txt']),
    files: { ...net, 'a.txt': text('x') },
    deflateManifest: true,
  },
  'deflate of level 0 (stored blocks)': {
    manifest: manifest({}, ['a.txt']),
    files: { ...net, 'a.txt': text('abc'.repeat(500)) },
    deflate: ['a.txt'],
    level: 0,
  },
  'deflate with a sync flush and fixed Huffman codes': {
    manifest: manifest({}, ['a.txt']),
    files: { ...net, 'a.txt': text('abc'.repeat(500)) },
    deflate: ['a.txt'],
    syncFlush: true,
    strategy: 4,
  },
  'another fixed DOS timestamp': {
    manifest: manifest(),
    files: net,
    dos: [(12 << 11) | (34 << 5) | 14, (44 << 9) | (6 << 5) | 15],
  },
  'an empty model file and an empty asset': {
    manifest: manifest({}, ['e.txt']),
    files: { 'models/net.onnx': { zeros: 0 }, 'e.txt': { zeros: 0 } },
  },
  'Unicode names whose UTF-8 and UTF-16 orders differ': {
    manifest: manifest({ models: [model('models/网络.onnx')] }, ['café/ñ.txt', 'ｚ.txt', '😀.txt']),
    files: {
      'models/网络.onnx': { pattern: 2000 },
      'café/ñ.txt': text('é'),
      'ｚ.txt': text('fullwidth'),
      '😀.txt': text('emoji'),
    },
  },
  'longest names: a 255-byte segment, 32 segments': {
    manifest: manifest({}, [`${'é'.repeat(127)}a/x`, Array(32).fill('d').join('/')]),
    files: { ...net, [`${'é'.repeat(127)}a/x`]: text('x'), [Array(32).fill('d').join('/')]: text('y') },
  },
  'optional fields, numbers in JCS form, escapes': {
    manifest: manifest({
      description: 'Zoë ✓ \u2028 "q" \\ \u0001 \u007f',
      expires: '2999-01-01T00:00:00.5+05:30',
      metadata: { author: 'Ünïcødé', homepage: 'https://example.org' },
      pipeline: {
        steps: [
          { op: 'normalize', id: 'n', params: { a: [1.5, 1e21, 1e-7, 0.000001, 5e-324, 1e300, 0.1, 2 ** 53], Z: 1 } },
          { op: 'infer', model: 'net', params: { inputs: 'x', outputs: 'y' } },
        ],
      },
    }),
    files: net,
  },
  'files of more than one block, exactly one block': {
    manifest: manifest({}, ['big.bin', 'exact.bin']),
    files: {
      'models/net.onnx': { pattern: 4194304 + 1 },
      'big.bin': { pattern: 2 * 4194304 },
      'exact.bin': { zeros: 4194304 },
    },
  },
  'a 4-byte shim before a model 2 bytes short of alignment': {
    manifest: manifest({}, ['a.bin']),
    files: { ...net, 'a.bin': { zeros: 0 } },
    shim: ['a.bin', 'models/net.onnx'],
  },
};

withPython('an independent writer (Python, from the spec text)', () => {
  beforeAll(async () => {
    dir = await tempDir('xpkg-indep-');
  });

  it.each(Object.entries(conformant))('xpkg accepts %s with the same id, signed and unsigned', async (name, plan) => {
    const { pkg, id } = await pyWrite(name.replace(/\W+/g, '-'), plan);
    expect((await check(pkg)).problems).toEqual([]);
    const v = await xpkgAsync(['verify', '--allow-unsigned', '--json', pkg]);
    expect(v.json?.error).toBeUndefined();
    expect(v.json?.result.packageId).toBe(id);
    const i = await xpkgAsync(['inspect', '--json', pkg]);
    expect(i.json?.result.id).toBe(id);

    const signed = `${pkg}.signed.xpkg`;
    const s = await xpkgAsync(['sign', '-k', KEY, '-o', signed, '--json', pkg]);
    expect(s.json?.result.packageId).toBe(id);
    const sv = await xpkgAsync(['verify', '--trust', PUB, '--state-dir', join(dir, 'state'), '--json', signed]);
    expect(sv.json?.result.signatures.status).toBe('verified');
    const back = await check(signed);
    expect(back.problems).toEqual([]);
    expect(back.id).toBe(id);
  });

  it('the shim case really carries a shim', async () => {
    const { pkg } = await pyWrite(
      'shim-layout',
      conformant['a 4-byte shim before a model 2 bytes short of alignment']!,
    );
    expect((await check(pkg)).layout.map(([n, , pad]) => [n, pad])).toEqual([
      ['xpkg/manifest.json', 0],
      ['a.bin', 4],
      ['models/net.onnx', 65534],
    ]);
  });

  it('files[] sorted by UTF-16 code units (as JSON keys are) instead of UTF-8 bytes is refused', async () => {
    const plan = conformant['Unicode names whose UTF-8 and UTF-16 orders differ']!;
    const { pkg } = await pyWrite('utf16-order', { ...plan, filesOrder: 'utf16' });
    const v = await xpkgAsync(['verify', '--allow-unsigned', '--json', pkg]);
    expect(v.json?.error?.code).toBe('E_MANIFEST_REFERENCE');
  });
});

withPython('packages xpkg writes, read by the independent checker', () => {
  it('every fixture package meets every MUST the checker knows', async () => {
    const names = (await readdir('fixtures/dist')).filter((n) => n.endsWith('.xpkg'));
    expect(names.length).toBeGreaterThan(0);
    for (const n of names) expect({ n, ...(await check(join('fixtures/dist', n))) }).toMatchObject({ n, problems: [] });
  });

  it('a fresh pack with Unicode names, aligned models and a signature does too', async () => {
    const d = await tempDir('xpkg-indep-pack-');
    const src = await writeSource(
      {
        'models/网络.onnx': Buffer.alloc(70_000, 1),
        'models/b.onnx': Buffer.alloc(3, 2),
        'ｚ.txt': 'z',
        '😀.txt': 'e',
        'empty.txt': '',
      },
      manifest(
        {
          models: [
            {
              id: 'net',
              variants: [
                { id: 'a', runtime: 'onnxruntime', precision: 'fp32', files: ['models/网络.onnx'] },
                { id: 'b', runtime: 'onnxruntime', precision: 'fp32', files: ['models/b.onnx'] },
              ],
            },
          ],
        },
        ['ｚ.txt', '😀.txt', 'empty.txt'],
      ),
    );
    const out = join(d, 'p.xpkg');
    const { id } = await packFolder(src, out);
    expect(await check(out)).toMatchObject({ id, problems: [] });
    const s = await xpkgAsync(['sign', '-k', KEY, '--json', out]);
    expect(s.status).toBe(0);
    expect(await check(out)).toMatchObject({ id, problems: [] });
  });
});

describe('expires is an RFC 3339 date-time, read the same by every verifier', () => {
  it('parses offsets, fractions, lower-case t/z, leap seconds and years before 100', () => {
    expect(rfc3339Instant('2030-01-01T05:30:00.5+05:30')).toBe(Date.parse('2030-01-01T00:00:00.500Z'));
    expect(rfc3339Instant('2030-01-01t00:00:00z')).toBe(Date.parse('2030-01-01T00:00:00Z'));
    expect(rfc3339Instant('1998-12-31T23:59:60Z')).toBe(Date.parse('1999-01-01T00:00:00Z'));
    expect(rfc3339Instant('1998-12-31T15:59:60-08:00')).toBe(Date.parse('1999-01-01T00:00:00Z'));
    expect(rfc3339Instant('0050-06-01T00:00:00Z')).toBe(Date.parse('0050-06-01T00:00:00Z'));
    for (const bad of [
      '2030-01-01 00:00:00Z',
      '2030-01-01T00:00:00+0100',
      '2030-01-01T00:00:00',
      '2030-02-30T00:00:00Z',
      '2030-01-01T12:00:60Z',
      '2030-01-01T00:00Z',
      '2030-01-01T00:00:00+01:60',
    ])
      expect(rfc3339Instant(bad), bad).toBeUndefined();
  });

  withPython('through the CLI', () => {
    beforeAll(async () => {
      dir ??= await tempDir('xpkg-indep-');
    });
    it.each([
      ['2999-01-01 00:00:00Z', 'E_MANIFEST_REFERENCE'],
      ['2999-01-01T00:00:00+0100', 'E_MANIFEST_REFERENCE'],
      ['2000-01-01T00:00:00+01:00', 'E_POLICY_EXPIRED'],
      ['2998-12-31T23:59:60Z', undefined],
    ])('expires %s gives %s', async (expires, code) => {
      const { pkg } = await pyWrite(`expires-${expires.replace(/\W+/g, '-')}`, {
        manifest: manifest({ expires }),
        files: net,
      });
      const v = await xpkgAsync(['verify', '--allow-unsigned', '--json', pkg]);
      expect(v.json?.error?.code).toBe(code);
    });
  });
});
