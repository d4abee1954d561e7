/**
 * `xpkg run` without `--json`: a tensor output shows its dtype, shape, first and last values and
 * min / max / mean (cli/render-outputs.ts), a few lines whatever its size.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { renderOutputs, summarizeTensor } from '../cli/render-outputs.js';
import type { Manifest } from '../spec/schema.js';
import { xpkgAsync } from './helpers/cli.js';
import { npyFile } from './helpers/npy.js';
import { tempDir } from './helpers/source.js';

vi.setConfig({ testTimeout: 120_000 });

const t = (type: string, dims: number[], data: ArrayBufferView & { length: number }) => ({ type, dims, data });

describe('summarizeTensor', () => {
  it('a small tensor in full, with its stats', () => {
    expect(summarizeTensor(t('float32', [2, 2], new Float32Array([1, 2.5, -3, 4])))).toBe(
      'float32 [2,2] [1, 2.5, -3, 4]  min -3  max 4  mean 1.125',
    );
  });
  it('a large one: its first and last values, bounded whatever its size', () => {
    const n = 1_000_000;
    const s = summarizeTensor(
      t(
        'float32',
        [1, n],
        Float32Array.from({ length: n }, (_, i) => i),
      ),
    );
    expect(s.length).toBeLessThan(200);
    expect(s).toContain('float32 [1,1000000] [0, 1, 2, 3, 4, 5, …, 999997, 999998, 999999]');
    expect(s).toContain('min 0  max 999999  mean 500000');
  });
  it('float16 as numbers, int64 as integers, bool as true/false, NaN counted apart, empty', () => {
    // 0x3c00 = 1, 0xc000 = -2, 0x7e00 = NaN
    expect(summarizeTensor(t('float16', [3], new Uint16Array([0x3c00, 0xc000, 0x7e00])))).toBe(
      'float16 [3] [1, -2, NaN]  min -2  max 1  mean -0.5  nan 1',
    );
    expect(summarizeTensor(t('int64', [2], new BigInt64Array([2n ** 62n, -1n])))).toContain(
      `[${2n ** 62n}, -1]  min -1  max ${2n ** 62n}`,
    );
    expect(summarizeTensor(t('bool', [2], new Uint8Array([1, 0])))).toBe(
      'bool [2] [true, false]  min false  max true  mean 0.5',
    );
    expect(summarizeTensor(t('float32', [0, 3], new Float32Array(0)))).toBe('float32 [0,3] []');
  });
  it('renderOutputs names each tensor output', () => {
    const manifest = { outputs: [{ name: 'y', type: 'tensor' }] } as unknown as Manifest;
    expect(renderOutputs(manifest, { y: t('int32', [1], new Int32Array([7])) })).toBe(
      'y: int32 [1] [7]  min 7  max 7  mean 7',
    );
  });
  it("renderOutputs lists one image's classes, and a batch's item by item (a list once crashed it)", () => {
    const manifest = { outputs: [{ name: 'top', type: 'classification' }] } as unknown as Manifest;
    const one = { labels: ['cat', 'dog'], indices: [3, 1], scores: [0.75, 0.125] };
    expect(renderOutputs(manifest, { top: one })).toBe('cat\t0.7500\ndog\t0.1250');
    const two = { labels: ['dog'], indices: [1], scores: [0.5] };
    expect(renderOutputs(manifest, { top: [one, two] })).toBe('0\tcat\t0.7500\n0\tdog\t0.1250\n1\tdog\t0.5000');
  });
});

describe('xpkg run without --json', () => {
  it('prints a 100,000-value tensor output as one short summary line', async () => {
    const f = join(tempDir(), 'x.npy');
    writeFileSync(
      f,
      npyFile(
        Float32Array.from({ length: 100_000 }, (_, i) => i % 10),
        [100_000],
      ),
    );
    const r = await xpkgAsync([
      'run',
      'fixtures/dist/multi-variant.xpkg',
      '--trust',
      'fixtures/keys/test.pub',
      '--variant',
      'cpu-fp32',
      '--state-dir',
      tempDir(),
      '-i',
      f,
    ]);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe('y: float32 [100000] [1, 2, 3, 4, 5, 6, …, 8, 9, 10]  min 1  max 10  mean 5.5');
  });
});
