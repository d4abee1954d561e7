/**
 * Malformed-input tests for the manifest parser (spec/manifest.ts + spec/canonical.ts): every bad
 * manifest gives its specific code, and schema/reference errors list every failing field at once.
 */
import { describe, expect, it } from 'vitest';
import { canonicalBytes, parseStrictJson } from '../spec/canonical.js';
import { type ErrorCode, FormatError } from '../spec/errors.js';
import { LIMITS } from '../spec/limits.js';
import { type FieldProblem, parseManifest, validateManifestSource } from '../spec/manifest.js';
import type { Manifest } from '../spec/schema.js';
import { fileRecord } from '../tools/vectors/craft.js';
import { demoSource } from './archive-helpers.js';

function valid(): Manifest & Record<string, unknown> {
  const { include: _i, ...src } = demoSource() as Record<string, unknown>;
  return {
    ...src,
    format: 'xpkg/1',
    blockSize: 4194304,
    files: [
      fileRecord('assets/labels.txt', Buffer.from('a\nb\n')),
      fileRecord('models/net.onnx', Buffer.from('onnx')),
      fileRecord('scripts/post.js', Buffer.from('x')),
    ],
  } as Manifest & Record<string, unknown>;
}

function failure(input: Uint8Array | unknown): FormatError {
  const bytes = input instanceof Uint8Array ? input : canonicalBytes(input);
  try {
    parseManifest(bytes);
  } catch (e) {
    if (e instanceof FormatError) return e;
    throw e;
  }
  throw new Error('manifest was accepted');
}
const problemsOf = (e: FormatError) => (e.detail as { problems: FieldProblem[] }).problems;
const pathsOf = (e: FormatError) => [...new Set(problemsOf(e).map((p) => p.path))].sort();

describe('the valid manifest', () => {
  it('parses, and its id is the SHA-256 of its bytes', () => {
    const bytes = canonicalBytes(valid());
    const p = parseManifest(bytes);
    expect(p.bytes.equals(bytes)).toBe(true);
    expect(p.id).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('bytes that are not a manifest', () => {
  const canon = canonicalBytes(valid()).toString();
  const cases: [string, Uint8Array, ErrorCode][] = [
    ['empty', Buffer.alloc(0), 'E_MANIFEST_JSON'],
    [
      'invalid UTF-8',
      Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]),
      'E_MANIFEST_JSON',
    ],
    [
      'overlong UTF-8 for "/"',
      Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')]),
      'E_MANIFEST_JSON',
    ],
    ['a byte-order mark', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(canon)]), 'E_MANIFEST_JSON'],
    ['trailing characters', Buffer.from(`${canon}x`), 'E_MANIFEST_JSON'],
    ['truncated', Buffer.from(canon.slice(0, -1)), 'E_MANIFEST_JSON'],
    ['a lone surrogate escape', Buffer.from('{"a":"\\ud800"}'), 'E_MANIFEST_JSON'],
    ['a raw control character in a string', Buffer.from('{"a":"\t"}'), 'E_MANIFEST_JSON'],
    ['single quotes', Buffer.from("{'a':1}"), 'E_MANIFEST_JSON'],
    ['a trailing comma', Buffer.from('{"a":1,}'), 'E_MANIFEST_JSON'],
    ['NaN', Buffer.from('{"a":NaN}'), 'E_MANIFEST_JSON'],
    ['a number out of range', Buffer.from('{"a":1e400}'), 'E_MANIFEST_JSON'],
    ['a leading zero', Buffer.from('{"a":01}'), 'E_MANIFEST_JSON'],
    ['nesting deeper than 64', Buffer.from(`${'['.repeat(65)}${']'.repeat(65)}`), 'E_MANIFEST_JSON'],
    ['nesting deeper than 64 in objects', Buffer.from(`${'{"a":'.repeat(65)}1${'}'.repeat(65)}`), 'E_MANIFEST_JSON'],
    ['a duplicate top-level key', Buffer.from(`{"name":"a",${canon.slice(1)}`), 'E_MANIFEST_DUPLICATE_KEY'],
    ['a duplicate key spelled with an escape', Buffer.from('{"ab":1,"a\\u0062":2}'), 'E_MANIFEST_DUPLICATE_KEY'],
    [
      'a duplicate key in a nested object',
      Buffer.from(canon.replace('"id":"cpu"', '"id":"cpu","id":"cpu"')),
      'E_MANIFEST_DUPLICATE_KEY',
    ],
    ['white space', Buffer.from(JSON.stringify(valid(), null, 2)), 'E_MANIFEST_NOT_CANONICAL'],
    [
      'unsorted keys',
      Buffer.from(JSON.stringify(Object.fromEntries(Object.entries(valid()).reverse()))),
      'E_MANIFEST_NOT_CANONICAL',
    ],
    [
      'an escaped slash',
      Buffer.from(canon.replace('assets/labels.txt', 'assets\\/labels.txt')),
      'E_MANIFEST_NOT_CANONICAL',
    ],
    [
      'a needless \\u escape',
      Buffer.from(canon.replace('"name":"attack-demo"', '"name":"\\u0061ttack-demo"')),
      'E_MANIFEST_NOT_CANONICAL',
    ],
    [
      'a non-canonical number',
      Buffer.from(canon.replace('"sequence":7', '"sequence":7.0')),
      'E_MANIFEST_NOT_CANONICAL',
    ],
    ['an exponent number', Buffer.from(canon.replace('"sequence":7', '"sequence":0.7e1')), 'E_MANIFEST_NOT_CANONICAL'],
    ['too large', Buffer.alloc(LIMITS.manifestBytes + 1, 0x20), 'E_MANIFEST_TOO_LARGE'],
  ];
  for (const [what, bytes, code] of cases) {
    it(`${what} → ${code}`, () => {
      expect(failure(bytes).code).toBe(code);
    });
  }
  it('accepts exactly 64 levels of nesting', () => {
    expect(() => parseStrictJson(`${'['.repeat(64)}${']'.repeat(64)}`)).not.toThrow();
    expect(() => parseStrictJson(`${'{"a":'.repeat(64)}1${'}'.repeat(64)}`)).not.toThrow();
  });
});

describe('schema violations', () => {
  it('reports every failing field at once', () => {
    const m = {
      ...valid(),
      name: 'Bad Name',
      version: '1.0',
      sequence: -1,
      license: '',
      task: 'OCR!',
      inputs: [],
      surprise: 1,
      blockSize: 1024,
    };
    m.files = [{ ...m.files[0], sha256: 'XYZ' }, m.files[1], { ...m.files[2], size: 1.5 }];
    const e = failure(m);
    expect(e.code).toBe('E_MANIFEST_SCHEMA');
    expect(pathsOf(e)).toEqual([
      '/',
      '/blockSize',
      '/files/0/sha256',
      '/files/2/size',
      '/inputs',
      '/license',
      '/name',
      '/sequence',
      '/task',
      '/version',
    ]);
    expect(problemsOf(e).find((p) => p.path === '/')!.message).toContain('surprise');
    expect(problemsOf(e)).toHaveLength(10);
  });

  it('reports nested fields with JSON pointers', () => {
    const m = valid();
    m.inputs = [
      { name: 'image', type: 'picture' as never },
      { name: '1bad', type: 'image' },
    ];
    m.models[0].variants[0] = { ...m.models[0].variants[0], precision: 'fp64' as never, files: [] };
    const e = failure(m);
    expect(e.code).toBe('E_MANIFEST_SCHEMA');
    expect(pathsOf(e)).toEqual([
      '/inputs/0/type',
      '/inputs/1/name',
      '/models/0/variants/0/files',
      '/models/0/variants/0/precision',
    ]);
  });

  const single: [string, (m: Record<string, unknown>) => void, string][] = [
    ['not an object', () => {}, '/'],
    ['missing name', (m) => delete m.name, '/'],
    ['wrong format', (m) => (m.format = 'zip'), '/format'],
    ['sequence not an integer', (m) => (m.sequence = '7'), '/sequence'],
    ['sequence beyond 2^53', (m) => (m.sequence = 2 ** 53), '/sequence'],
    ['expires not a date-time', (m) => (m.expires = 'tomorrow'), '/expires'],
    ['metadata value not a string', (m) => (m.metadata = { a: 1 }), '/metadata/a'],
    ['blocks not hex', (m) => ((m.files as { blocks: string[] }[])[0].blocks = ['00']), '/files/0/blocks/0'],
    // Results are plain objects keyed by output name: this one set their prototype and vanished.
    ['an output named __proto__', (m) => (m.outputs = [{ name: '__proto__', type: 'json' }]), '/outputs/0/name'],
    ['an input named __proto__', (m) => (m.inputs = [{ name: '__proto__', type: 'image' }]), '/inputs/0/name'],
  ];
  for (const [what, change, path] of single) {
    it(`${what} → E_MANIFEST_SCHEMA at ${path}`, () => {
      const m = what === 'not an object' ? [] : valid();
      change(m as Record<string, unknown>);
      const e = failure(m);
      expect(e.code).toBe('E_MANIFEST_SCHEMA');
      expect(pathsOf(e)).toEqual([path]);
    });
  }

  it('a future format version → E_MANIFEST_VERSION', () => {
    expect(failure({ ...valid(), format: 'xpkg/2' }).code).toBe('E_MANIFEST_VERSION');
  });
});

describe('cross-reference violations', () => {
  it('reports every inconsistency at once (E_MANIFEST_REFERENCE)', () => {
    const m = valid();
    m.models.push({
      id: 'net',
      variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['models/missing.onnx'] }],
    });
    m.outputs.push({ name: 'labels', type: 'json' });
    m.pipeline.steps.push(
      { op: 'infer', model: 'nope' },
      { op: 'x', hook: 'h' },
      { op: 'y', script: 'scripts/undeclared.js' },
    );
    m.files[1] = { ...m.files[1], blocks: [] };
    m.files[2] = { ...m.files[2], blocks: ['0'.repeat(64)] };
    const e = failure(m);
    expect(e.code).toBe('E_MANIFEST_REFERENCE');
    expect(pathsOf(e)).toEqual([
      '/files/1/blocks',
      '/files/2/blocks/0',
      '/models/1/id',
      '/models/1/variants/0/files/0',
      '/outputs/1/name',
      '/pipeline/steps/2/model',
      '/pipeline/steps/3/hook',
      '/pipeline/steps/4/script',
      '/variants/1/id',
    ]);
  });

  const cases: [string, (m: Manifest) => void][] = [
    ['files not sorted', (m) => m.files.reverse()],
    ['a repeated file path', (m) => m.files.splice(1, 0, m.files[0])],
    ['an empty file with a wrong digest', (m) => (m.files[1] = { ...m.files[1], size: 0, blocks: [] })],
    ['a file path that escapes', (m) => (m.files[0] = { ...m.files[0], path: '../labels.txt' })],
    ['a file under the reserved prefix', (m) => m.files.push(fileRecord('xpkg/evil', Buffer.from('x')))],
    ['an asset path that is unsafe', (m) => (m.assets![0].path = 'C:/labels.txt')],
    ['a variant file missing from files', (m) => (m.models[0].variants[0].files = ['models/other.onnx'])],
  ];
  for (const [what, change] of cases) {
    it(`${what} → E_MANIFEST_REFERENCE`, () => {
      const m = valid();
      change(m);
      expect(failure(m).code).toBe('E_MANIFEST_REFERENCE');
    });
  }

  it('file paths that collide after folding → E_PATH_COLLISION', () => {
    const m = valid();
    m.files = [fileRecord('assets/LABELS.txt', Buffer.from('x')), ...m.files];
    expect(failure(m).code).toBe('E_PATH_COLLISION');
  });
});

describe('manifest source (xpkg.json)', () => {
  const source = () => demoSource() as Record<string, unknown>;
  const code = (v: unknown) => {
    try {
      validateManifestSource(v);
      return 'ok';
    } catch (e) {
      if (e instanceof FormatError) return e.code;
      throw e;
    }
  };
  it('accepts the demo source and refuses digests, unknown fields and bad references', () => {
    expect(code(source())).toBe('ok');
    expect(code({ ...source(), files: [] })).toBe('E_MANIFEST_SCHEMA');
    expect(code({ ...source(), blockSize: 4194304 })).toBe('E_MANIFEST_SCHEMA');
    expect(code({ ...source(), include: ['../secret'] })).toBe('E_MANIFEST_REFERENCE');
    expect(code({ ...source(), include: ['xpkg/manifest.json'] })).toBe('E_MANIFEST_REFERENCE');
    expect(code({ ...source(), include: ['Assets/Labels.txt'] })).toBe('E_PATH_COLLISION');
  });
});
