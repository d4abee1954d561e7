/**
 * Runtimes usable on this host. Runtimes with an xpkg backend (onnxruntime) are reported from the
 * backend's own init, so "available" means "loads and runs a model here". Runtimes without a backend
 * yet (TensorRT, RKNN, OpenVINO, Core ML) are reported by finding their shared libraries on the
 * loader's search path: present or absent, with the version the file name (or library) carries.
 */
import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import type { BackendRegistry } from './backends/registry.js';
import type { HostProfile, RuntimeInfo } from './host-profile.js';
import { listDir, readText } from './host-util.js';

type NotDetected = HostProfile['notDetected'];

interface LibrarySpec {
  runtime: string;
  /** What a person would search for. */
  display: string;
  /** File-name patterns per platform; group 1, when present, is the version suffix. */
  patterns: Partial<Record<NodeJS.Platform, RegExp[]>>;
}

export const LIBRARIES: LibrarySpec[] = [
  {
    runtime: 'tensorrt',
    display: 'libnvinfer (TensorRT)',
    patterns: { linux: [/^libnvinfer\.so(?:\.([\d.]+))?$/], win32: [/^nvinfer(?:_(\d+))?\.dll$/i] },
  },
  {
    runtime: 'rknn',
    display: 'librknnrt (RKNN runtime)',
    patterns: { linux: [/^librknnrt\.so(?:\.([\d.]+))?$/], android: [/^librknnrt\.so$/] },
  },
  {
    runtime: 'openvino',
    display: 'libopenvino (OpenVINO)',
    patterns: {
      linux: [/^libopenvino\.so(?:\.([\d.]+))?$/],
      darwin: [/^libopenvino(?:\.([\d.]+))?\.dylib$/],
      win32: [/^openvino\.dll$/i],
    },
  },
];

/** "10.3.0" from a file-name suffix; the name with the most version parts wins. */
export function pickLibrary(names: string[], patterns: RegExp[]): { file: string; version?: string } | undefined {
  let best: { file: string; version?: string; parts: number } | undefined;
  for (const file of names) {
    for (const re of patterns) {
      const m = re.exec(file);
      if (!m) continue;
      const version = m[1]?.replace(/\.$/, '');
      const parts = version ? version.split('.').length : 0;
      if (!best || parts > best.parts) best = { file, parts, ...(version ? { version } : {}) };
    }
  }
  return best && { file: best.file, ...(best.version ? { version: best.version } : {}) };
}

/** Directories the dynamic loader searches (an approximation good enough to say "present"). */
export async function librarySearchPath(): Promise<string[]> {
  const env =
    process.platform === 'win32'
      ? process.env.PATH
      : process.platform === 'darwin'
        ? process.env.DYLD_LIBRARY_PATH
        : process.env.LD_LIBRARY_PATH;
  const dirs = (env ?? '').split(delimiter).filter(Boolean);
  if (process.platform === 'linux') {
    const confs = [
      '/etc/ld.so.conf',
      ...(await listDir('/etc/ld.so.conf.d')).filter((f) => f.endsWith('.conf')).map((f) => `/etc/ld.so.conf.d/${f}`),
    ];
    for (const conf of confs) {
      const t = await readText(conf);
      if (t.ok) for (const line of t.value.split('\n')) if (line.trim().startsWith('/')) dirs.push(line.trim());
    }
    const triplet = process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
    dirs.push(
      `/usr/lib/${triplet}`,
      `/lib/${triplet}`,
      '/usr/lib64',
      '/lib64',
      '/usr/lib',
      '/lib',
      '/usr/local/lib',
      '/usr/local/cuda/lib64',
      '/usr/local/tensorrt/lib',
    );
    // WSL2: the Windows driver's libcuda and nvidia-smi (also named in /etc/ld.so.conf.d/ld.wsl.conf)
    if (existsSync('/usr/lib/wsl/lib')) dirs.push('/usr/lib/wsl/lib');
    for (const d of (await listDir('/opt/intel')).filter((d) => d.startsWith('openvino')))
      dirs.push(`/opt/intel/${d}/runtime/lib/intel64`);
  } else if (process.platform === 'darwin') {
    dirs.push('/usr/local/lib', '/opt/homebrew/lib');
  }
  return [...new Set(dirs)];
}

/** The version string librknnrt embeds ("librknnrt version: 2.3.0 (…)"); it is not in the file name. */
async function rknnVersion(path: string): Promise<string | undefined> {
  try {
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(Math.min((await fh.stat()).size, 32 << 20));
      await fh.read(buf, 0, buf.length, 0);
      return /librknnrt version: (\d+\.\d+\.\d+)/.exec(buf.toString('latin1'))?.[1];
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
}

async function findRuntimeLibraries(dirs: string[]): Promise<Record<string, RuntimeInfo>> {
  const out: Record<string, RuntimeInfo> = {};
  const listings = await Promise.all(dirs.map(async (d) => ({ dir: d, names: await listDir(d) })));
  for (const spec of LIBRARIES) {
    const patterns = spec.patterns[process.platform];
    if (!patterns) {
      out[spec.runtime] = { available: false, reason: `not supported on ${process.platform}` };
      continue;
    }
    let found: RuntimeInfo | undefined;
    for (const { dir, names } of listings) {
      const hit = pickLibrary(names, patterns);
      if (!hit) continue;
      found = { available: true, path: join(dir, hit.file), ...(hit.version ? { version: hit.version } : {}) };
      break;
    }
    if (found && spec.runtime === 'rknn' && !found.version) {
      const v = await rknnVersion(found.path!);
      if (v) found.version = v;
    }
    out[spec.runtime] = found ?? {
      available: false,
      reason: `${spec.display} not found in ${dirs.length} library directories`,
    };
  }
  if (process.platform === 'darwin') {
    const fw = '/System/Library/Frameworks/CoreML.framework';
    out.coreml = existsSync(fw) ? { available: true, path: fw } : { available: false, reason: `${fw} not present` };
  } else {
    out.coreml = { available: false, reason: 'Core ML exists only on Apple platforms' };
  }
  return out;
}

/** Runtimes from the backend registry (these really ran a model) and from shared libraries. */
export async function detectRuntimes(
  registry: BackendRegistry,
): Promise<{ runtimes: Record<string, RuntimeInfo>; notDetected: NotDetected }> {
  const notDetected: NotDetected = [];
  const [statuses, libs] = await Promise.all([registry.status(), librarySearchPath().then(findRuntimeLibraries)]);
  const runtimes: Record<string, RuntimeInfo> = { ...libs };
  for (const runtime of registry.runtimes()) {
    const mine = statuses.filter((s) => s.runtimes.includes(runtime));
    const ok = mine.find((s) => s.init.ok);
    if (ok) {
      const init = ok.init as typeof ok.init & { unavailable?: { name: string; reason: string; code?: string }[] };
      runtimes[runtime] = {
        available: true,
        ...(init.version ? { version: init.version } : {}),
        ...(init.providers ? { providers: [...init.providers] } : {}),
        ...(init.unavailable?.length ? { unavailable: init.unavailable } : {}),
      };
    } else {
      const reason = mine.map((s) => `${s.name}: ${s.init.reason ?? 'init failed'}`).join('; ');
      runtimes[runtime] = { available: false, reason };
      notDetected.push({ what: `runtime ${runtime}`, reason });
    }
  }
  for (const [name, info] of Object.entries(libs))
    if (!info.available && !registry.runtimes().includes(name))
      notDetected.push({ what: `runtime ${name}`, reason: info.reason ?? 'absent' });
  return { runtimes, notDetected };
}
