import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { generatedModels } from '../fixtures/multi-variant/build.js';
import { defaultRegistry } from '../runner/backends/index.js';
import { type HostProfile, loadHostProfile } from '../runner/host-profile.js';
import {
  applyAttempts,
  explainVariants,
  loadWithFallback,
  type ModelSelection,
  selectVariants,
} from '../runner/select.js';
import { compareVersions, parseVersion, satisfies } from '../runner/semver.js';
import type { ModelSession } from '../runner/types.js';
import { validateManifestSource } from '../spec/manifest.js';
import type { ManifestSource, Variant } from '../spec/schema.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const FIX = join(HERE, '..', 'fixtures');
const manifest: ManifestSource = validateManifestSource(
  JSON.parse(readFileSync(join(FIX, 'multi-variant', 'xpkg.json'), 'utf8')),
);
const host = (name: string): HostProfile => loadHostProfile(join(FIX, 'hosts', `${name}.json`));
/** Every runtime the package uses: how ranking will behave once those backends exist. */
const ALL_RUNTIMES = ['coreml', 'onnxruntime', 'openvino', 'rknn', 'tensorrt'];

const os = 'os';
const arch = 'arch';
const feat = 'cpu-features';
const acc = 'accelerator';
const accArch = 'accelerator-arch';
const accMem = 'accelerator-memory';
const nb = 'no-backend';
const miss = 'runtime-missing';
const ver = 'runtime-version';
const prov = 'provider';

interface Row {
  host: string;
  /** Chosen with this build's backends (onnxruntime only), then the ranked candidates after it. */
  ranked: string[];
  /** Chosen if xpkg had backends for every runtime in the package. */
  withAllBackends: string | null;
  /** Reason codes of every rejected variant, in the order the rules report them. */
  rejected: Record<string, string[]>;
}

const TABLE: Row[] = [
  {
    host: 'x64-avx2',
    ranked: ['cpu-fp32'],
    withAllBackends: 'cpu-fp32',
    rejected: {
      'cpu-int8-vnni': [feat],
      'cpu-int8-dotprod': [arch, feat],
      'cuda-fp16': [acc, prov],
      'tensorrt-fp16-sm89': [acc, nb, miss],
      'rknn-int8-rk3588': [arch, acc, nb, miss],
      'openvino-int8-npu': [acc, nb, miss],
      'coreml-fp16': [os, arch, acc, nb, miss],
    },
  },
  {
    host: 'x64-avx512-vnni',
    ranked: ['cpu-int8-vnni', 'cpu-fp32'],
    withAllBackends: 'cpu-int8-vnni',
    rejected: {
      'cpu-int8-dotprod': [arch, feat],
      'cuda-fp16': [acc, prov],
      'tensorrt-fp16-sm89': [acc, nb, miss],
      'rknn-int8-rk3588': [arch, acc, nb, miss],
      'openvino-int8-npu': [acc, nb, miss],
      'coreml-fp16': [os, arch, acc, nb, miss],
    },
  },
  {
    host: 'arm64-rpi4',
    ranked: ['cpu-fp32'],
    withAllBackends: 'cpu-fp32',
    rejected: {
      'cpu-int8-vnni': [arch, feat],
      'cpu-int8-dotprod': [feat],
      'cuda-fp16': [acc, prov],
      'tensorrt-fp16-sm89': [acc, nb, miss],
      'rknn-int8-rk3588': [acc, nb, miss],
      'openvino-int8-npu': [acc, nb, miss],
      'coreml-fp16': [os, acc, nb, miss],
    },
  },
  {
    host: 'apple-m2',
    ranked: ['cpu-int8-dotprod', 'cpu-fp32'],
    withAllBackends: 'coreml-fp16',
    rejected: {
      'cpu-int8-vnni': [arch, feat],
      'cuda-fp16': [acc, prov],
      'tensorrt-fp16-sm89': [os, acc, nb, miss],
      'rknn-int8-rk3588': [os, acc, nb, miss],
      'openvino-int8-npu': [acc, nb, miss],
      'coreml-fp16': [nb],
    },
  },
  {
    host: 'jetson-orin',
    ranked: ['cpu-int8-dotprod', 'cpu-fp32'],
    // TensorRT is installed, but the engine was built for sm_89 only; onnxruntime-node has no CUDA on arm64
    withAllBackends: 'cpu-int8-dotprod',
    rejected: {
      'cpu-int8-vnni': [arch, feat],
      'cuda-fp16': [prov],
      'tensorrt-fp16-sm89': [accArch, nb],
      'rknn-int8-rk3588': [acc, nb, miss],
      'openvino-int8-npu': [acc, nb, miss],
      'coreml-fp16': [os, acc, nb, miss],
    },
  },
  {
    host: 'rtx4090',
    ranked: ['cuda-fp16', 'cpu-int8-vnni', 'cpu-fp32'],
    // exact arch (sm_89 listed) beats minArch compatibility (sm_89 ≥ sm_80)
    withAllBackends: 'tensorrt-fp16-sm89',
    rejected: {
      'cpu-int8-dotprod': [arch, feat],
      'tensorrt-fp16-sm89': [nb],
      'rknn-int8-rk3588': [arch, acc, nb, miss],
      'openvino-int8-npu': [acc, nb, miss],
      'coreml-fp16': [os, arch, acc, nb, miss],
    },
  },
  {
    host: 'h100',
    ranked: ['cuda-fp16', 'cpu-int8-vnni', 'cpu-fp32'],
    withAllBackends: 'cuda-fp16',
    rejected: {
      'cpu-int8-dotprod': [arch, feat],
      'tensorrt-fp16-sm89': [accArch, nb, ver],
      'rknn-int8-rk3588': [arch, acc, nb, miss],
      'openvino-int8-npu': [acc, nb, miss],
      'coreml-fp16': [os, arch, acc, nb, miss],
    },
  },
  {
    host: 'gpu-no-cuda',
    // avx_vnni is not avx512_vnni: the int8 variant needs the latter
    ranked: ['cpu-fp32'],
    withAllBackends: 'cpu-fp32',
    rejected: {
      'cpu-int8-vnni': [feat],
      'cpu-int8-dotprod': [arch, feat],
      'cuda-fp16': [prov],
      'tensorrt-fp16-sm89': [accArch, nb, miss],
      'rknn-int8-rk3588': [arch, acc, nb, miss],
      'openvino-int8-npu': [acc, nb, miss],
      'coreml-fp16': [os, arch, acc, nb, miss],
    },
  },
  {
    host: 'rk3588',
    ranked: ['cpu-int8-dotprod', 'cpu-fp32'],
    withAllBackends: 'rknn-int8-rk3588',
    rejected: {
      'cpu-int8-vnni': [arch, feat],
      'cuda-fp16': [acc, prov],
      'tensorrt-fp16-sm89': [acc, nb, miss],
      'rknn-int8-rk3588': [nb],
      'openvino-int8-npu': [acc, nb, miss],
      'coreml-fp16': [os, acc, nb, miss],
    },
  },
  {
    host: 'intel-npu',
    ranked: ['cpu-fp32'],
    withAllBackends: 'openvino-int8-npu',
    rejected: {
      'cpu-int8-vnni': [feat],
      'cpu-int8-dotprod': [arch, feat],
      'cuda-fp16': [acc, prov],
      'tensorrt-fp16-sm89': [acc, nb, miss],
      'rknn-int8-rk3588': [arch, acc, nb, miss],
      'openvino-int8-npu': [nb],
      'coreml-fp16': [os, arch, acc, nb, miss],
    },
  },
  {
    host: 'graviton3',
    ranked: ['cpu-int8-dotprod', 'cpu-fp32'],
    withAllBackends: 'cpu-int8-dotprod',
    rejected: {
      'cpu-int8-vnni': [arch, feat],
      'cuda-fp16': [acc, prov],
      'tensorrt-fp16-sm89': [acc, nb, miss],
      'rknn-int8-rk3588': [acc, nb, miss],
      'openvino-int8-npu': [acc, nb, miss],
      'coreml-fp16': [os, acc, nb, miss],
    },
  },
  {
    host: 'x64-no-avx',
    ranked: ['cpu-fp32'],
    withAllBackends: 'cpu-fp32',
    rejected: {
      'cpu-int8-vnni': [feat],
      'cpu-int8-dotprod': [arch, feat],
      'cuda-fp16': [acc, prov],
      'tensorrt-fp16-sm89': [acc, nb, miss],
      'rknn-int8-rk3588': [arch, acc, nb, miss],
      'openvino-int8-npu': [acc, nb, miss],
      'coreml-fp16': [os, arch, acc, nb, miss],
    },
  },
  {
    host: 'rtx3050-laptop',
    // a 4 GiB GPU and onnxruntime 1.15.1: both reasons are reported, the CPU int8 variant runs
    ranked: ['cpu-int8-vnni', 'cpu-fp32'],
    withAllBackends: 'cpu-int8-vnni',
    rejected: {
      'cpu-int8-dotprod': [arch, feat],
      'cuda-fp16': [accMem, ver],
      'tensorrt-fp16-sm89': [os, accArch, nb, miss],
      'rknn-int8-rk3588': [os, arch, acc, nb, miss],
      'openvino-int8-npu': [acc, nb, miss],
      'coreml-fp16': [os, arch, acc, nb, miss],
    },
  },
  {
    host: 'riscv64-no-runtime',
    ranked: [],
    withAllBackends: null,
    rejected: {
      'cpu-fp32': [miss],
      'cpu-int8-vnni': [arch, feat, miss],
      'cpu-int8-dotprod': [arch, feat, miss],
      'cuda-fp16': [acc, miss],
      'tensorrt-fp16-sm89': [acc, nb, miss],
      'rknn-int8-rk3588': [arch, acc, nb, miss],
      'openvino-int8-npu': [acc, nb, miss],
      'coreml-fp16': [os, arch, acc, nb, miss],
    },
  },
];

describe('selection table: 14 host profiles × 8 variants', () => {
  it('this build registers a backend for onnxruntime only', () => {
    expect(defaultRegistry().runtimes()).toEqual(['onnxruntime']);
    expect(TABLE.length).toBeGreaterThanOrEqual(12);
    expect(manifest.models[0].variants.length).toBeGreaterThanOrEqual(6);
  });

  it.each(TABLE)('$host', (row) => {
    const sel = selectVariants(manifest, host(row.host)).models[0];
    expect(sel.chosen?.variant.id ?? null).toBe(row.ranked[0] ?? null);
    expect(sel.candidates.map((v) => v.variant.id)).toEqual(row.ranked);
    expect(sel.candidates.map((v) => v.rank)).toEqual(row.ranked.map((_, i) => i + 1));
    const rejected = Object.fromEntries(
      sel.variants.filter((v) => v.status === 'rejected').map((v) => [v.variant.id, v.reasons.map((r) => r.code)]),
    );
    expect(rejected).toEqual(row.rejected);
    // every variant is accounted for exactly once, and every verdict says why
    expect(sel.variants.map((v) => v.variant.id).sort()).toEqual(manifest.models[0].variants.map((v) => v.id).sort());
    for (const v of sel.variants) {
      if (v.status === 'rejected') for (const r of v.reasons) expect(r.message.length).toBeGreaterThan(10);
      else expect(v.notes.some((n) => n.startsWith('precision '))).toBe(true);
    }
    const all = selectVariants(manifest, host(row.host), { backends: ALL_RUNTIMES }).models[0];
    expect(all.chosen?.variant.id ?? null).toBe(row.withAllBackends);
  });
});

describe('ranking', () => {
  it('exact arch beats minArch compatibility, and both beat the CPU', () => {
    const sel = selectVariants(manifest, host('rtx4090'), { backends: ALL_RUNTIMES }).models[0];
    expect(sel.candidates.map((v) => [v.variant.id, v.device?.match ?? 'cpu'])).toEqual([
      ['tensorrt-fp16-sm89', 'exact'],
      ['cuda-fp16', 'compatible'],
      ['cpu-int8-vnni', 'cpu'],
      ['cpu-fp32', 'cpu'],
    ]);
    expect(sel.candidates[1].providers).toEqual(['cuda']);
  });

  it('the precision policy is configurable', () => {
    const h = host('x64-avx512-vnni');
    expect(selectVariants(manifest, h, { precision: 'fp32' }).models[0].chosen?.variant.id).toBe('cpu-fp32');
    expect(selectVariants(manifest, h, { precision: { cpuInt8: ['fp32', 'int8'] } }).models[0].chosen?.variant.id).toBe(
      'cpu-fp32',
    );
    // without int8 dot-product instructions the plain cpu list applies
    const noDot = { ...h, cpu: { ...h.cpu, features: h.cpu.features.filter((f) => f !== 'avx512_vnni') } };
    const alsoInt8: ManifestSource = {
      ...manifest,
      models: [{ id: 'm', variants: [mk('a', 'int8'), mk('b', 'fp32')] }],
    };
    expect(selectVariants(alsoInt8, noDot).models[0].chosen?.variant.id).toBe('b');
    expect(selectVariants(alsoInt8, h).models[0].chosen?.variant.id).toBe('a');
    // on a GPU, fp16 is preferred to fp32 by default
    const gpu: ManifestSource = {
      ...manifest,
      models: [
        {
          id: 'm',
          variants: [
            { ...mk('g32', 'fp32'), requires: { accelerator: { kind: 'gpu', vendor: 'nvidia' } } },
            { ...mk('g16', 'fp16'), requires: { accelerator: { kind: 'gpu', vendor: 'nvidia' } } },
          ],
        },
      ],
    };
    expect(selectVariants(gpu, host('h100')).models[0].candidates.map((v) => v.variant.id)).toEqual(['g16', 'g32']);
    expect(selectVariants(gpu, host('h100'), { precision: 'fp32' }).models[0].chosen?.variant.id).toBe('g32');
  });

  it('declared order breaks ties', () => {
    const m: ManifestSource = {
      ...manifest,
      models: [{ id: 'm', variants: [mk('first', 'fp32'), mk('second', 'fp32'), mk('third', 'fp32')] }],
    };
    expect(selectVariants(m, host('x64-avx2')).models[0].candidates.map((v) => v.variant.id)).toEqual([
      'first',
      'second',
      'third',
    ]);
  });

  it('rejects for too little memory and for a GPU too old for minArch', () => {
    const m: ManifestSource = {
      ...manifest,
      models: [
        { id: 'm', variants: [{ ...mk('big', 'fp32'), requires: { minMemoryMiB: 65536 } }, mk('small', 'fp32')] },
      ],
    };
    const sel = selectVariants(m, host('x64-no-avx')).models[0];
    expect(sel.chosen?.variant.id).toBe('small');
    expect(sel.variants.find((v) => v.variant.id === 'big')?.reasons.map((r) => r.code)).toEqual(['memory']);
    const old = host('gpu-no-cuda');
    old.gpus[0].arch = 'sm_75';
    old.runtimes.onnxruntime.providers = ['cpu', 'cuda'];
    const cuda = selectVariants(manifest, old).models[0].variants.find((v) => v.variant.id === 'cuda-fp16')!;
    expect(cuda.reasons.map((r) => r.code)).toEqual(['accelerator-arch']);
    expect(cuda.reasons[0].message).toContain('sm_75');
  });
});

function mk(id: string, precision: Variant['precision']): Variant {
  return { id, runtime: 'onnxruntime', precision, files: [`models/${id}.onnx`] };
}

describe('--variant forcing', () => {
  it('forces a runnable variant: it is the only one tried', () => {
    const sel = selectVariants(manifest, host('rtx4090'), { variant: 'cpu-fp32' }).models[0];
    expect(sel.forced).toBe('cpu-fp32');
    expect(sel.chosen?.variant.id).toBe('cpu-fp32');
    expect(sel.candidates.map((v) => v.variant.id)).toEqual(['cpu-fp32']);
    expect(sel.variants.find((v) => v.variant.id === 'cuda-fp16')?.notes).toContain(
      'not tried: --variant forces cpu-fp32',
    );
  });

  it('fails clearly for an unknown id', () => {
    expect(() => selectVariants(manifest, host('x64-avx2'), { variant: 'gpu-int4' })).toThrow(
      expect.objectContaining({
        code: 'E_RUN_VARIANT_UNKNOWN',
        detail: expect.objectContaining({ known: expect.arrayContaining(['cpu-fp32']) }),
      }),
    );
  });

  it('fails with the reasons when the host cannot run it', () => {
    try {
      selectVariants(manifest, host('x64-avx2'), { variant: 'cuda-fp16' });
      expect.unreachable();
    } catch (e) {
      const err = e as { code: string; detail: { reasons: { code: string }[] } };
      expect(err.code).toBe('E_RUN_VARIANT_UNSUPPORTED');
      expect(err.detail.reasons.map((r) => r.code)).toEqual(['accelerator', 'provider']);
    }
    expect(() => selectVariants(manifest, host('rtx4090'), { variant: 'tensorrt-fp16-sm89' })).toThrow(
      expect.objectContaining({ code: 'E_RUN_VARIANT_UNSUPPORTED' }),
    );
    expect(() => selectVariants(manifest, host('rtx4090'), { variant: ['cpu-fp32', 'cuda-fp16'] })).toThrow(
      expect.objectContaining({ code: 'E_RUN_VARIANT_UNSUPPORTED' }),
    );
  });
});

describe('explain', () => {
  it('text table lists every variant with its status and every reason', () => {
    const { human, result } = explainVariants(manifest, host('h100'));
    expect(human).toMatch(/^host: linux x64, Intel\(R\) Xeon\(R\) Platinum 8480\+/);
    expect(human).toContain('model add-one: runs cuda-fp16');
    expect(human).toMatch(
      /chosen #1\s+cuda-fp16\s+onnxruntime\s+fp16\s+accelerator: nvidia gpu NVIDIA H100 80GB HBM3 \(sm_90 ≥ minArch sm_80\)/,
    );
    expect(human).toMatch(/accelerator-arch: needs nvidia gpu arch sm_89; NVIDIA H100 80GB HBM3 is sm_90/);
    expect(human).toMatch(/runtime-version: needs tensorrt >=10\.0\.0 <11; host has 8\.6\.1/);
    for (const v of manifest.models[0].variants) expect(human).toContain(v.id);
    expect(result.models[0].chosen).toBe('cuda-fp16');
    expect(result.models[0].variants.map((v) => v.status)).toEqual([
      'chosen',
      'candidate',
      'candidate',
      'rejected',
      'rejected',
      'rejected',
      'rejected',
      'rejected',
    ]);
    expect(JSON.parse(JSON.stringify(result))).toEqual(result);
  });

  it('says when nothing can run', () => {
    const { human, result } = explainVariants(manifest, host('riscv64-no-runtime'));
    expect(human).toContain('model add-one: NO VARIANT CAN RUN HERE');
    expect(result.models[0].chosen).toBeNull();
  });
});

describe('loadWithFallback with real onnxruntime loads', () => {
  const files = generatedModels();
  let backend: Awaited<ReturnType<ReturnType<typeof defaultRegistry>['resolve']>>['backend'];
  beforeAll(async () => {
    backend = (await defaultRegistry().resolve('onnxruntime')).backend;
  });
  const loadFrom = (bytes: Map<string, Buffer>) => (v: { variant: Variant }) =>
    backend.load(v.variant, bytes, { threads: 1 });

  it('a corrupt best candidate falls back to the next, recording why', async () => {
    const sel: ModelSelection = selectVariants(manifest, host('x64-avx512-vnni')).models[0];
    expect(sel.candidates.map((v) => v.variant.id)).toEqual(['cpu-int8-vnni', 'cpu-fp32']);
    const corrupt = new Map(files);
    corrupt.set('models/add-one-int8.onnx', Buffer.from('this is not a protobuf model at all'));
    const loaded = await loadWithFallback(sel, loadFrom(corrupt));
    await using session = loaded.value as ModelSession & AsyncDisposable;
    expect(loaded.verdict.variant.id).toBe('cpu-fp32');
    expect(loaded.attempts).toEqual([
      {
        variant: 'cpu-int8-vnni',
        ok: false,
        code: 'E_RUN_LOAD',
        reason: expect.stringMatching(/onnxruntime could not load variant cpu-int8-vnni/),
      },
      { variant: 'cpu-fp32', ok: true },
    ]);
    const after = loaded.selection!;
    expect(after.chosen?.variant.id).toBe('cpu-fp32');
    expect(after.variants.find((v) => v.variant.id === 'cpu-int8-vnni')?.reasons.map((r) => r.code)).toEqual([
      'load-failed',
    ]);
    const out = await session.run({ X: { type: 'float32', dims: [3], data: new Float32Array([1, 2, 3]) } });
    expect(Array.from(out.Y.data as Float32Array)).toEqual([2, 3, 4]);
  });

  it('the best candidate loads when its bytes are good', async () => {
    const sel = selectVariants(manifest, host('x64-avx512-vnni')).models[0];
    const loaded = await loadWithFallback(sel, loadFrom(files));
    expect(loaded.verdict.variant.id).toBe('cpu-int8-vnni');
    expect(loaded.attempts).toEqual([{ variant: 'cpu-int8-vnni', ok: true }]);
    await loaded.value.release();
  });

  it('E_RUN_NO_VARIANT with every reason when nothing loads', async () => {
    const sel = selectVariants(manifest, host('x64-avx512-vnni')).models[0];
    const broken = new Map([...files].map(([k]) => [k, Buffer.from([0x08, 0xff, 0xff])]));
    const err = await loadWithFallback(sel, loadFrom(broken)).catch((e) => e);
    expect(err.code).toBe('E_RUN_NO_VARIANT');
    expect(err.detail.attempts.map((a: { variant: string; code: string }) => [a.variant, a.code])).toEqual([
      ['cpu-int8-vnni', 'E_RUN_LOAD'],
      ['cpu-fp32', 'E_RUN_LOAD'],
    ]);
    expect(err.detail.rejected.map((r: { variant: string }) => r.variant)).toContain('cuda-fp16');
    expect(applyAttempts(sel, err.detail.attempts).chosen).toBeNull();
  });

  it('E_RUN_NO_VARIANT without trying anything when nothing is runnable', async () => {
    const sel = selectVariants(manifest, host('riscv64-no-runtime')).models[0];
    let calls = 0;
    const err = await loadWithFallback(sel, async () => ++calls).catch((e) => e);
    expect(err.code).toBe('E_RUN_NO_VARIANT');
    expect(calls).toBe(0);
    expect(err.detail.rejected).toHaveLength(8);
  });
});

describe('semver ranges (runtimeVersion)', () => {
  const cases: [string, string, boolean][] = [
    ['1.30.0', '>=1.16.0 <2', true],
    ['1.15.1', '>=1.16.0 <2', false],
    ['2.0.0', '>=1.16.0 <2', false],
    ['10.3.0', '>=10.0.0 <11', true],
    ['8.6.1', '>=10.0.0 <11', false],
    ['2024.4.0', '>=2024.0.0', true],
    ['1.2.3', '^1.2.0', true],
    ['1.9.0', '^1.2.0', true],
    ['2.0.0', '^1.2.0', false],
    ['0.2.5', '^0.2.3', true],
    ['0.3.0', '^0.2.3', false],
    ['0.0.4', '^0.0.3', false],
    ['1.2.9', '~1.2.3', true],
    ['1.3.0', '~1.2.3', false],
    ['1.5.0', '1.x', true],
    ['2.0.0', '1.x', false],
    ['1.2.7', '1.2.*', true],
    ['3.1.4', '*', true],
    ['1.5.0', '1.2 - 1.6', true],
    ['1.7.0', '1.2 - 1.6', false],
    ['1.0.0', '<1.0.0 || >=2', false],
    ['2.1.0', '<1.0.0 || >=2', true],
    ['1.16.0-rc.1', '>=1.0.0', false],
    ['1.16.0-rc.2', '>=1.16.0-rc.1', true],
    ['10.3', '>=10.3.0', true],
    ['2024.4.0.1', '=2024.4.0', true],
    ['1.30.0', '>1.29', true],
    ['1.29.5', '>1.29', false],
    ['1.29.5', '<=1.29', true],
  ];
  it.each(cases)('%s in %s → %s', (v, range, expected) => {
    expect(satisfies(v, range)).toBe(expected);
  });

  it('a malformed range is a reason, not a crash', () => {
    const m: ManifestSource = {
      ...manifest,
      models: [
        { id: 'm', variants: [{ ...mk('x', 'fp32'), requires: { runtimeVersion: '>=banana' } }, mk('y', 'fp32')] },
      ],
    };
    const sel = selectVariants(m, host('x64-avx2')).models[0];
    expect(sel.variants.find((v) => v.variant.id === 'x')?.reasons.map((r) => r.code)).toEqual(['runtime-version']);
    expect(satisfies('not a version', '*')).toBe(false);
  });

  it('ordering is consistent with >= and < (property)', () => {
    const v = fc.tuple(fc.nat(30), fc.nat(30), fc.nat(30)).map(([a, b, c]) => `${a}.${b}.${c}`);
    fc.assert(
      fc.property(v, v, (a, b) => {
        const d = compareVersions(parseVersion(a)!, parseVersion(b)!);
        expect(satisfies(a, `>=${b}`)).toBe(d >= 0);
        expect(satisfies(a, `<${b}`)).toBe(d < 0);
        expect(satisfies(a, `=${b}`)).toBe(d === 0);
        expect(satisfies(a, `^${b}`) ? satisfies(a, `>=${b}`) : true).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});
