/**
 * One crafted package per attack class, built here from a freshly packed package (with an aligned,
 * non-empty model) by tools/vectors/craft.ts, each rejected with its specific code; then the safety
 * of `unpack` against a hostile destination.
 */
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32, deflateRawSync, inflateRawSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { PackageReader } from '../pack/reader.js';
import { unpackPackage } from '../pack/unpack.js';
import * as Z from '../pack/zip.js';
import { FormatError, PackError } from '../spec/errors.js';
import { LIMITS, SIGNATURES_PATH } from '../spec/limits.js';
import {
  type CraftEntry,
  type CraftOptions,
  craftArchive,
  deflateFixed,
  manifestOf,
  parseArchive,
  withFiles,
  withManifest,
} from '../tools/vectors/craft.js';
import { edit } from '../tools/vectors/generate.js';
import { demoSource, outcome, packToBuffer, rejection, tempDir, writeSource } from './archive-helpers.js';

const MODEL = Buffer.from(Array.from({ length: 200 }, (_, i) => (i * 37) & 0xff));
const LABELS = Buffer.from('zero\none\ntwo\nthree\n');
const SCRIPT = Buffer.from('export function post(x) { return x; }\n');
let pkg: Buffer;
let base: CraftEntry[];
let ts: { time: number; date: number };

beforeAll(async () => {
  pkg = await packToBuffer(
    await writeSource(
      { 'models/net.onnx': MODEL, 'assets/labels.txt': LABELS, 'scripts/post.js': SCRIPT },
      demoSource(),
    ),
    { sourceDateEpoch: '1234567890' },
  );
  ({ entries: base, ts } = parseArchive(pkg));
});

const craft = (entries: CraftEntry[], o: CraftOptions = {}) => craftArchive(entries, { ts, ...o });
const on = (name: string, patch: (e: CraftEntry) => Partial<CraftEntry>, o: CraftOptions = {}) =>
  craft(edit(base, name, patch), o);
const plus = (added: CraftEntry[], listed = false) => craft(withFiles(base, added, { listInManifest: listed }));
const entry = (name: string | Buffer, data = 'x', more: Partial<CraftEntry> = {}): CraftEntry => ({
  name,
  data: Buffer.from(data),
  ...more,
});
const LBL = 'assets/labels.txt';

describe('the crafting toolkit', () => {
  it('re-lays out a packed package byte for byte and the reader accepts it', async () => {
    expect(craft(base).equals(pkg)).toBe(true);
    expect(base.map((e) => e.name)).toEqual([
      'xpkg/manifest.json',
      'assets/labels.txt',
      'models/net.onnx',
      'scripts/post.js',
    ]);
    expect(await outcome(pkg)).toMatchObject({ ok: true });
  });

  it('deflateFixed round-trips through zlib', () => {
    for (const d of [Buffer.alloc(0), LABELS, MODEL, Buffer.alloc(70_000, 7), Buffer.from('abc'.repeat(5000))]) {
      expect(inflateRawSync(deflateFixed(d)).equals(d)).toBe(true);
    }
  });
});

describe('entry names', () => {
  const unsafe = [
    '../x',
    'a/../../x',
    '/etc/passwd',
    'a\\b',
    '..\\x',
    'C:x',
    'c:/x',
    'a/./b',
    'a//b',
    './a',
    'CON',
    'lpt1.txt',
    'CONOUT$',
    'a/conin$.txt',
    'nul .txt',
    'Aux  .onnx',
    'a /b',
    'a./b',
    'a\u0000b',
    'a\nb',
    'x\u202egpj.exe',
    'a:b',
    'e\u0301',
    '\ufeffa',
    'a'.repeat(256),
    Array(33).fill('a').join('/'),
  ];
  for (const name of unsafe) {
    it(`${JSON.stringify(name.length > 40 ? `${name.slice(0, 20)}…` : name)} → E_PATH_UNSAFE`, async () => {
      expect(await rejection(plus([entry(name)]))).toBe('E_PATH_UNSAFE');
    });
  }
  it('a name that is not valid UTF-8 → E_PATH_UNSAFE', async () => {
    expect(await rejection(plus([entry(Buffer.from([0x61, 0xc3, 0x28]))]))).toBe('E_PATH_UNSAFE');
  });
  const collide: [string, string][] = [
    ['assets/Labels.txt', LBL],
    ['\ufb01le', 'file'],
    ['stra\u00dfe', 'STRASSE'],
    ['\uff26ull', 'full'],
    ['assets/labels.txt/inner', LBL],
    ['MODELS', 'models/net.onnx'],
    ['models/net\u200c.onnx', 'models/net.onnx'],
    ['xpkg\u200d/manifest.json', 'xpkg/manifest.json'],
    ['scripts/post\u206a.js', 'scripts/post.js'],
  ];
  for (const [a, b] of collide) {
    it(`${JSON.stringify(a)} vs ${JSON.stringify(b)} → E_PATH_COLLISION`, async () => {
      const added = [entry(a), ...(base.some((e) => e.name === b) ? [] : [entry(b)])];
      expect(await rejection(plus(added))).toBe('E_PATH_COLLISION');
    });
  }
  it('an exact duplicate → E_PATH_DUPLICATE', async () => {
    expect(await rejection(plus([entry(LBL, LABELS.toString())]))).toBe('E_PATH_DUPLICATE');
  });
});

describe('local header against central header', () => {
  const cases: [string, (h: Buffer) => void, string][] = [
    ['name', (h) => void (h[Z.LOCAL_SIZE] ^= 0x01), 'E_ARCHIVE_HEADER_MISMATCH'],
    ['CRC-32', (h) => void (h[16] ^= 0x80), 'E_ARCHIVE_HEADER_MISMATCH'],
    ['method', (h) => void h.writeUInt16LE(8, 8), 'E_ARCHIVE_HEADER_MISMATCH'],
    ['flags', (h) => void h.writeUInt16LE(0x0801, 6), 'E_ARCHIVE_HEADER_MISMATCH'],
    ['data-descriptor flag', (h) => void h.writeUInt16LE(0x0808, 6), 'E_ARCHIVE_DATA_DESCRIPTOR'],
    ['version needed', (h) => void h.writeUInt16LE(45, 4), 'E_ARCHIVE_HEADER_MISMATCH'],
    ['date', (h) => void (h[12] ^= 1), 'E_ARCHIVE_HEADER_MISMATCH'],
    ['compressed size', (h) => void h.writeUInt32LE(LABELS.length - 1, 18), 'E_ARCHIVE_SIZE_MISMATCH'],
    ['size', (h) => void h.writeUInt32LE(LABELS.length * 2, 22), 'E_ARCHIVE_SIZE_MISMATCH'],
    ['signature', (h) => void h.writeUInt32LE(Z.SIG_CENTRAL, 0), 'E_ARCHIVE_HEADER_MISMATCH'],
  ];
  for (const [field, patch, code] of cases) {
    it(`${field} differs → ${code}`, async () => {
      expect(await rejection(on(LBL, () => ({ patchLocal: patch })))).toBe(code);
    });
  }
  it('an unknown local extra record → E_ARCHIVE_EXTRA_FIELD', async () => {
    const extra = Buffer.from([0x55, 0x54, 0x01, 0x00, 0x00]); // "UT" timestamp record
    const bytes = on(LBL, () => ({
      patchLocal: (h) => {
        h.writeUInt16LE(extra.length, 28);
        return Buffer.concat([h, extra]);
      },
    }));
    expect(await rejection(bytes)).toBe('E_ARCHIVE_EXTRA_FIELD');
  });
});

describe('layout', () => {
  it('two central headers pointing at one local header → E_ARCHIVE_OVERLAP', async () => {
    const lbl = base.findIndex((e) => e.name === LBL);
    let labelsAt = 0;
    const bytes = craft(
      base.map((e, i) =>
        i === lbl
          ? { ...e, offset: (a: number) => (labelsAt = a) }
          : i === lbl + 1
            ? { ...e, offset: () => labelsAt }
            : e,
      ),
    );
    expect(await rejection(bytes)).toBe('E_ARCHIVE_OVERLAP');
  });
  it('data running into the central directory → E_ARCHIVE_OVERLAP', async () => {
    expect(
      await rejection(on('scripts/post.js', (e) => ({ compressedSize: e.data.length + 40, size: e.data.length + 40 }))),
    ).toBe('E_ARCHIVE_OVERLAP');
  });
  it('gap bytes between entries → E_ARCHIVE_GAP', async () => {
    expect(await rejection(on('scripts/post.js', () => ({ gapBefore: Buffer.from('hidden') })))).toBe('E_ARCHIVE_GAP');
  });
  it('bytes before the archive, offsets shifted or not → E_ARCHIVE_PREFIX', async () => {
    expect(await rejection(Buffer.concat([Buffer.from('MZ\x90\x00'), pkg]))).toBe('E_ARCHIVE_PREFIX');
    expect(await rejection(craft(base, { prefix: Buffer.from('MZ\x90\x00'), offsetsIncludePrefix: true }))).toBe(
      'E_ARCHIVE_PREFIX',
    );
  });
  it('bytes after the end record → E_ARCHIVE_TRAILING', async () => {
    expect(await rejection(Buffer.concat([pkg, Buffer.from([0])]))).toBe('E_ARCHIVE_TRAILING');
  });
  it('archive comment and entry comment → E_ARCHIVE_COMMENT', async () => {
    expect(
      await rejection(craft(base, { patchEnd: (h) => void h.writeUInt16LE(3, 20), suffix: Buffer.from('hey') })),
    ).toBe('E_ARCHIVE_COMMENT');
    expect(
      await rejection(
        on(LBL, () => ({
          patchCentral: (h) => {
            h.writeUInt16LE(1, 32);
            return Buffer.concat([h, Buffer.from('!')]);
          },
        })),
      ),
    ).toBe('E_ARCHIVE_COMMENT');
  });
  it('two end records → E_ARCHIVE_MULTIPLE_END', async () => {
    expect(await rejection(Buffer.concat([pkg, pkg.subarray(pkg.length - Z.END_SIZE)]))).toBe('E_ARCHIVE_MULTIPLE_END');
  });
  it('manifest not first, central order differing, signatures not last → E_ARCHIVE_ORDER', async () => {
    expect(await rejection(craft([base[2], base[0], base[1], base[3]]))).toBe('E_ARCHIVE_ORDER');
    expect(await rejection(craft(base, { centralOrder: [0, 1, 3, 2] }))).toBe('E_ARCHIVE_ORDER');
    expect(await rejection(craft([base[0], entry(SIGNATURES_PATH, '{}'), ...base.slice(1)]))).toBe('E_ARCHIVE_ORDER');
  });
  it('model file not aligned (padding dropped) or deflated → E_ARCHIVE_ALIGNMENT', async () => {
    expect(await rejection(on('models/net.onnx', () => ({ padding: 0 })))).toBe('E_ARCHIVE_ALIGNMENT');
    expect(await rejection(on('models/net.onnx', () => ({ method: 8, padding: 0 })))).toBe('E_ARCHIVE_ALIGNMENT');
  });
  it('padding of the wrong length, not zero, or on an asset → E_ARCHIVE_EXTRA_FIELD', async () => {
    const shorter = (h: Buffer) => {
      const x = h.length - h.readUInt16LE(28); // start of the padding record (no ZIP64 record here)
      h.writeUInt16LE(h.readUInt16LE(x + 2) - 4, x + 2);
      h.writeUInt16LE(h.readUInt16LE(28) - 4, 28);
      return h.subarray(0, h.length - 4);
    };
    expect(await rejection(on('models/net.onnx', () => ({ padding: 'align', patchLocal: shorter })))).toBe(
      'E_ARCHIVE_EXTRA_FIELD',
    );
    const lblIdx = base.findIndex((e) => e.name === LBL);
    expect(
      await rejection(
        craft(
          base.map((e, i) =>
            i === lblIdx
              ? { ...e, padding: 16 }
              : e.name === 'models/net.onnx'
                ? { ...e, padding: 'align' as const }
                : e,
          ),
        ),
      ),
    ).toBe('E_ARCHIVE_EXTRA_FIELD');
    expect(
      await rejection(
        on('models/net.onnx', () => ({ padding: 'align', patchLocal: (h) => void (h[h.length - 2] = 0xff) })),
      ),
    ).toBe('E_ARCHIVE_EXTRA_FIELD');
  });
  it('ZIP64 records where 32 bits suffice → E_ARCHIVE_UNSUPPORTED / E_ARCHIVE_EXTRA_FIELD', async () => {
    expect(await rejection(craft(base, { forceZip64End: true }))).toBe('E_ARCHIVE_UNSUPPORTED');
    expect(await rejection(on('scripts/post.js', () => ({ forceZip64Sizes: true })))).toBe('E_ARCHIVE_EXTRA_FIELD');
  });
  it('a FIFO, a directory or a device given as the package → E_ARCHIVE_SPECIAL_FILE, without waiting for a writer', async () => {
    const fifo = join(await tempDir(), 'pipe.xpkg');
    execFileSync('mkfifo', [fifo]);
    for (const p of [fifo, await tempDir(), '/dev/null']) {
      await expect(PackageReader.open(p)).rejects.toMatchObject({ code: 'E_ARCHIVE_SPECIAL_FILE' });
    }
  });
  it('truncated, empty and non-ZIP files → E_ARCHIVE_*', async () => {
    expect(await rejection(Buffer.alloc(0))).toBe('E_ARCHIVE_TRUNCATED');
    expect(await rejection(Buffer.from('just some text that is not an archive at all'))).toBe('E_ARCHIVE_NO_END');
    expect(await rejection(pkg.subarray(0, pkg.length - 1))).toMatch(/^E_ARCHIVE_/);
  });
});

describe('entry kinds, flags, methods', () => {
  const kinds: [string, number][] = [
    ['symlink', 0o120777],
    ['directory', 0o040755],
    ['fifo', 0o010644],
    ['char device', 0o020644],
    ['socket', 0o140644],
  ];
  for (const [kind, mode] of kinds) {
    it(`${kind} (mode 0${mode.toString(8)}) → E_ARCHIVE_SPECIAL_FILE`, async () => {
      expect(
        await rejection(plus([entry('assets/special', '/etc/passwd', { externalAttr: (mode << 16) >>> 0 })])),
      ).toBe('E_ARCHIVE_SPECIAL_FILE');
    });
  }
  it('a regular file named like a directory → E_ARCHIVE_SPECIAL_FILE', async () => {
    expect(await rejection(plus([entry('assets/dir/', '')]))).toBe('E_ARCHIVE_SPECIAL_FILE');
  });
  it('encryption by flag bit 0, bit 6 or method 99 → E_ARCHIVE_ENCRYPTED', async () => {
    expect(await rejection(on(LBL, () => ({ flags: 0x0801 })))).toBe('E_ARCHIVE_ENCRYPTED');
    expect(await rejection(on(LBL, () => ({ flags: 0x0841 })))).toBe('E_ARCHIVE_ENCRYPTED');
    expect(await rejection(on(LBL, () => ({ method: 99 })))).toBe('E_ARCHIVE_ENCRYPTED');
  });
  it('data descriptor → E_ARCHIVE_DATA_DESCRIPTOR; names not flagged UTF-8 → E_ARCHIVE_UNSUPPORTED', async () => {
    expect(await rejection(on(LBL, () => ({ flags: 0x0808 })))).toBe('E_ARCHIVE_DATA_DESCRIPTOR');
    expect(await rejection(on(LBL, () => ({ flags: 0 })))).toBe('E_ARCHIVE_UNSUPPORTED');
  });
  for (const method of [1, 6, 9, 12, 14, 93, 95]) {
    it(`method ${method} → E_ARCHIVE_METHOD`, async () => {
      expect(await rejection(on(LBL, () => ({ method })))).toBe('E_ARCHIVE_METHOD');
    });
  }
});

describe('size lies and bombs', () => {
  it('stored entry with size ≠ compressed size → E_ARCHIVE_SIZE_MISMATCH', async () => {
    expect(await rejection(on(LBL, (e) => ({ size: e.data.length - 1 })))).toBe('E_ARCHIVE_SIZE_MISMATCH');
  });
  it('deflate inflating past its declared size → E_ARCHIVE_BOMB', async () => {
    expect(
      await rejection(on(LBL, (e) => ({ method: 8, raw: deflateFixed(Buffer.concat([e.data, Buffer.alloc(5000)])) }))),
    ).toBe('E_ARCHIVE_BOMB');
  });
  it('declared size larger than the stream, stream shorter than the data, corrupt stream → E_ARCHIVE_SIZE_MISMATCH', async () => {
    expect(await rejection(on(LBL, (e) => ({ method: 8, raw: deflateFixed(e.data.subarray(1)) })))).toBe(
      'E_ARCHIVE_SIZE_MISMATCH',
    );
    expect(
      await rejection(on(LBL, (e) => ({ method: 8, raw: Buffer.concat([deflateFixed(e.data), Buffer.from('tail')]) }))),
    ).toBe('E_ARCHIVE_SIZE_MISMATCH');
    expect(await rejection(on(LBL, (e) => ({ method: 8, raw: deflateFixed(e.data).subarray(0, 5) })))).toBe(
      'E_ARCHIVE_SIZE_MISMATCH',
    );
  });
  it('huge compression ratio or a deflated entry above the size limit → E_ARCHIVE_BOMB (before inflating)', async () => {
    expect(await rejection(plus([entry('assets/zeros', '', { data: Buffer.alloc(3 << 20), method: 8 })], true))).toBe(
      'E_ARCHIVE_BOMB',
    );
    const tiny = deflateFixed(Buffer.alloc(1000));
    expect(
      await rejection(
        plus([
          entry('assets/big', '', { data: Buffer.alloc(0), method: 8, raw: tiny, size: LIMITS.deflatedEntryBytes + 1 }),
        ]),
      ),
    ).toBe('E_ARCHIVE_BOMB');
  });
  it('a deflate stream padded with empty stored blocks → E_ARCHIVE_BOMB (before reading it)', async () => {
    // Valid deflate that inflates to the right bytes, but a small file's stream would have to be
    // buffered whole: the manifest, the signatures and any asset.
    const empty = Buffer.from([0x00, 0x00, 0x00, 0xff, 0xff]);
    const padded = (data: Buffer, blocks: number) =>
      Buffer.concat([...Array<Buffer>(blocks).fill(empty), deflateFixed(data)]);
    expect(inflateRawSync(padded(LABELS, 1000)).equals(LABELS)).toBe(true);
    expect(await rejection(on(LBL, (e) => ({ method: 8, raw: padded(e.data, 1000) })))).toBe('E_ARCHIVE_BOMB');
    expect(
      await rejection(craft([{ ...base[0], method: 8, raw: padded(base[0].data, 10_000) }, ...base.slice(1)])),
    ).toBe('E_ARCHIVE_BOMB');
    // A few empty blocks, as some encoders flush, are fine.
    expect(await outcome(on(LBL, (e) => ({ method: 8, raw: padded(e.data, 2) })))).toEqual(await outcome(pkg));
  });
  it('many deflated entries, each under the ratio-free size, together above the ratio → E_ARCHIVE_BOMB', async () => {
    const zeros = Buffer.alloc(LIMITS.ratioFreeBytes);
    const raw = deflateRawSync(zeros, { level: 9 });
    const many = (n: number) =>
      plus(
        Array.from({ length: n }, (_, i) => entry(`assets/z${i}`, '', { data: zeros, method: 8, raw })),
        true,
      );
    expect('ok' in (await outcome(many(1)))).toBe(true);
    expect(await rejection(many(3))).toBe('E_ARCHIVE_BOMB');
  });
  it('CRC-32 wrong in both headers, digests right → E_ARCHIVE_CRC', async () => {
    expect(await rejection(on(LBL, (e) => ({ crc32: crc32(e.data) ^ 0x10000 })))).toBe('E_ARCHIVE_CRC');
    expect(await rejection(on(LBL, (e) => ({ method: 8, crc32: crc32(e.data) ^ 0x10000 })))).toBe('E_ARCHIVE_CRC');
    expect(await rejection(craft([{ ...base[0], crc32: crc32(base[0].data) ^ 1 }, ...base.slice(1)]))).toBe(
      'E_ARCHIVE_CRC',
    );
  });
});

describe('entries against the manifest', () => {
  it('a file present but not listed → E_FILE_EXTRA; under xpkg/ → E_FILE_EXTRA', async () => {
    expect(await rejection(plus([entry('assets/unlisted.txt')]))).toBe('E_FILE_EXTRA');
    expect(await rejection(plus([entry('xpkg/keys.json', '{}')]))).toBe('E_FILE_EXTRA');
  });
  it('a listed file missing → E_FILE_MISSING', async () => {
    expect(await rejection(craft(base.filter((e) => e.name !== 'scripts/post.js')))).toBe('E_FILE_MISSING');
  });
  it('a payload byte changed (CRC recomputed) → E_DIGEST_MISMATCH, in the aligned model too', async () => {
    for (const name of [LBL, 'models/net.onnx']) {
      const bytes = on(name, (e) => ({
        data: Buffer.from(e.data.map((v, i) => (i === e.data.length - 1 ? v ^ 1 : v))),
      }));
      expect(await outcome(bytes)).toEqual({ error: 'E_DIGEST_MISMATCH', cls: 'FormatError' });
    }
  });
  it('manifest not canonical (keys unsorted, compact) → E_MANIFEST_NOT_CANONICAL', async () => {
    const m = manifestOf(base);
    const unsorted = Buffer.from(JSON.stringify(Object.fromEntries(Object.entries(m).reverse())));
    expect(await rejection(craft([{ ...base[0], data: unsorted }, ...base.slice(1)]))).toBe('E_MANIFEST_NOT_CANONICAL');
  });
  it('manifest with a duplicate key deep inside → E_MANIFEST_DUPLICATE_KEY', async () => {
    const text = base[0].data.toString().replace('"id":"cpu"', '"id":"cpu","id":"gpu"');
    expect(await rejection(craft([{ ...base[0], data: Buffer.from(text) }, ...base.slice(1)]))).toBe(
      'E_MANIFEST_DUPLICATE_KEY',
    );
  });
  it('manifest schema violations → E_MANIFEST_SCHEMA listing each', async () => {
    const m = manifestOf(base) as Record<string, unknown>;
    Object.assign(m, { version: 'one', task: 'Not A Task', unknownField: true });
    const o = await outcome(craft(withManifest(base, m)));
    expect(o).toEqual({ error: 'E_MANIFEST_SCHEMA', cls: 'FormatError' });
  });
  it('a signatures entry over its limit → E_SIG_TOO_LARGE (a SigningError)', async () => {
    expect(await outcome(craft([...base, entry(SIGNATURES_PATH, ' '.repeat(LIMITS.signaturesBytes + 1))]))).toEqual({
      error: 'E_SIG_TOO_LARGE',
      cls: 'SigningError',
    });
  });
  it('accepts a deflated manifest and deflated assets (other writers may compress)', async () => {
    const bytes = craft(base.map((e) => (e.name === 'models/net.onnx' ? e : { ...e, method: 8 })));
    expect(await outcome(bytes)).toEqual(await outcome(pkg));
  });
});

// --- unpack into a hostile destination ------------------------------------------------------------

/** Every path under `dir` with its kind and content (or link target): equal snapshots = untouched. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(dir, { recursive: true })).sort()) {
    const p = join(dir, name);
    const st = await lstat(p);
    out[name] = st.isSymbolicLink()
      ? `link → ${await readlink(p)}`
      : st.isDirectory()
        ? 'dir'
        : `file ${(await readFile(p)).toString('base64')}`;
  }
  return out;
}

describe('unpack safety', () => {
  let pkgPath: string;
  let outside: string;
  beforeAll(async () => {
    pkgPath = join(await tempDir(), 'demo.xpkg');
    await writeFile(pkgPath, pkg);
  });
  const fresh = async () => {
    const root = await tempDir('xpkg-arch-unpack-');
    outside = join(root, 'outside');
    await mkdir(outside);
    const dest = join(root, 'dest');
    await mkdir(dest);
    return dest;
  };
  const failure = async (dest: string, path = pkgPath) => {
    const before = await snapshot(dest);
    const err = await unpackPackage(path, dest).then(
      () => null,
      (e: unknown) => e,
    );
    expect(await snapshot(dest), 'destination changed by a failed unpack').toEqual(before);
    expect(await readdir(outside), 'something was written outside the destination').toEqual([]);
    return err as PackError | FormatError;
  };

  it('unpacks a package into an empty destination', async () => {
    const dest = await fresh();
    const r = await unpackPackage(pkgPath, dest);
    expect(r.files).toEqual(['assets/labels.txt', 'models/net.onnx', 'scripts/post.js']);
    expect((await readFile(join(dest, 'models/net.onnx'))).equals(MODEL)).toBe(true);
  });
  it('refuses a symlink on a directory segment (E_UNPACK_LINK) and writes nothing through it', async () => {
    const dest = await fresh();
    await symlink(outside, join(dest, 'scripts'));
    const err = await failure(dest);
    expect(err).toBeInstanceOf(PackError);
    expect(err.code).toBe('E_UNPACK_LINK');
  });
  it('refuses a symlink in place of a file, dangling or not (E_UNPACK_LINK)', async () => {
    for (const target of [join(outside, 'post.js'), join(outside, 'missing', 'x')]) {
      const dest = await fresh();
      await mkdir(join(dest, 'scripts'));
      if (!target.includes('missing')) await writeFile(target, 'victim');
      await symlink(target, join(dest, 'scripts', 'post.js'));
      const before = await readdir(outside);
      const err = await unpackPackage(pkgPath, dest).then(
        () => null,
        (e: unknown) => e as PackError,
      );
      expect(err?.code).toBe('E_UNPACK_LINK');
      expect(await readdir(outside)).toEqual(before);
      if (before.length) expect(await readFile(target, 'utf8')).toBe('victim');
    }
  });
  it('refuses to overwrite an existing file (E_UNPACK_EXISTS) and keeps it', async () => {
    const dest = await fresh();
    await mkdir(join(dest, 'scripts'));
    await writeFile(join(dest, 'scripts', 'post.js'), 'mine');
    expect((await failure(dest)).code).toBe('E_UNPACK_EXISTS');
    expect(await readFile(join(dest, 'scripts', 'post.js'), 'utf8')).toBe('mine');
  });
  it('a digest failure late in the unpack removes everything it wrote', async () => {
    const dest = await fresh();
    await writeFile(join(dest, 'keep.txt'), 'unrelated');
    const bad = join(await tempDir(), 'bad.xpkg');
    await writeFile(
      bad,
      on('scripts/post.js', (e) => ({ data: Buffer.from(e.data.toString().replace('x;', 'y;')) })),
    );
    const err = await failure(dest, bad);
    expect(err).toBeInstanceOf(FormatError);
    expect(err.code).toBe('E_DIGEST_MISMATCH');
  });
  it('a hostile package is refused before anything is written', async () => {
    const dest = await fresh();
    const bad = join(await tempDir(), 'evil.xpkg');
    await writeFile(bad, plus([entry('../outside/evil.txt')]));
    expect((await failure(dest, bad)).code).toBe('E_PATH_UNSAFE');
  });
});
