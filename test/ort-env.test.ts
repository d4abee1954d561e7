/**
 * onnxruntime's process-wide log (runner/backends/ort-env.ts): `error` unless XPKG_ORT_LOG_LEVEL
 * names another level. Checked in a fresh process each (onnxruntime reads the level once, when its
 * environment is created): at the default nothing of onnxruntime's reaches stderr, at `verbose` its
 * own lines do, so the setting really reaches the library.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ortLogLevel } from '../runner/backends/ort-env.js';

/** A session through xpkg's backend in a new process: onnxruntime's stderr lines and the level it was given. */
function child(env: Record<string, string>): { level: string; ortLines: string[] } {
  const body = `
    const { OnnxruntimeBackend } = await import('./runner/backends/onnxruntime.ts');
    const { identityModel } = await import('./fixtures/onnx-tiny.ts');
    const init = await new OnnxruntimeBackend().init();
    if (!init.ok) throw new Error(init.reason);
    const ort = await import('onnxruntime-node');
    const s = await ort.InferenceSession.create(identityModel(), { logSeverityLevel: 3 });
    await s.release();
    console.log(ort.env.logLevel);`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', body], {
    encoding: 'utf8',
    env: { ...process.env, XPKG_ORT_LOG_LEVEL: '', ...env },
    timeout: 60_000,
  });
  expect(r.status, r.stderr).toBe(0);
  return {
    level: r.stdout.trim().split('\n').at(-1)!,
    ortLines: r.stderr.split('\n').filter((l) => /\[[VIWEF]:onnxruntime/.test(l)),
  };
}

describe('ortLogLevel', () => {
  it('is error unless XPKG_ORT_LOG_LEVEL names a level', () => {
    expect(ortLogLevel({})).toBe('error');
    expect(ortLogLevel({ XPKG_ORT_LOG_LEVEL: 'warning' })).toBe('warning');
    expect(ortLogLevel({ XPKG_ORT_LOG_LEVEL: ' Verbose ' })).toBe('verbose');
    for (const bad of ['', 'loud', '2', 'warn']) expect(ortLogLevel({ XPKG_ORT_LOG_LEVEL: bad }), bad).toBe('error');
  });

  it('reaches onnxruntime: nothing of its own on stderr by default, its verbose lines when asked', () => {
    const quiet = child({});
    expect(quiet.level).toBe('error');
    expect(quiet.ortLines).toEqual([]);
    const loud = child({ XPKG_ORT_LOG_LEVEL: 'verbose' });
    expect(loud.level).toBe('verbose');
    expect(loud.ortLines.length).toBeGreaterThan(0);
  }, 120_000);

  it("holds in `xpkg run`, whose decode worker may create onnxruntime's environment first", () => {
    const run = (env: Record<string, string>) => {
      const r = spawnSync(
        process.execPath,
        [
          'bin/xpkg.js',
          'run',
          'fixtures/dist/detector.xpkg',
          '--trust',
          'fixtures/keys/test.pub',
          '--input',
          'fixtures/images/example.png',
          '--json',
        ],
        { encoding: 'utf8', env: { ...process.env, XPKG_ORT_LOG_LEVEL: '', ...env }, timeout: 60_000 },
      );
      expect(r.status, r.stderr).toBe(0);
      return r.stderr.split('\n').filter((l) => /\[[VIWEF]:onnxruntime/.test(l));
    };
    expect(run({})).toEqual([]);
    expect(run({ XPKG_ORT_LOG_LEVEL: 'verbose' }).length).toBeGreaterThan(0);
  }, 120_000);
});
