/**
 * The frozen vectors in spec/vectors/: each committed file, read as it is, gives exactly the result
 * expected.json records. A second test checks that the generator still reproduces every file byte
 * for byte (so the vectors stay explainable), without ever writing into spec/vectors/.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../spec/errors.js';
import { type Expectation, evaluate, generateVectors } from '../tools/vectors/generate.js';

const DIR = join(import.meta.dirname, '..', 'spec', 'vectors');
const expected = JSON.parse(await readFile(join(DIR, 'expected.json'), 'utf8')) as Record<string, Expectation>;

describe('spec/vectors', () => {
  it('expected.json names exactly the committed .xpkg files, each with a description and a known code', async () => {
    const files = (await readdir(DIR)).filter((f) => f.endsWith('.xpkg')).sort();
    expect(Object.keys(expected).sort()).toEqual(files);
    for (const [file, want] of Object.entries(expected)) {
      expect(want.description.length, file).toBeGreaterThan(10);
      if ('ok' in want) expect(want.id, file).toMatch(/^[0-9a-f]{64}$/);
      else expect(ERROR_CODES, file).toContain(want.error);
    }
  });

  it('covers good packages and every attack class', () => {
    const codes = new Set(Object.values(expected).flatMap((w) => ('error' in w ? [w.error] : [])));
    for (const c of [
      'E_PATH_UNSAFE',
      'E_PATH_COLLISION',
      'E_PATH_DUPLICATE',
      'E_ARCHIVE_HEADER_MISMATCH',
      'E_ARCHIVE_SIZE_MISMATCH',
      'E_ARCHIVE_OVERLAP',
      'E_ARCHIVE_GAP',
      'E_ARCHIVE_BOMB',
      'E_ARCHIVE_PREFIX',
      'E_ARCHIVE_TRAILING',
      'E_ARCHIVE_COMMENT',
      'E_ARCHIVE_MULTIPLE_END',
      'E_ARCHIVE_SPECIAL_FILE',
      'E_ARCHIVE_ENCRYPTED',
      'E_ARCHIVE_DATA_DESCRIPTOR',
      'E_ARCHIVE_METHOD',
      'E_FILE_EXTRA',
      'E_FILE_MISSING',
      'E_DIGEST_MISMATCH',
      'E_MANIFEST_NOT_CANONICAL',
      'E_MANIFEST_DUPLICATE_KEY',
      'E_MANIFEST_SCHEMA',
      'E_ARCHIVE_ALIGNMENT',
      'E_ARCHIVE_ORDER',
      'E_ARCHIVE_UNSUPPORTED',
      'E_ARCHIVE_EXTRA_FIELD',
      'E_ARCHIVE_CRC',
    ]) {
      expect(codes, c).toContain(c);
    }
    expect(Object.values(expected).filter((w) => 'ok' in w).length).toBeGreaterThanOrEqual(4);
  });

  for (const [file, want] of Object.entries(expected)) {
    it(`${file}: ${'ok' in want ? 'accepted' : want.error}`, async () => {
      const got = await evaluate(join(DIR, file));
      expect(got).toEqual('ok' in want ? { ok: true, id: want.id } : { error: want.error });
    });
  }

  it('the generator reproduces every committed vector byte for byte', async () => {
    const out = await mkdtemp(join(tmpdir(), 'xpkg-vectors-'));
    try {
      const regenerated = await generateVectors(out);
      expect(regenerated).toEqual(expected);
      for (const file of Object.keys(expected)) {
        const [a, b] = await Promise.all([readFile(join(DIR, file)), readFile(join(out, file))]);
        expect(a.equals(b), `${file} differs from the generator's output`).toBe(true);
      }
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
