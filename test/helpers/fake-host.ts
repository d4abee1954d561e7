/**
 * A fake machine for host detection: a folder standing in for / (proc/cpuinfo, proc/self/*,
 * sys/fs/cgroup/…, dev/…) and an `nvidia-smi` script on PATH that answers by its arguments.
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { tempDir } from './source.js';

/** Writes `files` (path relative to the root → content) under a new temp root; returns the root. */
export function fakeRoot(files: Record<string, string>): string {
  const root = tempDir('xpkg-fake-root-');
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

/** /proc/cpuinfo of `n` x86 processors (SMT pairs) with `flags`. */
export function x86Cpuinfo(n: number, flags: string, model = 'Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz'): string {
  return Array.from(
    { length: n },
    (_, i) =>
      `processor\t: ${i}\nvendor_id\t: GenuineIntel\nmodel name\t: ${model}\nphysical id\t: 0\ncore id\t\t: ${i >> 1}\ncpu cores\t: ${n / 2}\nflags\t\t: ${flags}\n`,
  ).join('\n');
}

export interface FakeSmi {
  /** What `nvidia-smi --query-gpu=…` prints (exit 0), or null to fail with `error`. */
  query: string | null;
  /** What `nvidia-smi -L` prints. */
  list?: string;
  banner?: string;
  error?: { text: string; code: number };
  /** Query fields this (older) driver does not know: a query naming one fails as nvidia-smi does. */
  unknownFields?: string[];
}

/** Puts a fake nvidia-smi first on PATH; returns a function that restores PATH. */
export function fakeNvidiaSmi(smi: FakeSmi): () => void {
  const bin = tempDir('xpkg-fake-smi-');
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const fail = smi.error ? `printf '%s\\n' ${q(smi.error.text)}; exit ${smi.error.code}` : 'exit 9';
  // as a 470 driver's nvidia-smi: the message on stdout, exit 2, nothing else answered
  const unknown = (smi.unknownFields ?? []).map(
    (f) =>
      `case "$1" in --query-gpu=*${f}*) printf '%s\\n\\n' ${q(`Field "${f}" is not a valid field to query.`)}; exit 2 ;; esac`,
  );
  const script = [
    '#!/bin/sh',
    ...unknown,
    `case "$1" in`,
    `  --query-gpu=*) ${smi.query === null ? fail : `printf '%s\\n' ${q(smi.query)}`} ;;`,
    `  -L) printf '%s\\n' ${q(smi.list ?? '')} ;;`,
    `  *) ${smi.query === null ? fail : `printf '%s\\n' ${q(smi.banner ?? '| NVIDIA-SMI 580.95.05  Driver Version: 580.95.05  CUDA Version: 13.0 |')}`} ;;`,
    'esac',
    '',
  ].join('\n');
  writeFileSync(join(bin, 'nvidia-smi'), script);
  chmodSync(join(bin, 'nvidia-smi'), 0o755);
  const before = process.env.PATH;
  process.env.PATH = `${bin}${delimiter}${before}`;
  return () => {
    process.env.PATH = before;
  };
}
