import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { quantizeConvs, type Ranges, withOpsets } from '../fixtures/onnx-int8.js';
import { int8Float, prepare } from '../fixtures/paddleocr-v4/build.js';

const dir = await mkdtemp(join(tmpdir(), 'st-'));
await prepare(dir, { gpu: false });
const newer = await readFile(join(dir, 'models/rec/rec-cpu-int8.onnx'));
const fp32 = await readFile(join(dir, 'models/rec/ch_PP-OCRv4_rec_infer.onnx'));
const { ranges } = JSON.parse(await readFile('fixtures/paddleocr-v4/rec-int8-ranges.json', 'utf8')) as {
  ranges: Ranges;
};
const g = int8Float(fp32);
quantizeConvs(g, ranges);
const older = withOpsets(g.encode());
const W = Number(process.argv[2] ?? 480),
  N = Number(process.argv[3] ?? 4);
const x = new Float32Array(N * 3 * 48 * W);
let s = 1;
for (let i = 0; i < x.length; i++) {
  s = (s * 1103515245 + 12345) & 0x7fffffff;
  x[i] = ((s >> 8) % 1000) / 500 - 1;
}
// a smoother input: stripes like text
for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.05) * 0.8 + x[i] * 0.2;
const sessions: Record<string, ort.InferenceSession> = {};
for (const [k, b] of Object.entries({ older, newer, fp32 }))
  sessions[k] = await ort.InferenceSession.create(b, { intraOpNumThreads: Number(process.env.T ?? 2) });
const inName = sessions.older.inputNames[0];
const feeds = { [inName]: new ort.Tensor('float32', x, [N, 3, 48, W]) };
const out: Record<string, Float32Array> = {};
const times: Record<string, number[]> = { older: [], newer: [], fp32: [] };
for (let r = 0; r < 12; r++)
  for (const k of Object.keys(sessions)) {
    const t = performance.now();
    const o = await sessions[k].run(feeds);
    times[k].push(performance.now() - t);
    out[k] = o[sessions[k].outputNames[0]].data as Float32Array;
  }
const med = (a: number[]) => a.slice(2).sort((p, q) => p - q)[Math.floor((a.length - 2) / 2)];
for (const k of Object.keys(times)) console.log(k, med(times[k]).toFixed(2), 'ms');
const C = out.fp32.length / (N * ((out.fp32.length / N / 6625) | 0));
const argmax = (a: Float32Array) => {
  const T = a.length / 6625;
  const r: number[] = [];
  for (let t = 0; t < T; t++) {
    let b = 0;
    for (let c = 1; c < 6625; c++) if (a[t * 6625 + c] > a[t * 6625 + b]) b = c;
    r.push(b);
  }
  return r;
};
const [af, ao, an] = [argmax(out.fp32), argmax(out.older), argmax(out.newer)];
let d1 = 0,
  d2 = 0;
for (let i = 0; i < af.length; i++) {
  if (af[i] !== ao[i]) d1++;
  if (af[i] !== an[i]) d2++;
}
let m1 = 0,
  m2 = 0;
for (let i = 0; i < out.fp32.length; i++) {
  m1 = Math.max(m1, Math.abs(out.fp32[i] - out.older[i]));
  m2 = Math.max(m2, Math.abs(out.fp32[i] - out.newer[i]));
}
console.log(
  'argmax differ vs fp32: older',
  d1,
  'newer',
  d2,
  'of',
  af.length,
  '; max abs diff older',
  m1.toFixed(4),
  'newer',
  m2.toFixed(4),
  C,
);
