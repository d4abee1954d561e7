/**
 * Host detection and selection on machines CI is not: ppc64le, s390x and old Arm kernels'
 * /proc/cpuinfo, CPUs whose processors list different flags, containers with cgroup v1/v2 CPU
 * quotas and memory limits or an affinity mask, WSL2's GPU, and NVIDIA GPUs in MIG mode. Each
 * machine is a fake root (test/helpers/fake-host.ts) or a fake nvidia-smi on PATH.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CUDA_PROVIDER } from '../runner/gpu-install.js';
import { limitsText } from '../runner/host.js';
import { CUDA_RUNTIME_SONAMES, CUDNN_SONAMES, checkCuda, checkWebgpu, probeAccelEnv } from '../runner/host-accel.js';
import { detectCpu, parseCpuinfo, threadsFor } from '../runner/host-cpu.js';
import { nvidiaGpus, parseNvidiaSmiList } from '../runner/host-gpu.js';
import { countCpuList, parseCpuMax, parseMemoryLimit, readLimits } from '../runner/host-limits.js';
import { hostSummary, loadHostProfile } from '../runner/host-profile.js';
import { selectVariants } from '../runner/select.js';
import { validateManifestSource } from '../spec/manifest.js';
import type { Model } from '../spec/schema.js';
import { fakeNvidiaSmi, fakeRoot, x86Cpuinfo } from './helpers/fake-host.js';
import { tempDir } from './helpers/source.js';

const FIX = join(import.meta.dirname, '..', 'fixtures');
const manifest = validateManifestSource(JSON.parse(readFileSync(join(FIX, 'multi-variant', 'xpkg.json'), 'utf8')));
const models = manifest.models as unknown as Model[];
const hostFile = (name: string) => loadHostProfile(join(FIX, 'hosts', `${name}.json`));

describe('/proc/cpuinfo of other architectures', () => {
  it('ppc64le (POWER9: blocks of processor and cpu only) counts every processor', () => {
    const text = `${[0, 1, 2, 3].map((i) => `processor\t: ${i}\ncpu\t\t: POWER9, altivec supported\nclock\t\t: 2300.000000MHz\nrevision\t: 2.2 (pvr 004e 1202)\n`).join('\n')}\ntimebase\t: 512000000\nplatform\t: PowerNV\nmodel\t\t: 9006-22P\nmachine\t\t: PowerNV 9006-22P\n`;
    expect(parseCpuinfo(text)).toMatchObject({ model: 'POWER9, altivec supported', logicalCores: 4, physicalCores: 4 });
  });

  it('s390x (one features line, "processor N:" lines) counts processors and keeps the features', () => {
    const text =
      'vendor_id       : IBM/S390\n# processors    : 4\nbogomips per cpu: 3033.00\nmax thread id   : 0\nfeatures\t: esan3 zarch stfle msa ldisp eimm dfp edat etf3eh highgprs te vx vxd vxe gs sie\n' +
      [0, 1, 2, 3].map((i) => `processor ${i}: version = FF,  identification = 0133E8,  machine = 3906`).join('\n') +
      '\n\ncpu number      : 0\ncpu MHz dynamic : 5200\n';
    const cpu = parseCpuinfo(text);
    expect(cpu.logicalCores).toBe(4);
    expect(cpu.features).toEqual(expect.arrayContaining(['vx', 'vxe', 'zarch']));
    expect(cpu.model).toBe('IBM/S390');
  });

  it('aarch64 on a 3.x kernel (every processor line in one block) is not one CPU', () => {
    const text =
      'Processor\t: AArch64 Processor rev 4 (aarch64)\nprocessor\t: 0\nprocessor\t: 1\nprocessor\t: 2\nprocessor\t: 3\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd03\nCPU revision\t: 4\n\nHardware\t: Qualcomm Technologies, Inc MSM8916\n';
    const cpu = parseCpuinfo(text);
    expect(cpu.logicalCores).toBe(4);
    expect(cpu.features).toEqual(expect.arrayContaining(['asimd', 'neon']));
  });

  it('armv7 on an old kernel (Features in a block of its own) keeps neon', () => {
    const text =
      'Processor\t: ARMv7 Processor rev 5 (v7l)\nprocessor\t: 0\nBogoMIPS\t: 38.40\n\nprocessor\t: 1\nBogoMIPS\t: 38.40\n\nFeatures\t: swp half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt\nCPU implementer\t: 0x41\nCPU architecture: 7\nCPU part\t: 0xc07\n\nHardware\t: BCM2709\n';
    const cpu = parseCpuinfo(text);
    expect(cpu).toMatchObject({ logicalCores: 2 });
    expect(cpu.features).toContain('neon');
  });

  it('a feature only some processors list is not listed, and its build is not chosen', () => {
    const all = 'fpu sse sse2 pni ssse3 sse4_1 sse4_2 avx avx2 fma f16c';
    const avx512 = `${all} avx512f avx512bw avx512_vnni`;
    const block = (i: number, flags: string) =>
      `processor\t: ${i}\nmodel name\t: Intel(R) Core(TM) i9-12900K\ncore id\t\t: ${i}\nflags\t\t: ${flags}\n`;
    const cpu = parseCpuinfo([block(0, avx512), block(1, avx512), block(2, all), block(3, all)].join('\n'));
    expect(cpu.logicalCores).toBe(4);
    expect(cpu.features).toContain('avx2');
    expect(cpu.features).not.toContain('avx512_vnni');
    const host = { ...hostFile('x64-avx2'), cpu };
    const sel = selectVariants({ models }, host, { backends: ['onnxruntime'] });
    expect(sel.models[0].chosen?.variant.id).toBe('cpu-fp32');
    const vnni = sel.models[0].variants.find((v) => v.variant.id === 'cpu-int8-vnni')!;
    expect(vnni.reasons.map((r) => r.code)).toContain('cpu-features');
  });
});

describe('cgroup and affinity limits', () => {
  const cpuinfo = x86Cpuinfo(16, 'fpu sse sse2 avx avx2 fma');
  const v2 = (files: Record<string, string>, path = '/kubepods/pod1/ctr') =>
    fakeRoot({
      'proc/cpuinfo': cpuinfo,
      'proc/self/status': 'Name:\tnode\nCpus_allowed_list:\t0-15\n',
      'proc/self/cgroup': `0::${path}\n`,
      'proc/self/mountinfo': '35 24 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n',
      ...files,
    });

  it('parses quota, memory and CPU list files', () => {
    expect(parseCpuMax('max 100000')).toBeUndefined();
    expect(parseCpuMax('150000 100000\n')).toBe(1.5);
    expect(parseCpuMax('garbage')).toBeUndefined();
    expect(parseMemoryLimit('max\n')).toBeUndefined();
    expect(parseMemoryLimit('9223372036854771712\n')).toBeUndefined();
    expect(parseMemoryLimit('2147483648\n')).toBe(2147483648);
    expect(countCpuList('0-3,8-11\n')).toBe(8);
    expect(countCpuList('5')).toBe(1);
    expect(countCpuList('3-1')).toBeUndefined();
  });

  it('v2: the lowest cpu.max and memory.max along a nested path bound threads and memory', async () => {
    const root = v2({
      'sys/fs/cgroup/kubepods/cpu.max': '150000 100000\n',
      'sys/fs/cgroup/kubepods/pod1/ctr/cpu.max': 'max 100000\n',
      'sys/fs/cgroup/kubepods/pod1/memory.max': '536870912\n',
      'sys/fs/cgroup/kubepods/pod1/ctr/memory.max': 'max\n',
    });
    const { cpu, memoryMiB, limits } = await detectCpu({ root });
    expect(cpu).toMatchObject({ logicalCores: 16, physicalCores: 8 });
    expect(limits).toEqual({ cpuQuota: 1.5, memoryMiB: 512, threads: 2 });
    expect(memoryMiB).toBe(Math.min(512, Math.floor(os.totalmem() / 1048576)));
    // the profile with its limits is a valid one, and says so
    const profile = loadHostProfile({ ...hostFile('x64-avx2'), cpu, memoryMiB, limits });
    expect(hostSummary(profile)).toContain('1.5 of 16 CPUs');
    expect(limitsText(limits!)).toContain('2 threads by default');
  });

  it('v2 without limits ("max") reports none', async () => {
    const root = v2({ 'sys/fs/cgroup/kubepods/pod1/ctr/cpu.max': 'max 100000\n', 'sys/fs/cgroup/memory.max': 'max\n' });
    const r = await detectCpu({ root });
    expect(r.limits).toBeUndefined();
    expect(threadsFor(r.cpu, readLimits(root))).toBe(8);
  });

  it('v1: cfs quota -1 is no limit, 50000/100000 is half a CPU; "no limit" memory is ignored', async () => {
    const v1 = (quota: string) =>
      fakeRoot({
        'proc/cpuinfo': cpuinfo,
        'proc/self/cgroup': '4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n',
        'proc/self/mountinfo':
          '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n',
        'sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us': `${quota}\n`,
        'sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000\n',
        'sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes': '9223372036854771712\n',
      });
    expect((await detectCpu({ root: v1('-1') })).limits).toBeUndefined();
    expect((await detectCpu({ root: v1('50000') })).limits).toEqual({ cpuQuota: 0.5, threads: 1 });
  });

  it("a container's cgroup path outside its mount is read at the mount point", () => {
    // /proc/self/cgroup names the host's path; the container mounts only its own cgroup at /sys/fs/cgroup/memory
    const root = fakeRoot({
      'proc/self/cgroup': '4:memory:/process_api/b0f1\n',
      'proc/self/mountinfo': '35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n',
      'sys/fs/cgroup/memory/memory.limit_in_bytes': '1073741824\n',
    });
    expect(readLimits(root).memoryBytes).toBe(1073741824);
  });

  it('an affinity mask (taskset -c 0-3,8-11) bounds the threads', async () => {
    const root = v2({ 'proc/self/status': 'Cpus_allowed_list:\t0-1,8\n' });
    expect((await detectCpu({ root })).limits).toEqual({ cpusAllowed: 3, threads: 3 });
  });

  it('no /proc or /sys at all: detection finishes and says why', async () => {
    const r = await detectCpu({ root: tempDir('xpkg-empty-root-') });
    expect(r.cpu.logicalCores).toBeGreaterThanOrEqual(1);
    expect(r.notDetected.map((n) => n.what)).toContain('cpu features');
    expect(r.limits).toBeUndefined();
  });

  it('selection rejects a variant that needs more memory than the cgroup allows', () => {
    const big = models.map((m) => ({
      ...m,
      variants: m.variants.map((v) =>
        v.id === 'cpu-fp32' ? { ...v, requires: { ...v.requires, minMemoryMiB: 4096 } } : v,
      ),
    }));
    const sel = selectVariants({ models: big }, hostFile('container-cgroup-limited'), { backends: ['onnxruntime'] });
    expect(sel.models[0].chosen).toBeNull();
    const v = sel.models[0].variants.find((x) => x.variant.id === 'cpu-fp32')!;
    expect(v.reasons[0]).toMatchObject({ code: 'memory', detail: { need: 4096, have: 2048, limit: 'cgroup' } });
  });
});

describe('WSL2: CUDA through /dev/dxg', () => {
  function machine(dxg: boolean) {
    const root = fakeRoot(dxg ? { 'dev/dxg': '' } : { 'dev/null': '' });
    const libs = fakeRoot(
      Object.fromEntries([...CUDA_RUNTIME_SONAMES, ...CUDNN_SONAMES, 'libcuda.so.1'].map((n) => [n, ''])),
    );
    const binding = fakeRoot(Object.fromEntries(CUDA_PROVIDER.files.map((f) => [f.name, ''])));
    return probeAccelEnv({
      root,
      libraryDirs: [libs],
      ldCache: null,
      binding: { dir: binding, version: CUDA_PROVIDER.ortVersion },
      platform: 'linux',
      arch: 'x64',
      env: {},
    });
  }

  it('no /proc/driver/nvidia is no reason under WSL2; the CUDA provider is usable', async () => {
    const env = await machine(true);
    expect(env.nvidiaDriver).toBeNull();
    expect(checkCuda(env)).toMatchObject({ usable: true, reasons: [] });
    expect(checkWebgpu(env).reasons.map((r) => r.code)).not.toContain('no-gpu-device');
  });

  it('without /dev/dxg it stays no-driver', async () => {
    expect(checkCuda(await machine(false)).reasons.map((r) => r.code)).toEqual(['no-driver']);
  });

  it('WSL2 without libcuda on the loader path says no-libcuda', async () => {
    const env = await machine(true);
    env.libraries.delete('libcuda.so.1');
    expect(checkCuda(env).reasons.map((r) => r.code)).toEqual(['no-libcuda']);
  });
});

describe('NVIDIA GPUs in MIG mode', () => {
  let restore: (() => void) | undefined;
  afterEach(() => restore?.());
  const proc = () =>
    fakeRoot({
      version: 'NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.95.05  Tue Sep 23 09:55:41 UTC 2025\n',
      'gpus/0000:07:00.0/information': 'Model: \t\t NVIDIA A100-SXM4-40GB\nBus Location: \t 0000:07:00.0\n',
    });
  const QUERY = 'NVIDIA A100-SXM4-40GB, 8.0, 40960, 580.95.05, 00000000:07:00.0, Enabled';
  const LIST =
    'GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5ba0d6-1111-2222-3333-444455556666)\n  MIG 3g.20gb     Device  0: (UUID: MIG-aaaaaaaa-0000-5555-8888-000000000001)\n  MIG 1g.5gb      Device  1: (UUID: MIG-aaaaaaaa-0000-5555-8888-000000000002)';

  it('parses nvidia-smi -L', () => {
    expect(parseNvidiaSmiList(LIST)).toEqual([
      { gpu: 0, profile: '3g.20gb', memoryMiB: 19073, uuid: 'MIG-aaaaaaaa-0000-5555-8888-000000000001' },
      { gpu: 0, profile: '1g.5gb', memoryMiB: 4768, uuid: 'MIG-aaaaaaaa-0000-5555-8888-000000000002' },
    ]);
  });

  it('lists the slices with their memory, not the whole GPU, and keeps no cache of them', async () => {
    restore = fakeNvidiaSmi({ query: QUERY, list: LIST });
    const cacheDir = tempDir('xpkg-mig-cache-');
    const devices = await nvidiaGpus([], { procDir: proc(), cacheDir });
    expect(devices.map((d) => [d.name, d.arch, d.memoryMiB])).toEqual([
      ['NVIDIA A100-SXM4-40GB MIG 3g.20gb', 'sm_80', 19073],
      ['NVIDIA A100-SXM4-40GB MIG 1g.5gb', 'sm_80', 4768],
    ]);
    expect(readdirSync(cacheDir)).toEqual([]);
  });

  it('MIG on with no slice made: no device CUDA could use, and why', async () => {
    restore = fakeNvidiaSmi({ query: QUERY, list: 'GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5b)' });
    const notDetected: { what: string; reason: string }[] = [];
    expect(await nvidiaGpus(notDetected, { procDir: proc(), cacheDir: null })).toEqual([]);
    expect(notDetected[0].what).toContain('MIG');
  });

  it('a CUDA build that needs 6 GiB is not chosen on a 1g.5gb slice', () => {
    const sel = selectVariants({ models }, hostFile('a100-mig-1g5gb'), { backends: ['onnxruntime'] });
    expect(sel.models[0].chosen?.variant.id).not.toBe('cuda-fp16');
    const cuda = sel.models[0].variants.find((v) => v.variant.id === 'cuda-fp16')!;
    expect(cuda.reasons.map((r) => r.code)).toEqual(['accelerator-memory']);
  });

  it('driver/library mismatch: nvidia-smi fails, the GPU is still listed from /proc with why', async () => {
    restore = fakeNvidiaSmi({
      query: null,
      error: { text: 'Failed to initialize NVML: Driver/library version mismatch', code: 18 },
    });
    const notDetected: { what: string; reason: string }[] = [];
    const devices = await nvidiaGpus(notDetected, { procDir: proc(), cacheDir: null });
    expect(devices).toMatchObject([{ name: 'NVIDIA A100-SXM4-40GB', arch: 'sm_80', driver: '580.95.05' }]);
    expect(devices[0].memoryMiB).toBeUndefined();
    expect(notDetected[0].reason).toContain('version mismatch');
  });
});

it('the new host fixtures load', () => {
  for (const f of ['container-cgroup-limited', 'a100-mig-1g5gb'])
    expect(existsSync(join(FIX, 'hosts', `${f}.json`)) && hostFile(f).format).toBe('xpkg-host/1');
});
