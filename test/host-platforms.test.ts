/**
 * Hosts CI is not, as host profiles and fakes: a Mac and a Linux board naming the same CPU
 * features differently, Windows (no feature source), an NVIDIA driver older than nvidia-smi's
 * compute_cap field, a Pi Zero's or a small container's memory in the explain head, and a
 * Rockchip RK3399Pro's device tree; and a profile recorded with `xpkg host --json` read back.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { detectHost } from '../runner/host.js';
import { normaliseFeatures } from '../runner/host-cpu.js';
import { nvidiaGpus } from '../runner/host-gpu.js';
import { rockchipNpuArch, rockchipSoc } from '../runner/host-npu.js';
import { type HostProfile, hostSummary, loadHostProfile } from '../runner/host-profile.js';
import { selectVariants } from '../runner/select.js';
import { validateManifestSource } from '../spec/manifest.js';
import type { Model, Variant } from '../spec/schema.js';
import { fakeNvidiaSmi, fakeRoot } from './helpers/fake-host.js';
import { tempDir } from './helpers/source.js';

const FIX = join(import.meta.dirname, '..', 'fixtures');
const hostFile = (name: string) => loadHostProfile(join(FIX, 'hosts', `${name}.json`));
const multi = validateManifestSource(JSON.parse(readFileSync(join(FIX, 'multi-variant', 'xpkg.json'), 'utf8')));

/** One model: a generic fp32 build, then the given ones (onnxruntime on the CPU). */
function pkg(...variants: { id: string; precision?: Variant['precision']; requires?: Variant['requires'] }[]) {
  const v = (x: (typeof variants)[number]): Variant =>
    ({ runtime: 'onnxruntime', precision: 'fp32', files: ['m.onnx'], ...x }) as Variant;
  return { models: [{ id: 'm', variants: [v({ id: 'generic' }), ...variants.map(v)] }] as unknown as Model[] };
}
const select = (m: { models: Model[] }, host: HostProfile) =>
  selectVariants(m, host, { backends: ['onnxruntime'] }).models[0];

describe('CPU feature names differ by OS; a manifest names them once', () => {
  it("Apple M2 (sysctl's dotprod, advsimd) runs variants written with Linux's asimddp, asimd", () => {
    const sel = select(
      pkg(
        { id: 'dot', precision: 'int8', requires: { arch: ['arm64'], cpuFeatures: ['asimddp'] } },
        { id: 'simd', requires: { cpuFeatures: ['asimd', 'atomics'] } },
      ),
      hostFile('apple-m2'),
    );
    expect(sel.chosen?.variant.id).toBe('dot');
    expect(sel.variants.filter((v) => v.status === 'rejected')).toEqual([]);
  });

  it("a Linux RK3588 (asimd, atomics) runs variants written with macOS's advsimd, lse", () => {
    const sel = select(pkg({ id: 'mac-names', requires: { cpuFeatures: ['advsimd', 'lse'] } }), hostFile('rk3588'));
    expect(sel.variants.find((v) => v.variant.id === 'mac-names')?.status).toBe('candidate');
  });

  it('x64 Linux (avx512_vnni) runs a variant written avx512vnni, and int8 goes first', () => {
    const sel = select(pkg({ id: 'vnni', precision: 'int8', requires: { cpuFeatures: ['avx512vnni'] } }), {
      ...hostFile('x64-avx512-vnni'),
    });
    expect(sel.chosen?.variant.id).toBe('vnni');
  });

  it("a hand-written profile listing only the kernel's asimddp still gets the int8 policy", () => {
    const m2 = hostFile('apple-m2');
    const host = loadHostProfile({
      ...m2,
      gpus: [],
      npus: [],
      cpu: { ...m2.cpu, features: ['asimd', 'asimddp', 'fp'] },
    });
    const sel = select(pkg({ id: 'int8', precision: 'int8' }), host);
    expect(sel.chosen?.variant.id).toBe('int8');
  });

  it('a flag named like an Object member gets no alias', () => {
    expect(normaliseFeatures(['constructor', 'toString', '__proto__'])).toEqual([
      '__proto__',
      'constructor',
      'tostring',
    ]);
  });

  it('a feature the CPU really lacks is still refused', () => {
    const sel = select(pkg({ id: 'sve', requires: { cpuFeatures: ['sve'] } }), hostFile('apple-m2'));
    const v = sel.variants.find((x) => x.variant.id === 'sve')!;
    expect(v.reasons).toMatchObject([{ code: 'cpu-features', detail: { missing: ['sve'] } }]);
    expect(v.reasons[0].detail).not.toHaveProperty('unknown');
  });
});

describe('Windows x64: no CPU feature source', () => {
  const avx2 = hostFile('x64-avx2');
  const windows = loadHostProfile({
    ...avx2,
    os: 'win32',
    cpu: { ...avx2.cpu, features: [] },
    notDetected: [{ what: 'cpu features', reason: 'no feature source implemented for win32' }],
  });

  it('an AVX2 build stays out, and the reason says the features are unknown, not lacking', () => {
    const sel = select(pkg({ id: 'avx2', requires: { cpuFeatures: ['avx2'] } }), windows);
    expect(sel.chosen?.variant.id).toBe('generic');
    const v = sel.variants.find((x) => x.variant.id === 'avx2')!;
    expect(v.reasons).toMatchObject([{ code: 'cpu-features', detail: { missing: ['avx2'], unknown: true } }]);
    expect(v.reasons[0].message).toContain('win32');
  });
});

describe('an NVIDIA driver older than compute_cap (470)', () => {
  let restore: (() => void) | undefined;
  afterEach(() => restore?.());
  const proc = () =>
    fakeRoot({
      version: 'NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.223.02  Sat Oct  7 15:39:11 UTC 2023\n',
      'gpus/0000:03:00.0/information': 'Model: \t\t NVIDIA GeForce RTX 3050\nBus Location: \t 0000:03:00.0\n',
    });

  it('asks again without compute_cap: memory is known, arch comes from the name, and why', async () => {
    restore = fakeNvidiaSmi({
      query: 'NVIDIA GeForce RTX 3050, 4096, 470.223.02, 00000000:03:00.0, [N/A]',
      unknownFields: ['compute_cap'],
      banner: '| NVIDIA-SMI 470.223.02   Driver Version: 470.223.02   CUDA Version: 11.4 |',
    });
    const notDetected: { what: string; reason: string }[] = [];
    const gpus = await nvidiaGpus(notDetected, { procDir: proc(), cacheDir: null });
    expect(gpus).toMatchObject([
      { name: 'NVIDIA GeForce RTX 3050', arch: 'sm_86', memoryMiB: 4096, driver: '470.223.02', cuda: '11.4' },
    ]);
    expect(notDetected.map((n) => n.what)).toEqual(['nvidia compute capability']);
    // the 4 GiB card is too small for the 6 GiB CUDA build, and explain says so
    const host = loadHostProfile({ ...hostFile('rtx4090'), gpus });
    const cuda = select({ models: multi.models as unknown as Model[] }, host).variants.find(
      (v) => v.variant.id === 'cuda-fp16',
    )!;
    expect(cuda.reasons.map((r) => r.code)).toContain('accelerator-memory');
  });

  it('a driver before MIG (418) is asked a third time, without mig.mode.current', async () => {
    restore = fakeNvidiaSmi({
      query: 'Tesla T4, 15109, 418.226.00, 00000000:03:00.0',
      unknownFields: ['compute_cap', 'mig.mode.current'],
    });
    const gpus = await nvidiaGpus([], { procDir: proc(), cacheDir: null });
    expect(gpus).toMatchObject([{ name: 'Tesla T4', arch: 'sm_75', memoryMiB: 15109, driver: '418.226.00' }]);
  });

  it('a size no GPU has (garbage from a tool) is unknown, and detection still finishes', async () => {
    restore = fakeNvidiaSmi({ query: 'NVIDIA H100, 9.0, 1e300, 580.95.05, 00000000:07:00.0, Disabled' });
    const host = await detectHost();
    const h100 = host.gpus.find((g) => g.name === 'NVIDIA H100');
    expect(h100).toMatchObject({ arch: 'sm_90' });
    expect(h100?.memoryMiB).toBeUndefined();
  });
});

describe('little memory in the explain head', () => {
  it('a Pi Zero (512 MiB) and a 1.5 GiB container are not "1 GiB" and "2 GiB"', () => {
    const pi = hostFile('arm64-rpi4');
    expect(hostSummary({ ...pi, memoryMiB: 512 })).toContain(', 512 MiB,');
    const box = hostFile('container-cgroup-limited');
    expect(hostSummary({ ...box, memoryMiB: 1536, limits: { ...box.limits!, memoryMiB: 1536 } })).toContain(
      ', 1.5 GiB (cgroup limit),',
    );
    expect(hostSummary(hostFile('rtx4090'))).toMatch(/, \d+ GiB,/);
  });
});

it('RK3399Pro: the device tree names an SoC with an NPU', () => {
  expect(rockchipSoc(['rockchip,rk3399pro-evb-v11', 'rockchip,rk3399pro'])).toBe('rk3399pro');
  expect(rockchipNpuArch('rk3399pro')).toBe('rk3399pro');
});

describe('a profile recorded with `xpkg host --json > host.json`', () => {
  const xpkg = (args: string[]) =>
    spawnSync(process.execPath, [resolve('bin/xpkg.js'), ...args], { encoding: 'utf8', timeout: 60_000 });

  it('is read back by --host (host and explain), as the profile it printed', () => {
    const recorded = xpkg(['host', '--host', join(FIX, 'hosts', 'rk3588.json'), '--json']);
    expect(recorded.status).toBe(0);
    const file = join(tempDir('xpkg-recorded-'), 'host.json');
    writeFileSync(file, recorded.stdout);
    const again = xpkg(['host', '--host', file, '--json']);
    expect(again.status).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual(JSON.parse(recorded.stdout));
    const explain = xpkg(['explain', 'fixtures/dist/multi-variant.xpkg', '--host', file, '--json']);
    expect(explain.status).toBe(0);
    expect(JSON.parse(explain.stdout).result.models[0].chosen).toBe('cpu-int8-dotprod');
  });

  it('an envelope holding anything else is still E_HOST_PROFILE', () => {
    for (const v of [{ result: 5 }, { result: { format: 'xpkg-host/1' } }, { error: { code: 'E_X' } }])
      expect(() => loadHostProfile(v)).toThrow(expect.objectContaining({ code: 'E_HOST_PROFILE' }));
    expect(() => loadHostProfile({ result: hostFile('rk3588'), extra: 1 })).toThrow(
      expect.objectContaining({ code: 'E_HOST_PROFILE' }),
    );
  });
});
