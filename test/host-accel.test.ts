/**
 * CUDA and WebGPU readiness: one fake machine (a root with /proc, /dev and Vulkan manifests, a
 * library folder of empty files named like the sonames, an onnxruntime binding folder) that has
 * everything, then each piece taken away must give its own reason code. The backend is then
 * initialised for real with those findings.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OnnxruntimeBackend } from '../runner/backends/onnxruntime.js';
import { CUDA_PROVIDER } from '../runner/gpu-install.js';
import {
  type AccelReasonCode,
  CUDA_RUNTIME_SONAMES,
  CUDNN_SONAMES,
  checkCuda,
  checkWebgpu,
  ldCacheNames,
  probeAccelEnv,
} from '../runner/host-accel.js';
import { tempDir } from './helpers/source.js';

const DRIVER = readFileSync(join(import.meta.dirname, 'data', 'hosts', 'nvidia-version-h100-recorded.txt'), 'utf8');

interface Fake {
  root: string;
  libs: string;
  binding: string;
}

/** A machine with the NVIDIA driver 580, CUDA 13 + cuDNN 9 libraries, Vulkan and the provider libraries. */
function fakeMachine(): Fake {
  const root = tempDir('xpkg-accel-root-');
  const libs = tempDir('xpkg-accel-libs-');
  const binding = tempDir('xpkg-accel-ort-');
  mkdirSync(join(root, 'proc/driver/nvidia'), { recursive: true });
  writeFileSync(join(root, 'proc/driver/nvidia/version'), DRIVER);
  mkdirSync(join(root, 'dev/dri'), { recursive: true });
  writeFileSync(join(root, 'dev/nvidia0'), '');
  writeFileSync(join(root, 'dev/dri/renderD128'), '');
  mkdirSync(join(root, 'usr/share/vulkan/icd.d'), { recursive: true });
  writeFileSync(join(root, 'usr/share/vulkan/icd.d/nvidia_icd.json'), '{}');
  for (const n of [...CUDA_RUNTIME_SONAMES, ...CUDNN_SONAMES, 'libcuda.so.1', 'libvulkan.so.1'])
    writeFileSync(join(libs, n), '');
  for (const f of CUDA_PROVIDER.files) writeFileSync(join(binding, f.name), '');
  writeFileSync(join(binding, 'libonnxruntime.so.1'), '');
  return { root, libs, binding };
}

const env = (
  f: Fake,
  version = '1.29.0',
  extra: { ldCache?: string | null; platform?: NodeJS.Platform; env?: Record<string, string | undefined> } = {},
) =>
  probeAccelEnv({
    root: f.root,
    libraryDirs: [f.libs],
    ldCache: extra.ldCache ?? null,
    binding: { dir: f.binding, version },
    platform: extra.platform ?? 'linux',
    arch: 'x64',
    env: extra.env ?? {},
  });
const codes = (c: { reasons: { code: AccelReasonCode }[] }) => c.reasons.map((r) => r.code);

describe('CUDA and WebGPU readiness', () => {
  it('a machine with everything: both usable', async () => {
    const e = await env(fakeMachine());
    expect(e.nvidiaDriver).toBe('580.159.04');
    expect(checkCuda(e)).toEqual({ provider: 'cuda', usable: true, reasons: [] });
    expect(checkWebgpu(e)).toEqual({ provider: 'webgpu', usable: true, reasons: [] });
  });

  it('each missing piece gives its own reason', async () => {
    const cases: [string, (f: Fake) => void, AccelReasonCode, 'cuda' | 'webgpu'][] = [
      [
        'provider libraries',
        (f) => rmSync(join(f.binding, 'libonnxruntime_providers_cuda.so')),
        'provider-libraries',
        'cuda',
      ],
      ['driver', (f) => rmSync(join(f.root, 'proc/driver/nvidia'), { recursive: true }), 'no-driver', 'cuda'],
      [
        'old driver',
        (f) => writeFileSync(join(f.root, 'proc/driver/nvidia/version'), DRIVER.replace('580.159.04', '550.54.14')),
        'driver-too-old',
        'cuda',
      ],
      ['libcuda', (f) => rmSync(join(f.libs, 'libcuda.so.1')), 'no-libcuda', 'cuda'],
      ['cudart', (f) => rmSync(join(f.libs, 'libcudart.so.13')), 'cuda-runtime', 'cuda'],
      ['cublas', (f) => rmSync(join(f.libs, 'libcublasLt.so.13')), 'cuda-runtime', 'cuda'],
      ['cudnn', (f) => rmSync(join(f.libs, 'libcudnn.so.9')), 'cudnn', 'cuda'],
      ['vulkan loader', (f) => rmSync(join(f.libs, 'libvulkan.so.1')), 'no-vulkan', 'webgpu'],
      [
        'vulkan driver',
        (f) => rmSync(join(f.root, 'usr/share/vulkan'), { recursive: true }),
        'no-vulkan-driver',
        'webgpu',
      ],
      ['device nodes', (f) => (rmSync(join(f.root, 'dev'), { recursive: true }), undefined), 'no-gpu-device', 'webgpu'],
    ];
    for (const [what, remove, code, provider] of cases) {
      const f = fakeMachine();
      remove(f);
      const e = await env(f);
      const c = provider === 'cuda' ? checkCuda(e) : checkWebgpu(e);
      expect(codes(c), what).toEqual([code]);
      expect(c.usable, what).toBe(false);
    }
  });

  it('names the sonames that are missing, all at once', async () => {
    const f = fakeMachine();
    for (const n of ['libcudart.so.13', 'libcurand.so.10', 'libcudnn.so.9']) rmSync(join(f.libs, n));
    const c = checkCuda(await env(f));
    expect(codes(c)).toEqual(['cuda-runtime', 'cudnn']);
    expect(c.reasons[0].missing).toEqual(['libcudart.so.13', 'libcurand.so.10']);
  });

  it('refuses provider libraries under another onnxruntime release, and other platforms', async () => {
    expect(codes(checkCuda(await env(fakeMachine(), '1.30.0')))).toEqual(['provider-version']);
    expect(codes(checkCuda(await env(fakeMachine(), '1.29.0', { platform: 'darwin' })))).toEqual(['platform']);
  });

  it('finds a Vulkan driver named by VK_DRIVER_FILES (a file or a folder) outside the usual folders', async () => {
    const f = fakeMachine();
    rmSync(join(f.root, 'usr/share/vulkan'), { recursive: true });
    expect(codes(checkWebgpu(await env(f)))).toEqual(['no-vulkan-driver']);
    const icd = 'usr/local/nvidia/share/vulkan/icd.d';
    mkdirSync(join(f.root, icd), { recursive: true });
    writeFileSync(join(f.root, icd, 'nvidia_icd.json'), '{}');
    for (const e of [
      { VK_DRIVER_FILES: `/${icd}/nvidia_icd.json` },
      { VK_ICD_FILENAMES: `/nowhere.json:/${icd}` },
      { VK_ADD_DRIVER_FILES: `/${icd}` },
    ]) {
      const found = await env(f, '1.29.0', { env: e });
      expect(found.vulkanIcds).toEqual([`/${icd}/nvidia_icd.json`]);
      expect(checkWebgpu(found).usable).toBe(true);
    }
    // a named file that is not there is no driver
    expect(checkWebgpu(await env(f, '1.29.0', { env: { VK_DRIVER_FILES: '/nowhere.json' } })).usable).toBe(false);
  });

  it('finds libraries the loader knows from ld.so.cache alone', async () => {
    const f = fakeMachine();
    rmSync(join(f.libs, 'libcudnn.so.9'));
    const cache = join(tempDir(), 'ld.so.cache');
    writeFileSync(
      cache,
      Buffer.from(
        'glibc-ld.so.cache1.1\0\0\0\0libcudnn.so.9\0/usr/lib/x86_64-linux-gnu/libcudnn.so.9\0libz.so.1\0',
        'latin1',
      ),
    );
    expect(ldCacheNames(readFileSync(cache))).toEqual(expect.arrayContaining(['libcudnn.so.9', 'libz.so.1']));
    expect(checkCuda(await env(f, '1.29.0', { ldCache: cache })).usable).toBe(true);
  });

  it('the backend skips a blocked provider with its code, and tries one the scan cannot rule out', async () => {
    // blocked: no provider libraries; not even attempted
    const blocked = fakeMachine();
    rmSync(join(blocked.binding, 'libonnxruntime_providers_shared.so'));
    const b1 = new OnnxruntimeBackend({ accelEnv: await env(blocked) });
    const i1 = await b1.init();
    expect(i1.unavailable.find((u) => u.name === 'cuda')?.code).toBe('provider-libraries');
    // nothing ruled out (and cuDNN's absence is only a hint): onnxruntime really tries, fails here, and the hint is the code
    const hinted = fakeMachine();
    rmSync(join(hinted.libs, 'libcudnn.so.9'));
    const b2 = new OnnxruntimeBackend({ accelEnv: await env(hinted) });
    const i2 = await b2.init();
    expect(i2.providers).not.toContain('cuda');
    const cuda = i2.unavailable.find((u) => u.name === 'cuda');
    expect(cuda?.code).toBe('cudnn');
    expect(cuda?.reason).toMatch(/libcudnn\.so\.9/);
    expect(b2.accel?.cuda.usable).toBe(false);
  });
});
