/**
 * What native/index.ts needs from Node to find and load the addon: files, `require`, environment
 * variables, the core count. The browser bundle swaps in browser/twins/native-env.ts, where no addon
 * exists and the portable TypeScript kernels run.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const nativeEnv = {
  /** This folder (native/ in the sources, dist/native/ when built). */
  dir: fileURLToPath(new URL('.', import.meta.url)),
  join,
  resolve,
  exists: (path: string): boolean => existsSync(path),
  read: (path: string): Buffer => readFileSync(path),
  requireAddon: (path: string): unknown => createRequire(import.meta.url)(path),
  hardwareThreads: (): number => availableParallelism(),
  getenv: (name: string): string | undefined => process.env[name],
  platform: process.platform as string,
  arch: process.arch as string,
  warn: (line: string): void => void process.stderr.write(line),
};
