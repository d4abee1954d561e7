/**
 * The container image (deploy/image/build.sh), opt-in: XPKG_TEST_IMAGE=1. Too slow for CI (the first
 * build runs debootstrap: minutes), so it is a separate script; this test builds it when
 * .image/image.json is missing (or XPKG_TEST_IMAGE_REBUILD=1), then checks the image's config and
 * contents, runs its entrypoint in a read-only chroot as the image's user up to ready and an infer
 * request, and pushes it to a loopback registry and runs it with podman when podman works here.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildImage,
  builtImage,
  IMAGE_WORK,
  type ImageInfo,
  ociImage,
  PODMAN,
  podmanAvailable,
  type RunningImage,
  runChroot,
  runPodman,
  waitReady,
} from './helpers/image.js';
import { registryAvailable, startRegistry, type TestRegistry } from './helpers/registry.js';
import { tempDir } from './helpers/source.js';

const enabled = process.env.XPKG_TEST_IMAGE === '1';
const rootfs = join(IMAGE_WORK, 'bundle', 'rootfs');

let info: ImageInfo;
let models: string;
let trust: string;

async function detect(r: RunningImage): Promise<{ label: string; score: number }[]> {
  const png = readFileSync('fixtures/detector/eval/000.png');
  const res = await fetch(`http://127.0.0.1:${r.port}/v2/models/detector/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      inputs: [{ name: 'image', shape: [1], datatype: 'BYTES', data: [png.toString('base64')] }],
    }),
  });
  expect(res.status).toBe(200);
  return JSON.parse((await res.json()).outputs[0].data[0]);
}

/** The uid of the newest image server process (rootful runs share this host's process table). */
function serverUid(): number {
  const pid = execFileSync('pgrep', ['-f', '-n', '^/usr/bin/node /opt/xpkg/bin/xpkg.js serve'], {
    encoding: 'utf8',
  }).trim();
  return Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

describe.skipIf(!enabled)('container image (XPKG_TEST_IMAGE=1)', () => {
  beforeAll(async () => {
    if (process.env.XPKG_TEST_IMAGE_REBUILD === '1' || !builtImage()) {
      const ms = await buildImage();
      console.error(`image: built in ${(ms / 1000).toFixed(0)} s`);
    }
    info = builtImage()!;
    models = tempDir('xpkg-image-models-');
    copyFileSync('fixtures/dist/detector.xpkg', join(models, 'detector.xpkg'));
    trust = tempDir('xpkg-image-trust-');
    copyFileSync('fixtures/keys/test.pub', join(trust, 'publisher.pub'));
    // Temp folders are private to root; the image's user must read them, as in a real deployment.
    for (const d of [models, trust]) chmodSync(d, 0o755);
  }, 900_000);

  it('config: non-root user, `xpkg serve` entrypoint on port 8080, models volume, writable paths under /tmp', () => {
    const { manifest, config } = ociImage(info.tag);
    expect(manifest.layers).toHaveLength(2); // the Debian root, the application
    expect(config.config.User).toBe('65532:65532');
    expect(config.config.Entrypoint).toEqual(['/usr/bin/node', '/opt/xpkg/bin/xpkg.js', 'serve']);
    const cmd: string[] = config.config.Cmd;
    expect(cmd.slice(0, 6)).toEqual(['--repo', '/mnt/models', '--host', '0.0.0.0', '--port', '8080']);
    expect(Object.keys(config.config.ExposedPorts)).toEqual(['8080/tcp']);
    expect(Object.keys(config.config.Volumes)).toEqual(['/mnt/models']);
    const env = Object.fromEntries(config.config.Env.map((e: string) => e.split(/=(.*)/s).slice(0, 2)));
    for (const k of ['HOME', 'XPKG_CACHE', 'XPKG_STATE_DIR']) expect(env[k]).toMatch(/^\/tmp(\/|$)/);
    expect(env.ORT_DISABLE_TELEMETRY).toBe('1');
    // SOURCE_DATE_EPOCH: the build's times are the last commit's, not the build's.
    expect(config.created).toBe(config.history.at(-1)?.created);
    expect(Date.parse(config.created)).toBeLessThan(Date.now() - 1000);
  });

  it("contents: Debian's nodejs >= 20, the native addon and prebuilt libraries, no dev dependencies or docs", () => {
    expect(info.nodeVersion).toMatch(/^v(2\d|[3-9]\d)\./);
    expect(readFileSync(join(rootfs, 'etc/passwd'), 'utf8')).toMatch(/^xpkg:x:65532:65532:/m);
    const nm = join(rootfs, 'opt/xpkg/node_modules');
    expect(readdirSync(join(nm, 'onnxruntime-node/bin/napi-v6'))).toEqual(['linux']);
    expect(existsSync(join(nm, '@img/sharp-libvips-linux-x64'))).toBe(true);
    for (const dev of ['vitest', 'typescript', '@biomejs', 'esbuild', 'onnxruntime-web', 'playwright-core'])
      expect(existsSync(join(nm, dev)), dev).toBe(false);
    expect(existsSync(join(rootfs, 'opt/xpkg/dist/browser'))).toBe(false);
    expect(readdirSync(join(rootfs, 'var/lib/apt/lists')).filter((f) => f !== 'partial' && f !== 'lock')).toEqual([]);
    expect(readdirSync(join(rootfs, 'usr/share/man'))).toEqual([]);
    expect(existsSync(join(rootfs, 'usr/share/doc/nodejs/copyright'))).toBe(true);
    // The addon built on this host (N-API) loads in Debian's node, as the image's user.
    const probe = execFileSync(
      'chroot',
      [
        '--userspec=65532:65532',
        rootfs,
        '/usr/bin/node',
        '-e',
        `const a = require('/opt/xpkg/native/build/Release/xpkg_native.node');
         require('/opt/xpkg/node_modules/onnxruntime-node');
         require('/opt/xpkg/node_modules/sharp');
         console.log(JSON.stringify(a.buildInfo()));`,
      ],
      { encoding: 'utf8' },
    );
    expect(JSON.parse(probe).abi).toBeGreaterThan(0);
  });

  it('the entrypoint in a read-only chroot as uid 65532 becomes ready and detects', async () => {
    const t0 = performance.now();
    const r = await runChroot({ models, trust });
    try {
      const ms = await waitReady(r, t0);
      console.error(`image: chroot → ready in ${ms.toFixed(0)} ms`);
      const boxes = await detect(r);
      expect(boxes.length).toBeGreaterThan(0);
      expect(boxes[0].score).toBeGreaterThan(0.5);
      expect(serverUid()).toBe(65532);
      // No onnxruntime telemetry (ORT_DISABLE_TELEMETRY in the image) and CPU features found.
      expect(r.log()).not.toMatch(/telemetry|cpuinfo/i);
    } finally {
      expect(await r.stop()).toBe(0);
    }
  }, 180_000);

  describe.skipIf(!registryAvailable() || !podmanAvailable())('pushed to a loopback registry, run with podman', () => {
    let reg: TestRegistry;
    let ref: string | undefined;
    beforeAll(async () => {
      reg = await startRegistry();
    });
    afterAll(async () => {
      if (ref) execFileSync('podman', ['rmi', '--force', ref], { stdio: 'ignore' });
      await reg?.stop();
    });

    it('skopeo push, podman pull, podman run --read-only: ready, detects, runs as 65532', async () => {
      ref = `${reg.host}/xpkg/serve:${info.tag}`;
      execFileSync('skopeo', [
        'copy',
        '--quiet',
        '--dest-tls-verify=false',
        `oci:${join(IMAGE_WORK, 'oci')}:${info.tag}`,
        `docker://${ref}`,
      ]);
      execFileSync('podman', [...PODMAN, 'pull', '--quiet', '--tls-verify=false', ref]);
      const pulled = JSON.parse(execFileSync('podman', ['image', 'inspect', ref], { encoding: 'utf8' }))[0];
      expect(pulled.Digest).toBe(info.digest);
      const t0 = performance.now();
      const r = await runPodman(ref, { models, trust });
      try {
        const ms = await waitReady(r, t0);
        console.error(`image: podman run → ready in ${ms.toFixed(0)} ms`);
        expect((await detect(r)).length).toBeGreaterThan(0);
        expect(serverUid()).toBe(65532); // the image's user: podman was given no --user
      } finally {
        await r.stop();
      }
    }, 300_000);
  });
});
