/**
 * nvidia-smi's answer kept per driver and GPU set (runner/host-gpu-cache.ts): the driver's /proc
 * files are read on every detection, nvidia-smi runs only when they change. The /proc folder is a
 * copy in a temp folder and nvidia-smi a script on PATH that logs each call (CI has no NVIDIA GPU).
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nvidiaGpus } from '../runner/host-gpu.js';
import { smiCacheKey } from '../runner/host-gpu-cache.js';
import { tempDir } from './helpers/source.js';

const VERSION =
  'NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (dvs-builder@U22-I3-AE18-23-3)\nGCC version:  gcc version 12.3.0\n';
const INFORMATION = 'Model: \t\t NVIDIA H200\nIRQ:   \t\t 16\nGPU UUID: \t GPU-1234\nBus Location: \t 0000:19:00.0\n';

let root: string;
let log: string;
let path: string | undefined;

beforeAll(() => {
  root = tempDir('xpkg-smi-');
  const bin = join(root, 'bin');
  mkdirSync(bin);
  log = join(root, 'calls.log');
  writeFileSync(log, '');
  writeFileSync(
    join(bin, 'nvidia-smi'),
    `#!/bin/sh\necho "call $*" >> '${log}'\nif [ -n "$1" ]; then echo 'NVIDIA H200, 9.0, 143771, 580.159.04, 00000000:19:00.0'; else echo '| NVIDIA-SMI 580.159.04   Driver Version: 580.159.04   CUDA Version: 13.0 |'; fi\n`,
  );
  chmodSync(join(bin, 'nvidia-smi'), 0o755);
  path = process.env.PATH;
  process.env.PATH = `${bin}${delimiter}${path}`;
});

afterAll(() => {
  process.env.PATH = path;
});

function proc(version = VERSION, information = INFORMATION): string {
  const dir = tempDir('xpkg-proc-');
  mkdirSync(join(dir, 'gpus', '0000:19:00.0'), { recursive: true });
  writeFileSync(join(dir, 'version'), version);
  writeFileSync(join(dir, 'gpus', '0000:19:00.0', 'information'), information);
  return dir;
}

const calls = () => readFileSync(log, 'utf8').split('\n').filter(Boolean).length;

describe("nvidia-smi's answer per driver and GPU set", () => {
  it('runs nvidia-smi once; later detections read /proc and the cache, with the same devices', async () => {
    const cacheDir = tempDir('xpkg-smi-cache-');
    const procDir = proc();
    const before = calls();
    const first = await nvidiaGpus([], { procDir, cacheDir });
    expect(first).toEqual([
      {
        kind: 'gpu',
        vendor: 'nvidia',
        name: 'NVIDIA H200',
        source: 'nvidia-smi',
        arch: 'sm_90',
        memoryMiB: 143771,
        driver: '580.159.04',
        cuda: '13.0',
      },
    ]);
    expect(calls() - before).toBe(2);
    expect(await nvidiaGpus([], { procDir, cacheDir })).toEqual(first);
    expect(calls() - before).toBe(2);
  });

  it('asks again after a driver update, for another GPU, for an entry that does not parse, and without a cache', async () => {
    const cacheDir = tempDir('xpkg-smi-cache-');
    const procDir = proc();
    await nvidiaGpus([], { procDir, cacheDir });
    let n = calls();
    await nvidiaGpus([], { procDir: proc(VERSION.replace('580.159.04', '580.160.01')), cacheDir });
    expect(calls()).toBe(n + 2);
    n = calls();
    await nvidiaGpus([], { procDir: proc(VERSION, INFORMATION.replace('GPU-1234', 'GPU-5678')), cacheDir });
    expect(calls()).toBe(n + 2);
    n = calls();
    const key = smiCacheKey(VERSION, [{ bus: '0000:19:00.0', information: INFORMATION }]);
    writeFileSync(join(cacheDir, `nvidia-smi-${key}.json`), '{"format":1,"devices":[{"kind":"gpu"}]}');
    expect((await nvidiaGpus([], { procDir, cacheDir }))[0].arch).toBe('sm_90');
    expect(calls()).toBe(n + 2);
    n = calls();
    await nvidiaGpus([], { procDir, cacheDir: null });
    await nvidiaGpus([], { procDir, cacheDir: null });
    expect(calls()).toBe(n + 4);
  });

  it('keys on the driver text and each GPU, in any listing order', () => {
    const a = { bus: '0000:19:00.0', information: INFORMATION };
    const b = { bus: '0000:3b:00.0', information: INFORMATION.replace('19:00', '3b:00') };
    expect(smiCacheKey(VERSION, [a, b])).toBe(smiCacheKey(VERSION, [b, a]));
    expect(smiCacheKey(VERSION, [a])).not.toBe(smiCacheKey(VERSION, [a, b]));
    expect(smiCacheKey(`${VERSION} `, [a])).not.toBe(smiCacheKey(VERSION, [a]));
  });
});
