/**
 * Issue 10, defect 9: a native build must not crash (SIGILL) on an older CPU. The default build
 * targets x86-64-v2 and picks the AVX2 / AVX-512 NMS paths at run time; XPKG_NATIVE_SIMD caps
 * what the CPU is taken to have (an injected older CPU). Checked: the dispatch follows the CPU
 * and the cap, every path gives the same kept boxes, and a build requiring features the CPU
 * lacks is refused before it is loaded, falling back to the portable kernels with the reason.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as native from '../native/index.js';
import { nativeExpected } from './native-helpers.js';

const root = new URL('..', import.meta.url).pathname;

function child(
  env: Record<string, string>,
  body: string,
): { out: any; stderr: string; status: number | null; signal: string | null } {
  const r = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `import * as n from './native/index.ts';\nimport { rng } from './fixtures/random.ts';\n${body}`,
    ],
    {
      cwd: root,
      env: { ...process.env, XPKG_NATIVE: '', XPKG_NATIVE_SIMD: '', ...env },
      encoding: 'utf8',
      timeout: 120_000,
    },
  );
  let out: any;
  try {
    out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '');
  } catch {
    out = r.stdout;
  }
  return { out, stderr: r.stderr, status: r.status, signal: r.signal };
}

// Clustered (suppress-forward) and spread (grid phase) sets, agnostic and class-aware, several thresholds.
const NMS_RUN = `
  const sets = [];
  for (const [seed, spread] of [[1, false], [2, true], [3, false]]) {
    const r = rng(seed), N = 1500, boxes = new Float32Array(N * 4), scores = new Float32Array(N), classes = new Int32Array(N);
    for (let i = 0; i < N; i++) {
      const x = spread ? r() * 1000 : 100 + Math.floor(r() * 8) * 60 + r() * 12, y = spread ? r() * 1000 : 100 + Math.floor(r() * 8) * 60 + r() * 12;
      boxes.set([x, y, x + 20 + r() * 40, y + 20 + r() * 40], 4 * i);
      scores[i] = Math.round(r() * 1000) / 1000;
      classes[i] = Math.floor(r() * 3);
    }
    for (const iouThreshold of [0, 0.5, 1]) for (const cls of [undefined, classes]) sets.push(Array.from(n.nmsSync(boxes, scores, { iouThreshold, classes: cls, maxOutput: 1200 }).keep));
  }
  console.log(JSON.stringify({ info: n.nativeInfo(), keeps: sets }));`;

function cpuFlags(): Set<string> {
  const line =
    readFileSync('/proc/cpuinfo', 'latin1')
      .split('\n')
      .find((l) => l.startsWith('flags')) ?? '';
  return new Set(
    line
      .slice(line.indexOf(':') + 1)
      .trim()
      .split(/\s+/),
  );
}

describe.skipIf(!nativeExpected || process.arch !== 'x64' || process.platform !== 'linux')(
  'native ISA: portable build, run-time dispatch, refusal before load',
  () => {
    it('the default build needs only x86-64-v2, and this CPU has it', () => {
      const info = native.nativeInfo();
      expect(info.backend).toBe('native');
      expect(native.missingIsa(info.path!, cpuFlags(), 'baseline')).toEqual([]);
    });

    it('the dispatch follows the CPU and the injected cap; every path keeps the same boxes', () => {
      const flags = cpuFlags();
      const best = flags.has('avx512f') ? 'avx512' : flags.has('avx2') ? 'avx2' : 'sse4.2';
      const runs = ['', 'avx2', 'baseline'].map((cap) => ({ cap, ...child({ XPKG_NATIVE_SIMD: cap }, NMS_RUN) }));
      const portable = child({ XPKG_NATIVE: 'portable' }, NMS_RUN);
      for (const r of [...runs, portable])
        expect({ status: r.status, signal: r.signal }).toEqual({ status: 0, signal: null });
      expect(runs.map((r) => [r.cap, r.out.info.backend, r.out.info.simd])).toEqual([
        ['', 'native', best],
        ['avx2', 'native', best === 'sse4.2' ? 'sse4.2' : 'avx2'],
        ['baseline', 'native', 'sse4.2'],
      ]);
      for (const r of runs) expect(r.out.keeps).toEqual(portable.out.keeps);
      expect(portable.out.keeps.flat().length).toBeGreaterThan(500);
    });

    it('a build needing a feature the CPU lacks is refused before loading: portable kernels, the reason in nativeInfo', () => {
      // A copy of the addon whose ISA marker says AVX2 (as a -march=haswell build's would), on a CPU
      // capped to x86-64-v2: loading it could fault, so it must not be loaded at all.
      const bytes = readFileSync(native.nativeInfo().path!);
      const at = bytes.indexOf('xpkg-native-isa:ssse3,');
      expect(at).toBeGreaterThan(0);
      bytes.write('avx2,', at + 16, 'latin1');
      const dir = mkdtempSync(join(tmpdir(), 'xpkg-isa-'));
      const path = join(dir, 'xpkg_native.node');
      writeFileSync(path, bytes);
      expect(native.missingIsa(path, cpuFlags(), 'baseline')).toEqual(['avx2']);
      const old = child({ XPKG_NATIVE_PATH: path, XPKG_NATIVE_SIMD: 'baseline' }, NMS_RUN);
      expect({ status: old.status, signal: old.signal }).toEqual({ status: 0, signal: null });
      expect(old.out.info).toMatchObject({ backend: 'portable', loadError: expect.stringMatching(/lacks \(avx2\)/) });
      expect(old.stderr).toMatch(/native kernels not loaded .*lacks \(avx2\).*using portable TypeScript kernels/);
      // The same file on a CPU that has AVX2 loads (the marker only names what the code may use).
      copyFileSync(path, join(dir, 'copy.node'));
      if (cpuFlags().has('avx2'))
        expect(child({ XPKG_NATIVE_PATH: join(dir, 'copy.node') }, NMS_RUN).out.info.backend).toBe('native');
    });
  },
);

describe('XPKG_NATIVE_THREADS', () => {
  it('sets the threads a kernel call uses by default; other values leave min(8, cores)', () => {
    const threads = (v: string) =>
      child({ XPKG_NATIVE_THREADS: v }, 'console.log(JSON.stringify(n.nativeInfo().threads));').out;
    const dflt = Math.max(1, Math.min(8, availableParallelism()));
    expect(threads('3')).toBe(3);
    for (const v of ['', 'abc', '0', '2.5', '300']) expect(threads(v)).toBe(dflt);
  });
});
