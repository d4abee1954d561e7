/**
 * Whether onnxruntime's CUDA and WebGPU execution providers can load here, and exactly why not,
 * found without loading anything: the provider libraries beside onnxruntime's binding, the NVIDIA
 * driver (/proc/driver/nvidia/version), the CUDA runtime and cuDNN libraries the CUDA provider
 * needs (by soname, in the loader's cache and search path), the Vulkan loader, an installable
 * Vulkan driver and a GPU device node for WebGPU. A real session then confirms (backend init).
 *
 * Every input comes from `AccelEnv`, which `probeAccelEnv` reads from this machine; tests build one
 * from fake folders instead.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CUDA_PROVIDER } from './gpu-install.js';
import { parseNvidiaVersion } from './host-gpu.js';
import { librarySearchPath } from './host-runtimes.js';
import { listDir, readText } from './host-util.js';

export type AccelProvider = 'cuda' | 'webgpu';

export type AccelReasonCode =
  | 'platform'
  | 'provider-libraries'
  | 'provider-version'
  | 'no-driver'
  | 'no-libcuda'
  | 'driver-too-old'
  | 'cuda-runtime'
  | 'cudnn'
  | 'no-vulkan'
  | 'no-vulkan-driver'
  | 'no-gpu-device';

export interface AccelReason {
  code: AccelReasonCode;
  message: string;
  /** Sonames or files not found, where that is the reason. */
  missing?: string[];
}

export interface AccelCheck {
  provider: AccelProvider;
  usable: boolean;
  /** Every reason it cannot load (empty when usable). */
  reasons: AccelReason[];
}

/** What the checks read; `probeAccelEnv` fills it from this machine. */
export interface AccelEnv {
  platform: NodeJS.Platform;
  arch: string;
  /** onnxruntime-node's binding folder (where provider libraries must be) and its version. */
  binding?: { dir: string; version: string };
  /** File names in onnxruntime's binding folder. */
  bindingFiles: string[];
  /** Library file names the loader can find (search-path listings and ld.so.cache entries). */
  libraries: Set<string>;
  /** How many places were searched, for messages. */
  searched: number;
  /** NVIDIA kernel driver version; null when /proc/driver/nvidia/version is absent. */
  nvidiaDriver: string | null;
  /** Vulkan installable client drivers (ICD manifests) found. */
  vulkanIcds: string[];
  /** GPU device nodes present (/dev/dri/renderD*, /dev/nvidia0, /dev/dxg). */
  deviceNodes: string[];
  /**
   * WSL2's GPU paravirtualisation (/dev/dxg): the Windows driver serves CUDA through
   * /usr/lib/wsl/lib/libcuda.so.1 and there is no /proc/driver/nvidia, so its absence is no reason.
   */
  wsl?: boolean;
}

/** Sonames the CUDA provider of onnxruntime 1.29.0 (CUDA 13) links against or opens (readelf -d; cuDNN by dlopen). */
export const CUDA_RUNTIME_SONAMES = ['libcudart.so.13', 'libcublas.so.13', 'libcublasLt.so.13', 'libcurand.so.10'];
export const CUDNN_SONAMES = ['libcudnn.so.9'];
/** CUDA 13.0 needs an R580 driver or newer (CUDA 13.0 release notes, minimum Linux driver 580.65.06). */
export const MIN_CUDA_DRIVER = 580;

/**
 * Library names in /etc/ld.so.cache. Both cache formats hold each soname as a NUL-terminated
 * string followed elsewhere by its path, so the strings are enough to say "the loader knows it".
 */
export function ldCacheNames(bytes: Buffer): string[] {
  const out = new Set<string>();
  for (const m of bytes.toString('latin1').matchAll(/(?:^|\0|\/)(lib[A-Za-z0-9_.+-]+\.so(?:\.[0-9.]+)?)(?=\0)/g))
    out.add(m[1]);
  return [...out];
}

export interface ProbeOptions {
  binding?: { dir: string; version: string };
  /** Directories to list (default: the loader's search path, LD_LIBRARY_PATH first). */
  libraryDirs?: string[];
  /** ld.so.cache to read; null for none (default /etc/ld.so.cache). */
  ldCache?: string | null;
  /** Root standing in for / when reading /proc, /dev, /usr/share/vulkan (default '/'). */
  root?: string;
  platform?: NodeJS.Platform;
  arch?: string;
  /** Environment read for the Vulkan loader's driver lists (default process.env). */
  env?: Record<string, string | undefined>;
}

/**
 * Driver manifests the Vulkan loader takes from the environment instead of (VK_DRIVER_FILES,
 * VK_ICD_FILENAMES) or beside (VK_ADD_DRIVER_FILES) its folders: ':'-separated files or folders.
 * A container's driver often lives outside the folders (the NVIDIA one in /usr/local/nvidia/share).
 */
async function envIcds(env: Record<string, string | undefined>, at: (p: string) => string): Promise<string[]> {
  const out: string[] = [];
  for (const k of ['VK_DRIVER_FILES', 'VK_ICD_FILENAMES', 'VK_ADD_DRIVER_FILES'])
    for (const p of (env[k] ?? '').split(':').filter(Boolean)) {
      if (p.endsWith('.json')) {
        if (existsSync(at(p))) out.push(p);
      } else for (const f of await listDir(at(p))) if (f.endsWith('.json')) out.push(join(p, f));
    }
  return out;
}

export async function probeAccelEnv(options: ProbeOptions = {}): Promise<AccelEnv> {
  const root = options.root ?? '/';
  const at = (p: string) => join(root, p);
  const cachePath = options.ldCache === undefined ? '/etc/ld.so.cache' : options.ldCache;
  // every listing and read at once: each is a round trip to the thread pool, ~20 of them
  const icdDirs = ['usr/share/vulkan/icd.d', 'etc/vulkan/icd.d', 'usr/local/share/vulkan/icd.d'];
  const searchPath = options.libraryDirs ? Promise.resolve(options.libraryDirs) : librarySearchPath();
  const [dirs, listings, version, icds, envIcdFiles, dri] = await Promise.all([
    searchPath,
    searchPath.then((ds) => Promise.all(ds.map((d) => listDir(d)))),
    readText(at('proc/driver/nvidia/version')),
    Promise.all(icdDirs.map((d) => listDir(at(d)))),
    envIcds(options.env ?? process.env, at),
    listDir(at('dev/dri')),
  ]);
  const libraries = new Set<string>(listings.flat());
  if (cachePath) {
    try {
      for (const n of ldCacheNames(readFileSync(cachePath))) libraries.add(n);
    } catch {
      // no cache (musl, containers): the directory listings stand alone
    }
  }
  const nvidiaDriver = version.ok ? (parseNvidiaVersion(version.value) ?? 'unknown') : null;
  const vulkanIcds = icdDirs.flatMap((d, i) => icds[i].filter((f) => f.endsWith('.json')).map((f) => join('/', d, f)));
  vulkanIcds.push(...envIcdFiles);
  const deviceNodes = [
    ...dri.filter((n) => n.startsWith('renderD')).map((n) => `/dev/dri/${n}`),
    ...(existsSync(at('dev/nvidia0')) ? ['/dev/nvidia0'] : []),
    ...(existsSync(at('dev/dxg')) ? ['/dev/dxg'] : []),
  ];
  const env: AccelEnv = {
    platform: options.platform ?? process.platform,
    arch: options.arch ?? process.arch,
    bindingFiles: [],
    libraries,
    searched: dirs.length + (cachePath ? 1 : 0),
    nvidiaDriver,
    vulkanIcds,
    deviceNodes,
    ...(deviceNodes.includes('/dev/dxg') ? { wsl: true } : {}),
  };
  return options.binding ? withBinding(env, options.binding) : env;
}

/**
 * `env` with onnxruntime-node's binding folder and what is in it: the backend scans the machine
 * while onnxruntime's library loads, and adds the binding (whose version it knows once loaded) after.
 */
export function withBinding(env: AccelEnv, binding: { dir: string; version: string }): AccelEnv {
  let bindingFiles: string[];
  try {
    bindingFiles = readdirSync(binding.dir);
  } catch {
    bindingFiles = [];
  }
  return { ...env, binding, bindingFiles };
}

const missingOf = (env: AccelEnv, names: string[]) => names.filter((n) => !env.libraries.has(n));

/** Can the CUDA provider load here? Every reason it cannot, in the order a person fixes them. */
export function checkCuda(env: AccelEnv): AccelCheck {
  const reasons: AccelReason[] = [];
  const pkg = CUDA_PROVIDER;
  if (env.platform !== pkg.platform || env.arch !== pkg.arch) {
    reasons.push({
      code: 'platform',
      message: `the CUDA provider xpkg installs is built for ${pkg.platform}-${pkg.arch}; this is ${env.platform}-${env.arch}`,
    });
    return { provider: 'cuda', usable: false, reasons };
  }
  const libs = pkg.files.map((f) => f.name);
  const absent = libs.filter((n) => !env.bindingFiles.includes(n));
  if (absent.length)
    reasons.push({
      code: 'provider-libraries',
      message: `${absent.join(' and ')} not installed beside onnxruntime-node's binding${env.binding ? ` (${env.binding.dir})` : ''}; run \`xpkg gpu install\``,
      missing: absent,
    });
  else if (env.binding && env.binding.version !== pkg.ortVersion) {
    reasons.push({
      code: 'provider-version',
      message: `the provider libraries are built for onnxruntime ${pkg.ortVersion}; onnxruntime-node here is ${env.binding.version}`,
    });
  }
  if (env.nvidiaDriver === null && env.wsl) {
    // the Windows driver's version is not readable from here: nvidia-smi reports it (xpkg host)
    if (!env.libraries.has('libcuda.so.1'))
      reasons.push({
        code: 'no-libcuda',
        message: `WSL2: libcuda.so.1 (/usr/lib/wsl/lib) is not on the loader path (${env.searched} places searched); the Windows NVIDIA driver provides it`,
        missing: ['libcuda.so.1'],
      });
  } else if (env.nvidiaDriver === null)
    reasons.push({ code: 'no-driver', message: 'no NVIDIA driver loaded (/proc/driver/nvidia/version absent)' });
  else {
    const major = Number.parseInt(env.nvidiaDriver, 10);
    if (Number.isFinite(major) && major < MIN_CUDA_DRIVER)
      reasons.push({
        code: 'driver-too-old',
        message: `NVIDIA driver ${env.nvidiaDriver} is older than ${MIN_CUDA_DRIVER}, the first that runs CUDA 13`,
      });
    else if (!env.libraries.has('libcuda.so.1'))
      reasons.push({
        code: 'no-libcuda',
        message: `the NVIDIA driver's libcuda.so.1 is not on the loader path (${env.searched} places searched)`,
        missing: ['libcuda.so.1'],
      });
  }
  const rt = missingOf(env, CUDA_RUNTIME_SONAMES);
  if (rt.length)
    reasons.push({
      code: 'cuda-runtime',
      message: `CUDA 13 runtime libraries missing: ${rt.join(', ')} (${env.searched} places searched; add the CUDA lib folder to LD_LIBRARY_PATH)`,
      missing: rt,
    });
  const dnn = missingOf(env, CUDNN_SONAMES);
  if (dnn.length)
    reasons.push({
      code: 'cudnn',
      message: `cuDNN 9 missing: ${dnn.join(', ')} (${env.searched} places searched)`,
      missing: dnn,
    });
  return { provider: 'cuda', usable: !reasons.length, reasons };
}

/** Can the WebGPU provider (bundled in onnxruntime-node's linux-x64 build, Dawn on Vulkan) find a GPU here? */
export function checkWebgpu(env: AccelEnv): AccelCheck {
  const reasons: AccelReason[] = [];
  if (env.platform === 'linux') {
    if (!env.libraries.has('libvulkan.so.1'))
      reasons.push({
        code: 'no-vulkan',
        message: `no Vulkan loader (libvulkan.so.1; Debian: libvulkan1) in ${env.searched} places searched`,
        missing: ['libvulkan.so.1'],
      });
    if (!env.vulkanIcds.length)
      reasons.push({
        code: 'no-vulkan-driver',
        message: 'no Vulkan driver manifest in /usr/share/vulkan/icd.d, /etc/vulkan/icd.d or VK_DRIVER_FILES',
      });
    if (!env.deviceNodes.length)
      reasons.push({
        code: 'no-gpu-device',
        message: 'no GPU device node (/dev/dri/renderD*, /dev/nvidia0, /dev/dxg)',
      });
  }
  return { provider: 'webgpu', usable: !reasons.length, reasons };
}

/**
 * Reasons that make a load attempt certainly fail (or load mismatched native code): the provider is
 * then not tried. The others come from scanning the loader's path, which can miss what the loader
 * would find (RPATHs, nested ld.so.conf): the provider is tried, and they explain a failure.
 */
export const BLOCKING: readonly AccelReasonCode[] = [
  'platform',
  'provider-libraries',
  'provider-version',
  'no-driver',
  'no-vulkan',
  'no-gpu-device',
];

/** Both checks, for `xpkg host` and the backend's pre-check. */
export function checkAccel(env: AccelEnv): Record<AccelProvider, AccelCheck> {
  return { cuda: checkCuda(env), webgpu: checkWebgpu(env) };
}

/** One line per reason, as `xpkg host` and load errors show them. */
export function accelSummary(c: AccelCheck): string {
  return c.usable ? 'usable' : c.reasons.map((r) => `${r.code}: ${r.message}`).join('; ');
}
