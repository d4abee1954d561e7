/**
 * The container image of deploy/image/build.sh, for its opt-in test and bench/image.ts: reading the
 * OCI layout, and running the image's entrypoint two ways — with podman, or as a chroot of the
 * unpacked bundle (read-only root, the image's uid, a tmpfs /tmp, models and trust keys bind-mounted
 * read-only) where no container runtime works.
 *
 * Podman in this sandbox (a Firecracker VM, hybrid cgroup v1/v2, no CAP_SYS_RESOURCE) needs runc
 * (crun: "cgroups in hybrid mode not supported") and rlimits within the host's hard limits (podman's
 * defaults give "setrlimit RLIMIT_NOFILE: Operation not permitted"): PODMAN and podmanLimits below.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { freePort, toolAvailable } from './registry.js';

export const IMAGE_WORK = resolve(process.env.XPKG_IMAGE_WORK ?? '.image');

export interface ImageInfo {
  tag: string;
  digest: string;
  suite: string;
  nodeVersion: string;
  compressedBytes: number;
  layerBytes: number[];
  unpackedBytes: number;
  appUnpackedBytes: number;
}

/** What the last build wrote, or null when there is none. */
export function builtImage(work = IMAGE_WORK): ImageInfo | null {
  const p = join(work, 'image.json');
  return existsSync(p) ? JSON.parse(readFileSync(p, 'utf8')) : null;
}

/** Runs deploy/image/build.sh; returns its wall time. */
export async function buildImage(extra: string[] = []): Promise<number> {
  const t0 = performance.now();
  const child = spawn('bash', ['deploy/image/build.sh', ...extra], {
    stdio: ['ignore', 'inherit', 'pipe'],
    env: { ...process.env, XPKG_IMAGE_WORK: IMAGE_WORK },
  });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    err = (err + s).slice(-8000);
    process.stderr.write(s);
  });
  const [code] = await once(child, 'close');
  if (code !== 0) throw new Error(`build.sh exited ${code}:\n${err}`);
  return performance.now() - t0;
}

interface Descriptor {
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}
/** The parts of an OCI image manifest and config the checks read. */
export interface OciImage {
  manifest: { config: Descriptor; layers: Descriptor[] };
  config: {
    created: string;
    history: { created: string }[];
    config: {
      User: string;
      Entrypoint: string[];
      Cmd: string[];
      Env: string[];
      ExposedPorts: Record<string, object>;
      Volumes: Record<string, object>;
    };
  };
}

/** The manifest and config of the tagged image in the OCI layout. */
export function ociImage(tag: string, work = IMAGE_WORK): OciImage {
  const layout = join(work, 'oci');
  const blob = (digest: string) => JSON.parse(readFileSync(join(layout, 'blobs', digest.replace(':', '/')), 'utf8'));
  const index: { manifests: Descriptor[] } = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  const ref = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!ref) throw new Error(`no tag ${tag} in ${layout}`);
  const manifest: OciImage['manifest'] = blob(ref.digest);
  return { manifest, config: blob(manifest.config.digest) };
}

export interface RunningImage {
  port: number;
  child: ChildProcess;
  /** Output of the server (and of the runtime), for failure messages. */
  log(): string;
  /** SIGTERM, then waits for the exit; returns the exit code. */
  stop(): Promise<number | null>;
}

export interface RunOptions {
  models: string;
  trust: string;
  /** Arguments after the entrypoint; default the image's cmd with --port mapped. */
  args?: string[];
}

function track(child: ChildProcess, port: number, onStop?: () => void): RunningImage {
  let out = '';
  const keep = (s: string) => (out = (out + s).slice(-20000));
  child.stdout?.setEncoding('utf8').on('data', keep);
  child.stderr?.setEncoding('utf8').on('data', keep);
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return {
    port,
    child,
    log: () => out,
    async stop() {
      onStop?.();
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/**
 * The image's entrypoint and cmd (bundle/config.json, written by `umoci unpack`) in a chroot of the
 * bundle's rootfs, in a private mount namespace: the root remounted read-only, a tmpfs on /tmp, the
 * models and trust keys bind-mounted read-only at the image's paths, run as the image's user with
 * only the image's environment. The server listens on a free loopback port (it shares this network).
 */
export async function runChroot(o: RunOptions, work = IMAGE_WORK): Promise<RunningImage> {
  const bundle = join(work, 'bundle');
  const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  const port = await freePort();
  const argv: string[] = spec.process.args;
  const cmd = o.args ?? argv.slice(argv.indexOf('serve') + 1);
  const args = [...argv.slice(0, argv.indexOf('serve') + 1), ...cmd].map((a, i, all) =>
    all[i - 1] === '--port' ? String(port) : all[i - 1] === '--host' ? '127.0.0.1' : a,
  );
  const { uid, gid } = spec.process.user;
  const script = [
    'set -eu',
    'R=$1; M=$2; T=$3; shift 3',
    'mount --bind "$R" "$R"',
    'mount -t proc proc "$R/proc"',
    // onnxruntime reads the CPU's features from /sys (cpuinfo), as it can in a container.
    'mount --rbind /sys "$R/sys" && mount -o remount,bind,ro "$R/sys"',
    'mount --rbind /dev "$R/dev"',
    'mount -t tmpfs -o mode=1777,size=512m tmpfs "$R/tmp"',
    'mount --bind "$M" "$R/mnt/models" && mount -o remount,bind,ro "$R/mnt/models"',
    'mount --bind "$T" "$R/etc/xpkg/trust" && mount -o remount,bind,ro "$R/etc/xpkg/trust"',
    'mount -o remount,bind,ro "$R"',
    `cd "$R" && exec chroot --userspec=${uid}:${gid} "$R" /usr/bin/env -i -C "${spec.process.cwd}" "$@"`,
  ].join('\n');
  const child = spawn(
    'unshare',
    ['--mount', 'sh', '-c', script, 'sh', join(bundle, 'rootfs'), o.models, o.trust, ...spec.process.env, ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return track(child, port);
}

/** podman's global options here: runc, which runs on hybrid cgroups. */
export const PODMAN = ['--runtime', 'runc'];

/** `podman run` rlimits within this host's hard limits (podman's defaults exceed them). */
function podmanLimits(): string[] {
  const nofile = execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
  return ['--ulimit', `nofile=${nofile}:${nofile}`, '--ulimit', 'nproc=4096:4096'];
}

export function podmanAvailable(): boolean {
  return toolAvailable('podman') && toolAvailable('runc');
}

/** `podman run --read-only` of a pulled image (its own user, entrypoint and cmd), port 8080 published on loopback. */
export async function runPodman(image: string, o: RunOptions): Promise<RunningImage> {
  const port = await freePort();
  const name = `xpkg-image-test-${process.pid}-${port}`;
  const child = spawn(
    'podman',
    [
      ...PODMAN,
      'run',
      '--rm',
      '--name',
      name,
      ...podmanLimits(),
      '--read-only',
      '-v',
      `${resolve(o.models)}:/mnt/models:ro`,
      '-v',
      `${resolve(o.trust)}:/etc/xpkg/trust:ro`,
      '-p',
      `127.0.0.1:${port}:8080`,
      image,
      ...(o.args ?? []),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // podman run forwards SIGTERM to the container (--sig-proxy, the default).
  return track(child, port);
}

/** Milliseconds until GET /v2/health/ready answers 200, polling every 50 ms. */
export async function waitReady(r: RunningImage, t0: number, timeoutMs = 120_000): Promise<number> {
  for (;;) {
    const status = await fetch(`http://127.0.0.1:${r.port}/v2/health/ready`)
      .then((x) => x.status)
      .catch(() => 0);
    if (status === 200) return performance.now() - t0;
    if (r.child.exitCode !== null || performance.now() - t0 > timeoutMs)
      throw new Error(`not ready (exit ${r.child.exitCode}):\n${r.log()}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}
