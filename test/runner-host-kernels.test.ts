/** `xpkg host` reports which kernel backend runs pre/post-processing (native with its SIMD level, or portable). */
import { afterEach, describe, expect, it } from 'vitest';
import { nativeInfo, setNativeBackend } from '../native/index.js';
import { detectHost, loadHostProfile, renderHost } from '../runner/host.js';
import { RunnerError } from '../spec/errors.js';
import { syncCodeOf } from './helpers/errors.js';

afterEach(() => setNativeBackend('auto'));

describe('host profile: kernel backend', () => {
  it('detection records nativeInfo() and the human form shows it', async () => {
    const h = await detectHost();
    const info = nativeInfo();
    expect(h.kernels).toMatchObject({ backend: info.backend, simd: info.simd, threads: info.threads });
    expect(renderHost(h)).toMatch(
      info.backend === 'native'
        ? new RegExp(`^kernels +native \\(${info.simd},`, 'm')
        : /^kernels +portable TypeScript/m,
    );
  });

  it('a forced portable backend is reported with its reason; injected profiles may carry or omit it', async () => {
    setNativeBackend('portable');
    const h = await detectHost();
    expect(h.kernels?.backend).toBe('portable');
    expect(renderHost(h)).toMatch(/^kernels +portable TypeScript — forced$/m);
    const { kernels: _k, ...without } = h;
    expect(renderHost(loadHostProfile(without))).not.toMatch(/^kernels/m);
    expect(
      syncCodeOf(
        () => loadHostProfile({ ...h, kernels: { backend: 'gpu', simd: 'x', threads: 1, cuda: false } }),
        RunnerError,
      ),
    ).toBe('E_HOST_PROFILE');
  });
});
