/**
 * Issue 10, defect 1: an async kernel must never touch memory JavaScript can free while it runs.
 * A caller transfers (detaches) the image or the output tensor of a running async kernel and the
 * new owner is garbage-collected at once; the call must then finish with a correct result (inputs
 * are copied) or E_NATIVE_ARGUMENT (an output detached), never crash. Each case runs in a child
 * process so a crash shows as a signal, not a dead test runner. Buffers are > 32 MB so the
 * allocator maps them on their own and a use-after-free faults instead of reading stale heap.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { nativeExpected } from './native-helpers.js';

function child(body: string): { stdout: string; stderr: string; status: number | null; signal: string | null } {
  const r = spawnSync(
    process.execPath,
    [
      '--expose-gc',
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `import * as n from './native/index.ts';\nn.setNativeBackend('native');\n${body}`,
    ],
    {
      cwd: new URL('..', import.meta.url).pathname,
      env: { ...process.env, XPKG_NATIVE: '' },
      encoding: 'utf8',
      timeout: 120_000,
    },
  );
  return { stdout: r.stdout, stderr: r.stderr, status: r.status, signal: r.signal };
}

// Detaches a buffer the way postMessage/structuredClone transfer does, then drops and collects the new owner.
const DETACH = `const detach = (b) => { structuredClone(b, { transfer: [b] }); globalThis.gc(); globalThis.gc(); };`;

describe.skipIf(!nativeExpected)('async kernels and detached buffers', () => {
  it('an image transferred while preprocess runs: the result is still correct, the process survives', () => {
    const r = child(`${DETACH}
      const W = 6144, H = 2048, out = [];
      for (let round = 1; round <= 3; round++) {
        const data = new Uint8Array(W * H * 3).fill(round * 40);
        const p = n.preprocess({ data, width: W, height: H, format: 'rgb' }, { resize: { mode: 'stretch', width: 2048, height: 2048 }, interpolation: 'bilinear', threads: 1, scale: 1 });
        detach(data.buffer);
        new Uint8Array(W * H * 3).fill(255);  // reuse what was freed
        const res = await p.then((v) => v, (e) => e);
        out.push(res.code ?? res.data.every((v) => Math.abs(v - round * 40) < 1e-3));
      }
      console.log(JSON.stringify(out));`);
    expect({ status: r.status, signal: r.signal, stderr: r.stderr.slice(0, 400) }).toMatchObject({
      status: 0,
      signal: null,
    });
    expect(JSON.parse(r.stdout.trim())).toEqual([true, true, true]);
  });

  it('an output tensor transferred while preprocess writes it: E_NATIVE_ARGUMENT, the process survives', () => {
    const r = child(`${DETACH}
      const S = 2600, out = [];
      const data = new Uint8Array(500 * 500 * 3).fill(7);
      for (let round = 0; round < 3; round++) {
        const tensor = new Float32Array(3 * S * S);
        const p = n.preprocess({ data, width: 500, height: 500, format: 'rgb' }, { resize: { mode: 'stretch', width: S, height: S }, threads: 1, out: tensor });
        detach(tensor.buffer);
        new Float32Array(3 * S * S).fill(1);
        const res = await p.then((v) => v, (e) => e);
        out.push(res.code ?? 'ok');
      }
      // A failure never breaks the next call.
      const ok = await n.preprocess({ data, width: 500, height: 500, format: 'rgb' }, { resize: { mode: 'stretch', width: 4, height: 4 }, scale: 1 });
      out.push(ok.data.every((v) => Math.abs(v - 7) < 1e-3));
      console.log(JSON.stringify(out));`);
    expect({ status: r.status, signal: r.signal, stderr: r.stderr.slice(0, 400) }).toMatchObject({
      status: 0,
      signal: null,
    });
    expect(JSON.parse(r.stdout.trim())).toEqual(['E_NATIVE_ARGUMENT', 'E_NATIVE_ARGUMENT', 'E_NATIVE_ARGUMENT', true]);
  });

  it('argmax logits detached mid-run: the input was copied, the labels are right', () => {
    const r = child(`${DETACH}
      const B = 1, C = 2, H = 2048, Wd = 2048, out = [];
      const logits = new Float32Array(B * C * H * Wd);
      for (let i = H * Wd; i < 2 * H * Wd; i++) logits[i] = 1;  // class 1 wins everywhere
      const p = n.segmentArgmax(logits, { dims: [B, C, H, Wd], threads: 1, scores: true });
      detach(logits.buffer);
      const res = await p;
      out.push(Array.from(new Set(res.labels)));
      console.log(JSON.stringify(out));`);
    expect({ status: r.status, signal: r.signal, stderr: r.stderr.slice(0, 400) }).toMatchObject({
      status: 0,
      signal: null,
    });
    expect(JSON.parse(r.stdout.trim())).toEqual([[1]]);
  });
});
