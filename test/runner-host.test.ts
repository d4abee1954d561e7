import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { hostCommand } from '../cli/commands/host.js';
import { makeIo } from '../cli/framework.js';
import { identityModel } from '../fixtures/onnx-tiny.js';
import { detectHost, type HostProfile, hostSummary, loadHostProfile, renderHost, resolveHost } from '../runner/host.js';
import { normaliseFeatures, parseCpuinfo, parseSysctl, physicalCores } from '../runner/host-cpu.js';
import {
  jetsonFromCompatible,
  parseCompatible,
  parseCudaToolkitVersion,
  parseNvidiaInformation,
  parseNvidiaSmiBanner,
  parseNvidiaSmiCsv,
  parseNvidiaVersion,
  smFromComputeCap,
  smFromName,
  smNumber,
} from '../runner/host-gpu.js';
import { appleChip, intelNpuFromPciId, rockchipNpuArch, rockchipSoc } from '../runner/host-npu.js';
import { pickLibrary } from '../runner/host-runtimes.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const data = (name: string) => readFileSync(join(HERE, 'data', 'hosts', name), 'utf8');
const HOSTS = join(HERE, '..', 'fixtures', 'hosts');

describe('detectHost on this machine', () => {
  let host: HostProfile;
  it('detects without throwing and yields a valid profile', async () => {
    host = await detectHost();
    expect(host.os).toBe(process.platform);
    expect(host.arch).toBe(process.arch);
    expect(host.cpu.logicalCores).toBe(os.cpus().length);
    expect(host.cpu.physicalCores).toBeGreaterThanOrEqual(1);
    expect(host.cpu.physicalCores).toBeLessThanOrEqual(host.cpu.logicalCores);
    // a cgroup memory limit below the machine's is what this process may use (runner/host-limits.ts)
    expect(host.memoryMiB).toBe(host.limits?.memoryMiB ?? Math.floor(os.totalmem() / 1048576));
    // JSON round trip through the validating loader: detection output obeys the profile schema
    expect(loadHostProfile(JSON.stringify(host))).toEqual(host);
  });

  it.runIf(process.platform === 'linux')('finds every CPU feature /proc/cpuinfo lists', () => {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const listed = new Set(
      text
        .split('\n')
        .filter((l) => /^(flags|Features)\s*:/.test(l))
        .flatMap((l) => l.split(':')[1].trim().split(/\s+/)),
    );
    expect(listed.size).toBeGreaterThan(0);
    for (const f of listed) expect(host.cpu.features).toContain(f);
    if (listed.has('avx512_vnni')) expect(host.cpu.features).toContain('avx512_vnni');
    if (listed.has('asimddp')) expect(host.cpu.features).toContain('dotprod');
    expect(physicalCores()).toBe(host.limits?.threads ?? host.cpu.physicalCores);
  });

  it('reports onnxruntime with the providers that really load', async () => {
    const rt = host.runtimes.onnxruntime;
    expect(rt.available).toBe(true);
    expect(rt.version).toBe(ort.env.versions.node);
    expect(rt.providers).toContain('cpu');
    for (const p of rt.providers!) {
      const s = await ort.InferenceSession.create(identityModel(), { executionProviders: [p] });
      await s.release();
    }
    // this machine has no CUDA provider library: cuda must be reported unavailable, with why
    const cudaLib = join(
      HERE,
      '..',
      'node_modules',
      'onnxruntime-node',
      'bin',
      'napi-v6',
      process.platform,
      process.arch,
      'libonnxruntime_providers_cuda.so',
    );
    if (process.platform === 'linux' && !existsSync(cudaLib)) {
      expect(rt.providers).not.toContain('cuda');
      expect(rt.unavailable?.find((u) => u.name === 'cuda')?.reason).toMatch(/libonnxruntime_providers_cuda/);
    }
  });

  it('reports runtimes without backends as present or absent with a reason, never throws', () => {
    for (const name of ['tensorrt', 'rknn', 'openvino', 'coreml']) {
      const r = host.runtimes[name];
      expect(r).toBeDefined();
      if (!r.available) expect(r.reason).toBeTruthy();
    }
    for (const n of host.notDetected) expect(n.reason.length).toBeGreaterThan(0);
    if (!host.gpus.some((g) => g.vendor === 'nvidia'))
      expect(host.notDetected.map((n) => n.what)).toContain('nvidia gpu');
  });

  it('renders for people', () => {
    const text = renderHost(host);
    expect(text).toContain(`${host.os} ${host.arch}`);
    expect(text).toMatch(/onnxruntime\s+\d+\.\d+\.\d+ — providers: cpu/);
    expect(hostSummary(host)).toContain(host.cpu.model);
  });
});

describe('CPU parsers on recorded files', () => {
  it('arm64 board cpuinfo (RK3588: 4× A55 + 4× A76)', () => {
    const cpu = parseCpuinfo(data('cpuinfo-rk3588.txt'));
    expect(cpu.logicalCores).toBe(8);
    expect(cpu.physicalCores).toBe(8);
    expect(cpu.model).toBe('4× Cortex-A55 + 4× Cortex-A76');
    expect(cpu.features).toEqual(expect.arrayContaining(['asimd', 'neon', 'asimddp', 'dotprod', 'asimdhp', 'fp16']));
    expect(cpu.features).not.toContain('i8mm');
    expect(cpu.features).not.toContain('sve');
  });

  it('x86 cpuinfo with SMT counts physical cores by core id', () => {
    const cpu = parseCpuinfo(data('cpuinfo-x64-smt.txt'));
    expect(cpu).toMatchObject({ model: 'Intel(R) Core(TM) i3-8100T CPU @ 3.10GHz', logicalCores: 4, physicalCores: 2 });
    expect(cpu.features).toEqual(expect.arrayContaining(['avx2', 'fma', 'f16c', 'pni', 'sse3', 'sse4_2']));
    expect(cpu.features).not.toContain('avx512f');
  });

  it('macOS sysctl: Apple M2 and an Intel Mac', () => {
    const m2 = parseSysctl(data('sysctl-apple-m2.txt'));
    expect(m2).toMatchObject({ model: 'Apple M2', logicalCores: 8, physicalCores: 8, memoryBytes: 17179869184 });
    expect(m2.features).toEqual(expect.arrayContaining(['neon', 'dotprod', 'i8mm', 'bf16', 'fp16', 'fhm']));
    expect(m2.features).not.toContain('sme');
    const intel = parseSysctl(data('sysctl-intel-mac.txt'));
    expect(intel).toMatchObject({ logicalCores: 12, physicalCores: 6 });
    expect(intel.features).toEqual(expect.arrayContaining(['avx', 'avx2', 'fma', 'f16c', 'sse4_1', 'sse4_2']));
    expect(intel.features).not.toContain('avx512f');
    expect(appleChip(m2.model)).toBe('m2');
    expect(appleChip(intel.model)).toBeUndefined();
  });

  it('normalises kernel and vendor spellings to manifest names', () => {
    expect(normaliseFeatures(['AVX512VNNI', 'asimddp', 'pni', 'AVX1.0', 'SSE4.2'])).toEqual([
      'asimddp',
      'avx',
      'avx1_0',
      'avx512_vnni',
      'avx512vnni',
      'dotprod',
      'pni',
      'sse3',
      'sse4_2',
    ]);
  });
});

describe('GPU and NPU parsers on recorded files', () => {
  it('/proc/driver/nvidia files', () => {
    expect(parseNvidiaInformation(data('nvidia-information-rtx4090.txt'))).toEqual({
      name: 'NVIDIA GeForce RTX 4090',
      busId: '0000:01:00.0',
      uuid: 'GPU-6a3e5a8e-2f0e-6c1c-4b2a-3f1c9d9e7b11',
    });
    expect(parseNvidiaVersion(data('nvidia-version.txt'))).toBe('550.54.14');
    expect(parseNvidiaVersion(data('nvidia-version-open.txt'))).toBe('535.129.03');
  });

  it('nvidia-smi csv with header and units, without, and from an old driver', () => {
    expect(parseNvidiaSmiCsv(data('nvidia-smi-h100x2.csv'))).toEqual([
      {
        name: 'NVIDIA H100 80GB HBM3',
        computeCap: '9.0',
        memoryMiB: 81559,
        driver: '535.129.03',
        busId: '00000000:18:00.0',
      },
      {
        name: 'NVIDIA H100 80GB HBM3',
        computeCap: '9.0',
        memoryMiB: 81559,
        driver: '535.129.03',
        busId: '00000000:2A:00.0',
      },
    ]);
    const two = parseNvidiaSmiCsv(data('nvidia-smi-noheader-nounits.csv'));
    expect(two.map((g) => [g.name, g.computeCap && smFromComputeCap(g.computeCap), g.memoryMiB])).toEqual([
      ['NVIDIA GeForce RTX 4090', 'sm_89', 24564],
      ['NVIDIA GeForce GTX 1080 Ti', 'sm_61', 11264],
    ]);
    const old = parseNvidiaSmiCsv(data('nvidia-smi-old-driver.csv'));
    expect(old).toEqual([
      { name: 'NVIDIA GeForce GTX 980', memoryMiB: 4096, driver: '470.223.02', busId: '00000000:03:00.0' },
    ]);
    expect(parseNvidiaSmiBanner(data('nvidia-smi-banner.txt'))).toEqual({ driver: '550.54.14', cuda: '12.4' });
  });

  it('files recorded on a real H100 host', () => {
    expect(parseNvidiaInformation(data('nvidia-information-h100-recorded.txt'))).toMatchObject({
      name: 'NVIDIA H100 80GB HBM3',
      busId: '0000:00:06.0',
    });
    expect(parseNvidiaVersion(data('nvidia-version-h100-recorded.txt'))).toBe('580.159.04');
    const want = [
      {
        name: 'NVIDIA H100 80GB HBM3',
        computeCap: '9.0',
        memoryMiB: 81559,
        driver: '580.159.04',
        busId: '00000000:00:06.0',
      },
    ];
    expect(parseNvidiaSmiCsv(data('nvidia-smi-h100-recorded.csv'))).toEqual(want);
    expect(parseNvidiaSmiCsv(data('nvidia-smi-h100-recorded-noheader.csv'))).toEqual(want);
    expect(parseNvidiaSmiBanner(data('nvidia-smi-banner-h100-recorded.txt'))).toEqual({
      driver: '580.159.04',
      cuda: '13.0',
    });
    expect(smFromComputeCap(want[0].computeCap)).toBe('sm_90');
  });

  it('compute capability names', () => {
    expect(['5.3', '7.5', '8.0', '8.6', '8.7', '8.9', '9.0', '10.0', '12.0'].map(smFromComputeCap)).toEqual([
      'sm_53',
      'sm_75',
      'sm_80',
      'sm_86',
      'sm_87',
      'sm_89',
      'sm_90',
      'sm_100',
      'sm_120',
    ]);
    expect(smFromComputeCap('N/A')).toBeUndefined();
    expect(smNumber('sm_100')).toBeGreaterThan(smNumber('sm_90'));
    expect(smNumber('rk3588')).toBeNaN();
    expect(
      [
        'NVIDIA GeForce RTX 4090',
        'NVIDIA H100 80GB HBM3',
        'NVIDIA A100-SXM4-40GB',
        'Tesla T4',
        'NVIDIA GeForce RTX 3080',
        'NVIDIA L4',
      ].map(smFromName),
    ).toEqual(['sm_89', 'sm_90', 'sm_80', 'sm_75', 'sm_86', 'sm_89']);
    expect(smFromName('Some Future GPU')).toBeUndefined();
  });

  it('device tree: Jetson Orin, Orange Pi 5 (RK3588S), Raspberry Pi 4', () => {
    const orin = parseCompatible(data('compatible-jetson-orin.bin'));
    expect(orin).toEqual(['nvidia,p3737-0000+p3701-0005', 'nvidia,p3701-0005', 'nvidia,tegra234']);
    expect(jetsonFromCompatible(orin)).toEqual({ name: 'Jetson Orin', arch: 'sm_87' });
    expect(parseCudaToolkitVersion(data('cuda-version-jetson.json'))).toBe('12.6');
    expect(parseCudaToolkitVersion('CUDA Version 10.2.89\n')).toBe('10.2');
    const opi = parseCompatible(data('compatible-orangepi5.bin'));
    expect(rockchipSoc(opi)).toBe('rk3588s');
    expect(rockchipNpuArch('rk3588s')).toBe('rk3588');
    expect(rockchipNpuArch('rk3399')).toBeUndefined();
    const rpi = parseCompatible(data('compatible-rpi4.bin'));
    expect(rockchipSoc(rpi)).toBeUndefined();
    expect(jetsonFromCompatible(rpi)).toBeUndefined();
  });

  it('Intel NPU by PCI id, runtime library versions from file names', () => {
    expect(intelNpuFromPciId('0x7d1d\n')).toEqual({ arch: 'npu3720', name: 'Intel NPU (Meteor Lake)' });
    expect(intelNpuFromPciId('0x1234')).toBeUndefined();
    const trt = [/^libnvinfer\.so(?:\.([\d.]+))?$/];
    expect(
      pickLibrary(['libnvinfer.so', 'libnvinfer.so.10', 'libnvinfer.so.10.3.0', 'libnvinfer_plugin.so.10'], trt),
    ).toEqual({ file: 'libnvinfer.so.10.3.0', version: '10.3.0' });
    expect(pickLibrary(['libnvinfer_plugin.so.10'], trt)).toBeUndefined();
    expect(
      pickLibrary(['libopenvino.so.2440', 'libopenvino.so.2024.4.0'], [/^libopenvino\.so(?:\.([\d.]+))?$/])?.version,
    ).toBe('2024.4.0');
  });
});

describe('malformed input never crashes the parsers', () => {
  it('garbage and empty files', () => {
    expect(parseCpuinfo('')).toMatchObject({ logicalCores: 1, physicalCores: 1, features: [] });
    expect(parseCpuinfo('\0\0binary\xff: :::\n\n')).toMatchObject({ logicalCores: 1 });
    expect(parseSysctl('')).toMatchObject({ model: 'unknown', logicalCores: 1 });
    expect(parseNvidiaSmiCsv('')).toEqual([]);
    expect(
      parseNvidiaSmiCsv('NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'),
    ).toHaveLength(1);
    expect(parseNvidiaInformation('')).toBeNull();
    expect(parseNvidiaVersion('nothing here')).toBeUndefined();
    expect(parseCudaToolkitVersion('{not json')).toBeUndefined();
  });

  it('arbitrary strings (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 400 }), (s) => {
        const c = parseCpuinfo(s);
        expect(c.physicalCores).toBeLessThanOrEqual(c.logicalCores);
        for (const f of c.features) expect(f).toMatch(/^[a-z0-9_.]{1,64}$/);
        parseSysctl(s);
        parseNvidiaSmiCsv(s);
        parseNvidiaInformation(s);
        parseNvidiaSmiBanner(s);
        parseCompatible(s);
      }),
      { numRuns: 300 },
    );
  });
});

describe('injected host profiles', () => {
  it('every fixture profile validates', () => {
    const files = readdirSync(HOSTS).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(12);
    for (const f of files) expect(loadHostProfile(join(HOSTS, f)).format).toBe('xpkg-host/1');
  });

  it('fills the optional parts of a hand-written profile', () => {
    const p = loadHostProfile({
      format: 'xpkg-host/1',
      os: 'linux',
      arch: 'x64',
      cpu: { model: 'hand-written', logicalCores: 4, features: ['avx2'] },
      memoryMiB: 1024,
    });
    expect(p).toMatchObject({ gpus: [], npus: [], runtimes: {}, notDetected: [], cpu: { physicalCores: 4 } });
  });

  const bad: [string, unknown][] = [
    ['not JSON', '{"format": '],
    ['duplicate keys', '{"format":"xpkg-host/1","format":"xpkg-host/1"}'],
    ['an array', '[]'],
    [
      'wrong format id',
      {
        format: 'xpkg-host/2',
        os: 'linux',
        arch: 'x64',
        cpu: { model: 'm', logicalCores: 1, features: [] },
        memoryMiB: 1,
      },
    ],
    ['missing cpu', { format: 'xpkg-host/1', os: 'linux', arch: 'x64', memoryMiB: 1 }],
    [
      'unknown field',
      {
        format: 'xpkg-host/1',
        os: 'linux',
        arch: 'x64',
        cpu: { model: 'm', logicalCores: 1, features: [] },
        memoryMiB: 1,
        gpu: [],
      },
    ],
    [
      'bad os',
      {
        format: 'xpkg-host/1',
        os: 'plan9',
        arch: 'x64',
        cpu: { model: 'm', logicalCores: 1, features: [] },
        memoryMiB: 1,
      },
    ],
    [
      'upper-case feature',
      {
        format: 'xpkg-host/1',
        os: 'linux',
        arch: 'x64',
        cpu: { model: 'm', logicalCores: 1, features: ['AVX2'] },
        memoryMiB: 1,
      },
    ],
    [
      'device without kind',
      {
        format: 'xpkg-host/1',
        os: 'linux',
        arch: 'x64',
        cpu: { model: 'm', logicalCores: 1, features: [] },
        memoryMiB: 1,
        gpus: [{ vendor: 'nvidia', name: 'x' }],
      },
    ],
    ['missing file', '/nonexistent/host.json'],
  ];
  it.each(bad)('refuses %s with E_HOST_PROFILE', (_name, input) => {
    expect(() => loadHostProfile(input as string | object)).toThrow(
      expect.objectContaining({ code: 'E_HOST_PROFILE' }),
    );
  });

  it('lists every schema problem at once', () => {
    try {
      loadHostProfile({
        format: 'xpkg-host/1',
        os: 'plan9',
        arch: 'vax',
        cpu: { model: 'm', logicalCores: 0, features: [] },
        memoryMiB: -1,
      });
      expect.unreachable();
    } catch (e) {
      expect((e as { detail: { problems: string[] } }).detail.problems.length).toBeGreaterThanOrEqual(4);
    }
  });

  it('--host wins over XPKG_HOST, which wins over detection', async () => {
    const rpi = join(HOSTS, 'arm64-rpi4.json');
    const m2 = join(HOSTS, 'apple-m2.json');
    expect((await resolveHost({ env: { XPKG_HOST: rpi } })).cpu.model).toMatch(/Cortex-A72/);
    expect((await resolveHost({ host: m2, env: { XPKG_HOST: rpi } })).os).toBe('darwin');
    const inline = readFileSync(m2, 'utf8');
    expect((await resolveHost({ env: { XPKG_HOST: inline } })).cpu.model).toBe('Apple M2');
    await expect(resolveHost({ env: { XPKG_HOST: '/nonexistent.json' } })).rejects.toMatchObject({
      code: 'E_HOST_PROFILE',
    });
  });
});

describe('xpkg host', () => {
  it('prints the detected profile, or an injected one', async () => {
    const detected = await hostCommand(makeIo(true), { json: true });
    expect(detected.result.os).toBe(process.platform);
    expect(JSON.parse(JSON.stringify(detected.result))).toEqual(detected.result);
    const dir = mkdtempSync(join(os.tmpdir(), 'xpkg-host-'));
    const file = join(dir, 'h.json');
    writeFileSync(file, readFileSync(join(HOSTS, 'rk3588.json')));
    const injected = await hostCommand(makeIo(false), { host: file });
    expect(injected.human).toMatch(/^host profile from --host \(not detected\)/);
    expect(injected.human).toMatch(/rockchip Rockchip NPU \(RK3588\) \(rk3588, driver 0\.9\.8\)/);
    expect(injected.human).toMatch(/rknn\s+2\.3\.0/);
    await expect(hostCommand(makeIo(false), { host: join(dir, 'missing.json') })).rejects.toMatchObject({
      code: 'E_HOST_PROFILE',
    });
  });
});
