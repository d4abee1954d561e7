/**
 * Provider choice per model and fallback, on this CPU machine: an injected GPU host profile makes
 * selection pick the CUDA variant, onnxruntime really tries the CUDA provider and fails here, and
 * the result must say so (the failed variant, its code and reason) and that the model ran on the CPU.
 */
import { describe, expect, it } from 'vitest';
import { BackendRegistry, OnnxruntimeBackend } from '../runner/backends/index.js';
import { probeModel } from '../runner/backends/probe-model.js';
import { loadHostProfile } from '../runner/host-profile.js';
import { Runner } from '../runner/runner.js';
import { selectVariants } from '../runner/select.js';
import type { Variant } from '../spec/schema.js';
import { tempDir } from './helpers/source.js';

const ADD = 'fixtures/dist/multi-variant.xpkg';
const TRUST = ['fixtures/keys/test.pub'];
const H100 = loadHostProfile('fixtures/hosts/h100.json');
const NO_CUDA = loadHostProfile('fixtures/hosts/gpu-no-cuda.json');

/** A registry whose onnxruntime backend attempts CUDA even though init found it unusable here. */
function attemptingCuda(): BackendRegistry {
  const r = new BackendRegistry();
  r.register(new OnnxruntimeBackend({ attemptProviders: ['cuda'] }), 100);
  return r;
}

const x = { type: 'float32' as const, dims: [3], data: new Float32Array([1, 2, 3]) };

describe('GPU provider selection and fallback', () => {
  it('selection picks the CUDA variant where the profile loads cuda, and says why not where it does not', async () => {
    const { PackageReader } = await import('../pack/reader.js');
    const reader = await PackageReader.open(ADD);
    try {
      const gpu = selectVariants(reader.manifest, H100, { backends: ['onnxruntime'] });
      expect(gpu.models[0].chosen?.variant.id).toBe('cuda-fp16');
      expect(gpu.models[0].chosen?.providers).toEqual(['cuda']);
      const cpu = selectVariants(reader.manifest, NO_CUDA, { backends: ['onnxruntime'] });
      expect(cpu.models[0].chosen?.providers).toEqual(['cpu']);
      const cuda = cpu.models[0].variants.find((v) => v.variant.id === 'cuda-fp16')!;
      expect(cuda.status).toBe('rejected');
      expect(cuda.reasons.map((r) => r.code)).toEqual(['provider']);
    } finally {
      await reader.close();
    }
  });

  it('a CUDA variant that fails to load falls back to a CPU variant, recorded in the result', async () => {
    await using runner = await Runner.open(ADD, {
      trust: TRUST,
      stateDir: tempDir('xpkg-state-'),
      host: H100,
      registry: attemptingCuda(),
      threads: 1,
    });
    const r = await runner.run({ x });
    expect([...(r.outputs.y as { data: Float32Array }).data]).toEqual([2, 3, 4]);
    expect(r.variant['add-one']).not.toBe('cuda-fp16');
    expect(r.actualProvider).toEqual({ 'add-one': 'cpu' });
    const f = r.fallbacks['add-one'];
    expect(f[0]).toMatchObject({ variant: 'cuda-fp16', code: 'E_RUN_LOAD' });
    // onnxruntime's own words (a real attempt), not a refusal made before asking it
    expect(f[0].reason).toMatch(/cuda: .*(failed to load|cannot open)/i);
    // and the selection shows it as a load failure
    const v = runner.selection.models[0].variants.find((s) => s.variant.id === 'cuda-fp16')!;
    expect(v.reasons.map((x) => x.code)).toContain('load-failed');
  });

  it('a CPU run reports the CPU provider and no fallback', async () => {
    await using runner = await Runner.open(ADD, {
      trust: TRUST,
      stateDir: tempDir('xpkg-state-'),
      variant: 'cpu-fp32',
      threads: 1,
    });
    const r = await runner.run({ x });
    expect(r.actualProvider).toEqual({ 'add-one': 'cpu' });
    expect(r.fallbacks).toEqual({});
  });

  it('within a variant listing cuda then cpu, a failing cuda provider falls back to cpu, recorded on the session', async () => {
    const backend = new OnnxruntimeBackend({ attemptProviders: ['cuda'] });
    expect((await backend.init()).ok).toBe(true);
    const variant = {
      id: 'both',
      runtime: 'onnxruntime',
      precision: 'fp32',
      files: ['m.onnx'],
      requires: { executionProviders: ['cuda', 'cpu'] },
    } as Variant;
    const session = await backend.load(variant, new Map([['m.onnx', Buffer.from(probeModel())]]), { threads: 1 });
    try {
      expect(session.provider).toBe('cpu');
      expect(session.providerFallbacks.map((f) => f.provider)).toEqual(['cuda']);
      expect(session.providerFallbacks[0].reason.length).toBeGreaterThan(5);
    } finally {
      await session.release();
    }
  });

  it("counts the nodes each provider ran from the first run's profile, then stops profiling and leaves no file", async () => {
    const { readdirSync, readFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const before = readdirSync(tmpdir()).filter((f) => f.startsWith('xpkg-ort-profile-')).length;
    const backend = new OnnxruntimeBackend({ placement: 'always' });
    await backend.init();
    const variant = {
      id: 'det',
      runtime: 'onnxruntime',
      precision: 'fp32',
      files: ['m.onnx'],
      requires: { executionProviders: ['cpu'] },
    } as Variant;
    const session = await backend.load(variant, new Map([['m.onnx', readFileSync('fixtures/detector/model.onnx')]]), {
      threads: 1,
    });
    try {
      expect(session.nodesByProvider).toBeUndefined();
      const feeds = {
        [session.inputNames[0]]: {
          type: 'float32' as const,
          dims: [1, 3, 320, 320],
          data: new Float32Array(3 * 320 * 320),
        },
      };
      await session.run(feeds);
      const nodes = session.nodesByProvider!;
      expect(Object.keys(nodes)).toEqual(['cpu']);
      expect(nodes.cpu).toBeGreaterThan(10);
      await session.run(feeds);
      expect(session.nodesByProvider).toEqual(nodes);
      expect(readdirSync(tmpdir()).filter((f) => f.startsWith('xpkg-ort-profile-')).length).toBe(before);
    } finally {
      await session.release();
    }
  });

  it('a CPU session is not profiled by default', async () => {
    await using runner = await Runner.open(ADD, {
      trust: TRUST,
      stateDir: tempDir('xpkg-state-'),
      variant: 'cpu-fp32',
      threads: 1,
    });
    expect((await runner.run({ x })).nodes).toEqual({});
  });

  it('without attempting, a variant needing only cuda is refused before onnxruntime is asked', async () => {
    const backend = new OnnxruntimeBackend();
    await backend.init();
    const variant = {
      id: 'gpu',
      runtime: 'onnxruntime',
      precision: 'fp16',
      files: ['m.onnx'],
      requires: { executionProviders: ['cuda'] },
    } as Variant;
    await expect(backend.load(variant, new Map([['m.onnx', Buffer.from(probeModel())]]), {})).rejects.toMatchObject({
      code: 'E_RUN_LOAD',
    });
  });
});
