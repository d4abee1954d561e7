/**
 * The native surface itself: loading and build facts, argument validation in TypeScript
 * (E_NATIVE_ARGUMENT, before any backend runs), kernel errors with the caller's stack
 * (E_NATIVE_KERNEL), async and sync forms, and the portable fallback with its one-line warning.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import * as native from '../native/index.js';
import { NativeError } from '../spec/errors.js';
import { nativeExpected } from './native-helpers.js';

const img = { data: new Uint8Array(4 * 3 * 5), width: 4, height: 5, format: 'rgb' as const };

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(NativeError);
    return (e as NativeError).code;
  }
  return undefined;
}

function child(env: Record<string, string>, body: string): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', `import * as n from './native/index.ts';\n${body}`],
    {
      cwd: new URL('..', import.meta.url).pathname,
      env: { ...process.env, XPKG_NATIVE: '', ...env },
      encoding: 'utf8',
    },
  );
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

describe('native surface', () => {
  it.skipIf(!nativeExpected)('the addon is built, loads, and reports what it was built with', () => {
    const info = native.nativeInfo();
    expect(info.backend).toBe('native');
    expect(info.path).toMatch(/xpkg_native\.node$/);
    expect(['avx512', 'avx2', 'avx', 'sse4.2', 'sse2', 'neon', 'none']).toContain(info.simd);
    expect(info.hardwareThreads).toBeGreaterThanOrEqual(1);
    expect(info.compiler).toMatch(/gcc|clang|msvc/);
    const cuda = native.cudaInfo('/nonexistent/libxpkg_cuda.so');
    expect(cuda).toMatchObject({ loaded: false, devices: 0 });
  });

  it('rejects bad arguments in TypeScript with E_NATIVE_ARGUMENT (sync throws, async rejects)', async () => {
    const bad: [string, () => unknown][] = [
      [
        'format',
        () =>
          native.preprocessSync(
            { ...img, format: 'yuv' as never },
            { resize: { mode: 'stretch', width: 2, height: 2 } },
          ),
      ],
      [
        'short data',
        () =>
          native.preprocessSync(
            { ...img, data: new Uint8Array(10) },
            { resize: { mode: 'stretch', width: 2, height: 2 } },
          ),
      ],
      [
        'stride',
        () => native.preprocessSync({ ...img, stride: 5 }, { resize: { mode: 'stretch', width: 2, height: 2 } }),
      ],
      ['resize mode', () => native.preprocessSync(img, { resize: { mode: 'fill' } as never })],
      ['zero size', () => native.preprocessSync(img, { resize: { mode: 'letterbox', width: 0, height: 2 } })],
      ['std 0', () => native.preprocessSync(img, { resize: { mode: 'stretch', width: 2, height: 2 }, std: 0 })],
      [
        'out too small',
        () =>
          native.preprocessSync(img, { resize: { mode: 'stretch', width: 2, height: 2 }, out: new Float32Array(3) }),
      ],
      [
        'f16 out type',
        () =>
          native.preprocessSync(img, {
            resize: { mode: 'stretch', width: 2, height: 2 },
            dtype: 'f16',
            out: new Float32Array(12),
          }),
      ],
      ['threads', () => native.preprocessSync(img, { resize: { mode: 'stretch', width: 2, height: 2 }, threads: 0 })],
      ['quads length', () => native.cropBatchSync(img, [1, 2, 3], { height: 4 })],
      ['quads NaN', () => native.cropBatchSync(img, [0, 0, 1, 0, 1, 1, 0, NaN], { height: 4 })],
      ['iou range', () => native.nmsSync(new Float32Array(4), new Float32Array(1), { iouThreshold: 1.5 })],
      ['boxes short', () => native.nmsSync(new Float32Array(3), new Float32Array(1), { iouThreshold: 0.5 })],
      ['boxes type', () => native.nmsSync([0, 0, 1, 1] as never, new Float32Array(1), { iouThreshold: 0.5 })],
      [
        'classes short',
        () =>
          native.nmsSync(new Float32Array(8), new Float32Array(2), { iouThreshold: 0.5, classes: new Int32Array(1) }),
      ],
      ['decode dims', () => native.decodeDetectionsSync(new Float32Array(10), { dims: [1, 5] })],
      ['no classes', () => native.decodeDetectionsSync(new Float32Array(40), { dims: [1, 4, 10] })],
      ['argmax classes', () => native.segmentArgmaxSync(new Float32Array(10), { dims: [1, 0, 2, 5] })],
      ['top-k k', () => native.softmaxTopKSync(new Float32Array(10), { dims: [2, 5], k: 6 })],
      ['ctc blank', () => native.ctcGreedyDecodeSync(new Float32Array(10), { dims: [1, 2, 5], blank: -1 })],
      ['db size', () => native.dbPostprocessSync(new Float32Array(10), { width: 5, height: 3 })],
      ['backend', () => native.setNativeBackend('gpu' as never)],
    ];
    for (const [name, fn] of bad) expect([name, code(fn)]).toEqual([name, 'E_NATIVE_ARGUMENT']);
    await expect(
      native.preprocess({ ...img, width: 0 }, { resize: { mode: 'stretch', width: 2, height: 2 } }),
    ).rejects.toMatchObject({ code: 'E_NATIVE_ARGUMENT' });
    await expect(native.nms(new Float32Array(4), new Float32Array(1), { iouThreshold: -1 })).rejects.toMatchObject({
      code: 'E_NATIVE_ARGUMENT',
    });
  });

  it('a detector output with no anchors (an in-graph NMS that kept nothing) decodes to no boxes, natively and portably', async () => {
    try {
      for (const backend of ['native', 'portable'] as const) {
        if (backend === 'native' && !nativeExpected) continue;
        native.setNativeBackend(backend);
        for (const layout of ['anchors-first', 'attrs-first'] as const) {
          const dims = layout === 'anchors-first' ? [1, 0, 8] : [1, 8, 0];
          const r = await native.decodeDetections(new Float32Array(0), { dims, layout });
          expect([backend, layout, r.scores.length, r.boxes.length]).toEqual([backend, layout, 0, 0]);
        }
      }
    } finally {
      native.setNativeBackend('auto');
    }
  });

  it.skipIf(!nativeExpected)(
    'a kernel error carries E_NATIVE_KERNEL and the JS call-site stack, sync and async',
    async () => {
      const raw = {
        data: new Uint8Array(12),
        width: 2,
        height: 2,
        channels: 3,
        stride: 6,
        out: new Float32Array(12),
        outOffset: 0,
        nhwc: false,
        outChannels: 3,
        chanMap: new Int32Array([0, 1, 2]),
        norm: new Float64Array(9),
        planeWidth: 2,
        planeHeight: 2,
        roiX: 1,
        roiY: 0,
        roiWidth: 2,
        roiHeight: 2,
        interp: 0,
        threads: 1,
      };
      let err: NativeError | undefined;
      try {
        native.runRawSync('preprocess', raw);
      } catch (e) {
        err = e as NativeError;
      }
      expect(err).toBeInstanceOf(NativeError);
      expect(err!.code).toBe('E_NATIVE_KERNEL');
      expect(err!.message).toMatch(/resize region outside the output plane/);
      expect(err!.stack).toMatch(/native-binding\.test\.ts/);
      const rejected = await native.runRaw('preprocess', raw).catch((e: NativeError) => e);
      expect(rejected).toMatchObject({ code: 'E_NATIVE_KERNEL' });
      expect((rejected as NativeError).stack).toMatch(/native-binding\.test\.ts/);
      // A type the addon cannot take is also a kernel error, never a crash.
      expect(() => native.runRawSync('nms', { boxes: [1, 2] } as never)).toThrow(
        expect.objectContaining({ code: 'E_NATIVE_KERNEL' }),
      );
    },
  );

  it('async forms return Promises with the same results as the sync forms', async () => {
    const boxes = new Float32Array([0, 0, 10, 10, 1, 1, 11, 11, 50, 50, 60, 60]);
    const scores = new Float32Array([0.9, 0.8, 0.7]);
    const p = native.nms(boxes, scores, { iouThreshold: 0.5 });
    expect(p).toBeInstanceOf(Promise);
    expect(await p).toEqual(native.nmsSync(boxes, scores, { iouThreshold: 0.5 }));
    expect(Array.from((await p).keep)).toEqual([0, 2]);
    const big = { data: new Uint8Array(640 * 480 * 4).fill(200), width: 640, height: 480, format: 'rgba' as const };
    const a = await native.preprocess(big, { resize: { mode: 'letterbox', width: 320, height: 320 } });
    expect(a.data).toEqual(native.preprocessSync(big, { resize: { mode: 'letterbox', width: 320, height: 320 } }).data);
    const jobs = await Promise.all(
      [1, 2, 3].map(() => native.preprocess(big, { resize: { mode: 'stretch', width: 64, height: 64 } })),
    );
    expect(jobs[1].data).toEqual(jobs[0].data);
  });

  it('without the addon: portable kernels, one warning line on stderr', () => {
    const r = child(
      { XPKG_NATIVE_PATH: '/nonexistent/xpkg_native.node' },
      `
      const a = n.nmsSync(new Float32Array([0,0,1,1]), new Float32Array([1]), { iouThreshold: 0.5 });
      n.nmsSync(new Float32Array([0,0,1,1]), new Float32Array([1]), { iouThreshold: 0.5 });
      console.log(JSON.stringify({ keep: Array.from(a.keep), backend: n.nativeInfo().backend }));`,
    );
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ keep: [0], backend: 'portable' });
    expect(r.stderr.split('\n').filter((l) => l.startsWith('xpkg: native kernels not loaded'))).toHaveLength(1);
  });

  it('XPKG_NATIVE=native without the addon fails with E_NATIVE_UNAVAILABLE; XPKG_NATIVE=portable is silent', () => {
    const r = child(
      { XPKG_NATIVE_PATH: '/nonexistent/xpkg_native.node', XPKG_NATIVE: 'native' },
      `
      try { n.nmsSync(new Float32Array(4), new Float32Array(1), { iouThreshold: 0.5 }); } catch (e) { console.log(e.code); }`,
    );
    expect(r.stdout.trim()).toBe('E_NATIVE_UNAVAILABLE');
    const p = child({ XPKG_NATIVE: 'portable' }, `console.log(n.nativeInfo().backend);`);
    expect(p.stdout.trim()).toBe('portable');
    expect(p.stderr).not.toMatch(/xpkg: native kernels/);
  });
});
