/**
 * Property tests (fast-check): canonical JSON and the strict parser, the manifest parser under
 * mutation, the archive reader under byte mutation and splicing, and the safe-path grammar.
 */
import { writeFile } from 'node:fs/promises';
import { join, posix, win32 } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { PackageReader } from '../pack/reader.js';
import { canonicalize, type Json, parseStrictJson } from '../spec/canonical.js';
import { FormatError, SigningError, XpkgError } from '../spec/errors.js';
import { parseManifest } from '../spec/manifest.js';
import { assertNoCollisions, assertSafePath, collisionKey, pathProblem } from '../spec/paths.js';
import { type CraftEntry, craftArchive, parseArchive } from '../tools/vectors/craft.js';
import { demoSource, packToBuffer, tempDir, writeSource } from './archive-helpers.js';

/** Runs `f`; returns 'ok' or the FormatError's code, and fails on any other exception. */
function formatOutcome(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (e instanceof FormatError) return e.code;
    throw e;
  }
}

// Strings with any UTF-16 code unit, lone surrogates included.
const anyUnits = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) });

/** Random character-level edits of a text: insert, delete, replace. */
const edits = fc.array(
  fc.tuple(
    fc.nat(),
    fc.constantFrom('insert', 'delete', 'replace'),
    fc.constantFrom(
      '"',
      '\\',
      '{',
      '}',
      '[',
      ']',
      ',',
      ':',
      ' ',
      '0',
      '-',
      'e',
      'u',
      'n',
      'x',
      '\u00e9',
      '\ud800',
      '\u0000',
      '1e999',
      '"a":1',
    ),
  ),
  { minLength: 1, maxLength: 6 },
);
function applyEdits(text: string, ops: [number, string, string][]): string {
  let t = text;
  for (const [at, op, s] of ops) {
    const i = t.length ? at % (t.length + 1) : 0;
    t =
      op === 'insert'
        ? t.slice(0, i) + s + t.slice(i)
        : op === 'delete'
          ? t.slice(0, i) + t.slice(i + 1)
          : t.slice(0, i) + s + t.slice(i + 1);
  }
  return t;
}

describe('canonical JSON and the strict parser', () => {
  it('canonicalize → parse → canonicalize is the identity, and JSON.parse agrees', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => {
        const c = canonicalize(v);
        expect(canonicalize(parseStrictJson(c))).toBe(c);
        expect(canonicalize(parseStrictJson(Buffer.from(c, 'utf8')))).toBe(c);
        expect(canonicalize(JSON.parse(c))).toBe(c);
      }),
      { numRuns: 400 },
    );
  });

  it('parses any JSON.stringify output (indented or not) to the same value as JSON.parse', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), fc.constantFrom(undefined, 1, '\t'), (v, indent) => {
        const text = JSON.stringify(v, null, indent);
        expect(canonicalize(parseStrictJson(text))).toBe(canonicalize(JSON.parse(text)));
      }),
      { numRuns: 300 },
    );
  });

  it('sorts keys by UTF-16 code units', () => {
    fc.assert(
      fc.property(
        fc.dictionary(
          anyUnits.filter((k) => !/[\ud800-\udfff]/.test(k)),
          fc.integer(),
        ),
        (o) => {
          // the keys in the order the text holds them (a parsed object would list integer-like keys first)
          const text = canonicalize(o);
          const keys: string[] = [];
          for (const m of text.matchAll(/"((?:[^"\\]|\\.)*)":-?\d+/g)) keys.push(JSON.parse(`"${m[1]}"`));
          expect(keys).toHaveLength(Object.keys(o).length);
          expect(keys).toEqual([...keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
          expect(parseStrictJson(text)).toEqual(o);
        },
      ),
    );
  });

  it('throws only FormatError on arbitrary strings and bytes, and never accepts what JSON.parse rejects', () => {
    const check = (input: string | Uint8Array) => {
      const code = formatOutcome(() => parseStrictJson(input));
      if (code !== 'ok') expect(['E_MANIFEST_JSON', 'E_MANIFEST_DUPLICATE_KEY']).toContain(code);
      if (code === 'ok' && typeof input === 'string') expect(() => JSON.parse(input)).not.toThrow();
    };
    fc.assert(fc.property(anyUnits, check), { numRuns: 500 });
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), check), { numRuns: 500 });
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), edits, (v, ops) => check(applyEdits(JSON.stringify(v), ops))),
      { numRuns: 1000 },
    );
  });

  it('agrees with JSON.parse on whatever it accepts', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), edits, (v, ops) => {
        const text = applyEdits(JSON.stringify(v), ops);
        let ours: Json;
        try {
          ours = parseStrictJson(text);
        } catch {
          return;
        }
        expect(canonicalize(ours)).toBe(canonicalize(JSON.parse(text)));
      }),
      { numRuns: 1000 },
    );
  });

  it('always rejects a duplicate key, however the key is escaped and wherever the object is', () => {
    const escapeSome = (k: string, mask: number) =>
      [...k]
        .map((ch, i) =>
          (mask >> i) & 1 && ch.length === 1
            ? `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`
            : JSON.stringify(ch).slice(1, -1),
        )
        .join('');
    fc.assert(
      fc.property(
        fc.string({ maxLength: 8 }),
        fc.nat(255),
        fc.jsonValue({ maxDepth: 2 }),
        fc.jsonValue({ maxDepth: 2 }),
        fc.dictionary(fc.string({ maxLength: 4 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }),
        fc.nat(3),
        (key, mask, a, b, others, nesting) => {
          const rest = Object.entries(others)
            .filter(([k]) => k !== key)
            .map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)},`)
            .join('');
          let text = `{${JSON.stringify(key)}:${JSON.stringify(a)},${rest}"${escapeSome(key, mask)}":${JSON.stringify(b)}}`;
          for (let n = 0; n < nesting; n++) text = n % 2 ? `[1,${text}]` : `{"wrap":${text}}`;
          expect(formatOutcome(() => parseStrictJson(text))).toBe('E_MANIFEST_DUPLICATE_KEY');
        },
      ),
      { numRuns: 500 },
    );
  });

  it('keeps a __proto__ key as data', () => {
    const v = parseStrictJson('{"__proto__":{"polluted":true}}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(canonicalize(v)).toBe('{"__proto__":{"polluted":true}}');
  });
});

let pkg: Buffer;
let entries: CraftEntry[];
let ts: { time: number; date: number };
beforeAll(async () => {
  pkg = await packToBuffer(
    await writeSource(
      { 'models/net.onnx': Buffer.alloc(0), 'assets/labels.txt': 'a\nb\n', 'scripts/post.js': 'x' },
      demoSource(),
    ),
    { sourceDateEpoch: '1' },
  );
  ({ entries, ts } = parseArchive(pkg));
});

/** JSON pointers (as key lists) of every node of a JSON value. */
function nodes(v: unknown, at: (string | number)[] = []): (string | number)[][] {
  const out = [at];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...nodes(x, [...at, i])));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(...nodes(x, [...at, k]));
  return out;
}

describe('manifest parser under mutation', () => {
  it('structural mutations (replace, delete, add) of a valid manifest throw only FormatError', () => {
    const base = JSON.parse(entries[0].data.toString());
    const all = nodes(base).filter((p) => p.length > 0);
    const op = fc.tuple(
      fc.nat(),
      fc.constantFrom('set', 'delete', 'add'),
      fc.jsonValue({ maxDepth: 2 }),
      fc.string({ maxLength: 6 }),
    );
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 4 }), (ops) => {
        const m = structuredClone(base);
        for (const [n, kind, value, key] of ops) {
          const path = all[n % all.length];
          let parent = m;
          for (const k of path.slice(0, -1)) parent = parent?.[k];
          if (parent === null || typeof parent !== 'object') continue;
          const last = path[path.length - 1];
          if (kind === 'set') parent[last] = value;
          else if (kind === 'delete') Array.isArray(parent) ? parent.splice(Number(last), 1) : delete parent[last];
          else if (!Array.isArray(parent)) parent[key] = value;
        }
        const code = formatOutcome(() => parseManifest(Buffer.from(canonicalize(m))));
        expect(code).toMatch(/^(ok|E_MANIFEST_|E_PATH_)/);
      }),
      { numRuns: 400 },
    );
  });

  it('byte-level edits of the canonical manifest throw only FormatError', () => {
    const text = entries[0].data.toString();
    fc.assert(
      fc.property(edits, (ops) => {
        expect(formatOutcome(() => parseManifest(Buffer.from(applyEdits(text, ops))))).toMatch(
          /^(ok|E_MANIFEST_|E_PATH_)/,
        );
      }),
      { numRuns: 400 },
    );
  });
});

describe('archive reader under mutation', () => {
  let dir: string;
  let n = 0;
  beforeAll(async () => {
    dir = await tempDir('xpkg-arch-prop-');
  });
  const readerOutcome = async (bytes: Buffer): Promise<string> => {
    const path = join(dir, `p${n++ % 8}.xpkg`);
    await writeFile(path, bytes);
    let r: PackageReader | undefined;
    try {
      r = await PackageReader.open(path);
      await r.verifyIntegrity();
      return 'ok';
    } catch (e) {
      if (e instanceof FormatError || e instanceof SigningError) return e.code;
      throw e;
    } finally {
      await r?.close();
    }
  };

  it('random byte changes and splices give only FormatError or SigningError', async () => {
    const mutation = fc.oneof(
      fc.tuple(fc.constant('set' as const), fc.nat(), fc.integer({ min: 0, max: 255 })),
      fc.tuple(fc.constant('delete' as const), fc.nat(), fc.integer({ min: 1, max: 64 })),
      fc.tuple(fc.constant('insert' as const), fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 32 })),
      fc.tuple(fc.constant('copy' as const), fc.nat(), fc.nat()),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 4 }), async (ms) => {
        let b = Buffer.from(pkg);
        for (const m of ms) {
          const at = m[1] % (b.length + 1);
          if (m[0] === 'set') (b = Buffer.from(b))[Math.min(at, b.length - 1)] = m[2];
          else if (m[0] === 'delete') b = Buffer.concat([b.subarray(0, at), b.subarray(at + m[2])]);
          else if (m[0] === 'insert') b = Buffer.concat([b.subarray(0, at), m[2], b.subarray(at)]);
          else
            b = Buffer.concat([b.subarray(0, at), b.subarray(m[2] % b.length, (m[2] % b.length) + 46), b.subarray(at)]);
        }
        const code = await readerOutcome(b);
        if (b.equals(pkg)) expect(code).toBe('ok');
      }),
      { numRuns: 300, timeout: 10_000 },
    );
  });

  it('random header fields, re-laid-out with consistent CRCs and offsets, give only FormatError or SigningError', async () => {
    const field = fc.record(
      {
        method: fc.constantFrom(0, 8, 12, 99),
        flags: fc.constantFrom(0x0800, 0x0808, 0x0801, 0x0000, 0x0802),
        externalAttr: fc.constantFrom(0o100644 << 16, (0o120777 << 16) >>> 0, 0o040755 << 16, 0),
        size: fc.nat(3000),
        compressedSize: fc.nat(3000),
        crc32: fc.nat(),
        padding: fc.integer({ min: 4, max: 300 }),
        forceZip64Sizes: fc.boolean(),
        gapBefore: fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a)),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.nat(3),
        field,
        fc.option(fc.jsonValue({ maxDepth: 1 })),
        async (which, patch, manifestValue) => {
          const es = entries.map((e, i) => (i === which ? { ...e, ...patch } : e));
          if (manifestValue !== null && which === 0)
            es[0] = { ...es[0], data: Buffer.from(canonicalize(manifestValue)) };
          const code = await readerOutcome(craftArchive(es, { ts }));
          // readerOutcome fails the run on any exception other than FormatError/SigningError.
          if (Object.keys(patch).length === 0 && (manifestValue === null || which !== 0)) expect(code).toBe('ok');
        },
      ),
      { numRuns: 300, timeout: 10_000 },
    );
  });
});

describe('safe-path grammar', () => {
  const piece = fc.constantFrom(
    'a',
    'B',
    '..',
    '.',
    '/',
    '//',
    '\\',
    'e\u0301',
    '\u00e9',
    'C:',
    ':',
    ' ',
    'CON',
    'nul.txt',
    '\u0000',
    '\u0085',
    '\ufeff',
    '\u202e',
    'ß',
    '\ufb01',
    '\ud800',
    '\udc00',
    '~',
    '%2e',
    '-',
    'x'.repeat(120),
  );
  const pathish = fc.oneof(
    anyUnits,
    fc.array(piece, { maxLength: 8 }).map((p) => p.join('')),
    fc.array(piece, { maxLength: 6 }).map((p) => p.join('/')),
  );

  it('never throws, and every accepted path is relative, NFC, free of . / .. / empty segments and backslashes', () => {
    fc.assert(
      fc.property(pathish, (p) => {
        const problem = pathProblem(p);
        expect(problem === null || typeof problem === 'string').toBe(true);
        expect(() => collisionKey(p)).not.toThrow();
        if (problem === null) {
          expect(p.startsWith('/')).toBe(false);
          expect(p.includes('\\')).toBe(false);
          expect(p.normalize('NFC')).toBe(p);
          expect(p.split('/').some((s) => s === '' || s === '.' || s === '..')).toBe(false);
          expect(/^[a-zA-Z]:/.test(p)).toBe(false);
          expect(Buffer.byteLength(p)).toBeLessThanOrEqual(512);
          // Extracting it can only land inside the destination, on POSIX and on Windows.
          expect(posix.resolve('/dest', p).startsWith('/dest/')).toBe(true);
          expect(win32.resolve('C:\\dest', p).startsWith('C:\\dest\\')).toBe(true);
        }
        let thrown: unknown;
        try {
          assertSafePath(p);
        } catch (e) {
          thrown = e;
        }
        expect(thrown === undefined).toBe(problem === null);
        if (thrown) expect(thrown).toMatchObject({ code: 'E_PATH_UNSAFE' });
        expect(thrown === undefined || thrown instanceof XpkgError).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it('collision checks throw only FormatError, and always on names with equal collision keys', () => {
    fc.assert(
      fc.property(fc.array(pathish, { maxLength: 6 }), (names) => {
        const code = formatOutcome(() => assertNoCollisions(names));
        const keys = names.map(collisionKey);
        if (new Set(keys).size < keys.length) expect(['E_PATH_DUPLICATE', 'E_PATH_COLLISION']).toContain(code);
        if (code === 'ok') expect(new Set(keys).size).toBe(keys.length);
      }),
      { numRuns: 2000 },
    );
  });
});
