import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-web';

ort.env.wasm.numThreads = 1;
const files = { fp32: process.argv[2], older: process.argv[3], newer: process.argv[4] };
const W = 1056;
const x = new Float32Array(3 * 48 * W);
for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.05) * 0.8 + Math.sin(i * 0.71) * 0.2;
const s = {};
for (const [k, f] of Object.entries(files))
  s[k] = await ort.InferenceSession.create(await readFile(f), { executionProviders: ['wasm'] });
const times = { fp32: [], older: [], newer: [] };
for (let r = 0; r < 8; r++)
  for (const k of Object.keys(s)) {
    const t = performance.now();
    await s[k].run({ [s[k].inputNames[0]]: new ort.Tensor('float32', x, [1, 3, 48, W]) });
    times[k].push(performance.now() - t);
  }
for (const k of Object.keys(times))
  console.log(
    k,
    times[k]
      .slice(2)
      .sort((a, b) => a - b)[3]
      .toFixed(1),
    'ms',
  );
