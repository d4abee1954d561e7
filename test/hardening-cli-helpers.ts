/** Helpers of the hardening tests: the built CLI (dist/) as a child process that does not block the test worker, a tiny runnable image package. */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { encodeModel } from '../fixtures/onnx-tiny.js';
import type { CliRun } from './helpers/cli.js';

export function xpkgAsync(
  args: string[],
  o: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {},
): Promise<CliRun & { signal: NodeJS.Signals | null }> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [resolve('bin/xpkg.js'), ...args],
      {
        encoding: 'utf8',
        env: { ...process.env, ...o.env },
        timeout: o.timeoutMs ?? 120_000,
        killSignal: 'SIGKILL',
        maxBuffer: 64 * 1024 * 1024,
        ...(o.cwd ? { cwd: o.cwd } : {}),
      },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: number | string; signal?: NodeJS.Signals }) | null;
        const status = e ? (typeof e.code === 'number' ? e.code : -1) : 0;
        let json = null;
        if (args.includes('--json') && stdout.trim()) json = JSON.parse(stdout.trim().split('\n').pop()!);
        done({ status, stdout, stderr, json, signal: e?.signal ?? null });
      },
    );
  });
}

/** A tiny runnable image package source (decode → 4×4 tensor → identity model) in `dir`. */
export async function writeImageSource(dir: string, o: { name?: string; sequence?: number } = {}): Promise<string> {
  await mkdir(join(dir, 'models'), { recursive: true });
  const shape = ['A', 'B', 'C', 'D'];
  await writeFile(
    join(dir, IMAGE_MODEL),
    encodeModel({
      name: 'identity',
      nodes: [{ op: 'Identity', inputs: ['X'], outputs: ['Y'] }],
      inputs: [{ name: 'X', type: 'float32', shape }],
      outputs: [{ name: 'Y', type: 'float32', shape }],
    }),
  );
  const sequence = o.sequence ?? 1;
  const manifest = {
    name: o.name ?? 'image-demo',
    version: `1.${sequence}.0`,
    sequence,
    license: 'MIT',
    task: 'test',
    inputs: [{ name: 'image', type: 'image' }],
    outputs: [{ name: 'y', type: 'tensor' }],
    models: [{ id: 'net', variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: [IMAGE_MODEL] }] }],
    pipeline: {
      steps: [
        { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
        { op: 'preprocess', params: { input: 'rgb', output: 'x', mode: 'fixed', width: 4, height: 4 } },
        { op: 'infer', model: 'net', params: { inputs: 'x', outputs: 'y' } },
      ],
    },
  };
  await writeFile(join(dir, 'xpkg.json'), JSON.stringify(manifest));
  return dir;
}

export const IMAGE_MODEL = 'models/id.onnx';

/** An 8×8 PNG at `path`. */
export async function writePng(path: string): Promise<string> {
  await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 10, g: 200, b: 30 } } })
    .png()
    .toFile(path);
  return path;
}
