/**
 * The `XPKG_*` settings the README documents with a closed set of values. The libraries read them
 * where they are used and fall back to their default on any other value (`XPKG_OCI_RETRIES=three`
 * retried 4 times, `XPKG_ORT_CUDA_GRAPH=off` kept graphs on): the CLI checks them before a command
 * runs, so a typo is E_USAGE naming the variable, never a setting silently not applied. An empty
 * value is unset, as for XPKG_HOST. Free-form ones (paths, tokens, registry names) are checked
 * where they are used.
 */
import { UsageError } from '../spec/errors.js';

const digits = (v: string) => /^[0-9]+$/.test(v) && Number.isSafeInteger(Number(v));
const oneOf =
  (...values: string[]) =>
  (v: string) =>
    values.includes(v);
/** `k=v;k=v`: the libraries drop an entry without a key and `=` (runner/backends/capi-options.ts keyValues). */
const keyValues = (v: string) =>
  v
    .split(';')
    .map((e) => e.trim())
    .every((e) => e === '' || e.indexOf('=') > 0);

interface Setting {
  expected: string;
  ok: (value: string) => boolean;
}

const flag: Setting = { expected: '0 or 1', ok: oneOf('0', '1') };

export const SETTINGS: Record<string, Setting> = {
  XPKG_OCI_RETRIES: { expected: 'an integer ≥ 0', ok: digits },
  XPKG_NATIVE_THREADS: { expected: 'an integer from 1 to 256', ok: (v) => digits(v) && +v >= 1 && +v <= 256 },
  XPKG_ORT_CAPI: { expected: 'off or on', ok: oneOf('off', 'on') },
  XPKG_ORT_CONV_SEARCH: {
    expected: 'DEFAULT, HEURISTIC or EXHAUSTIVE',
    ok: oneOf('DEFAULT', 'HEURISTIC', 'EXHAUSTIVE'),
  },
  XPKG_ORT_TF32: flag,
  XPKG_ORT_CONV_MAX_WS: flag,
  XPKG_ORT_CUDA_GRAPH: flag,
  XPKG_ORT_ARENA: { expected: 'power-of-two or same-as-requested', ok: oneOf('power-of-two', 'same-as-requested') },
  XPKG_ORT_CUDA_SYNC: { expected: 'spin, yield, blocking or auto', ok: oneOf('spin', 'yield', 'blocking', 'auto') },
  // read trimmed and in any case (runner/backends/ort-env.ts)
  XPKG_ORT_LOG_LEVEL: {
    expected: 'verbose, info, warning, error or fatal',
    ok: (v) => ['verbose', 'info', 'warning', 'error', 'fatal'].includes(v.trim().toLowerCase()),
  },
  XPKG_ORT_CUDA_OPTIONS: { expected: 'key=value entries separated by ;', ok: keyValues },
  XPKG_ORT_SESSION_CONFIG: { expected: 'key=value entries separated by ;', ok: keyValues },
  XPKG_SCRATCH: flag,
  XPKG_FIRST_TOUCH: flag,
  XPKG_RELAUNCH: flag,
};

/** E_USAGE for the first documented setting whose value the libraries would ignore. */
export function checkEnvironment(env: NodeJS.ProcessEnv = process.env): void {
  for (const [name, s] of Object.entries(SETTINGS)) {
    const value = env[name];
    if (value === undefined || value === '' || s.ok(value)) continue;
    throw new UsageError('E_USAGE', `${name} must be ${s.expected}, not ${JSON.stringify(value)}`, {
      variable: name,
      value,
      expected: s.expected,
    });
  }
}
