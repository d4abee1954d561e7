import { readFile, writeFile } from 'node:fs/promises';
import { alignAffineRanges, quantizeConvs, type Ranges, withOpsets } from '../fixtures/onnx-int8.js';
import { int8Float, prepare } from '../fixtures/paddleocr-v4/build.js';

await prepare('/tmp/stx', { gpu: false });
const fp32 = await readFile('/tmp/stx/models/rec/ch_PP-OCRv4_rec_infer.onnx');
const { ranges } = JSON.parse(await readFile('fixtures/paddleocr-v4/rec-int8-ranges.json', 'utf8')) as {
  ranges: Ranges;
};
const g = int8Float(fp32);
quantizeConvs(g, ranges);
await writeFile('/tmp/stx/older.onnx', withOpsets(g.encode()));
