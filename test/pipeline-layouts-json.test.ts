/**
 * One package of the layouts pipeline-layouts-heads.test.ts covers (a classifier head without
 * Flatten, a segmenter's own ArgMax as int64 ids, a bool output) through `xpkg run --json` and the
 * daemon's run route: the same answer, and the right one (computed here from the image).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeModel } from '../fixtures/onnx-tiny.js';
import { packFolder } from '../pack/pack.js';
import { sign } from '../signing/sign.js';
import { xpkgAsync } from './helpers/cli.js';
import { http, type TestServer, TRUST, testServer } from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

/**
 * From X [1, 3, h, w]: `ids` = ArgMax over channels (int64 [1, h, w]), `pooled` = GlobalAveragePool
 * ([1, 3, 1, 1], no Flatten), `bright` = X > 0.5 (bool).
 */
const model = () =>
  encodeModel({
    name: 'heads',
    nodes: [
      { op: 'ArgMax', inputs: ['X'], outputs: ['ids'], intAttrs: { axis: 1, keepdims: 0 } },
      { op: 'GlobalAveragePool', inputs: ['X'], outputs: ['pooled'] },
      { op: 'Greater', inputs: ['X', 'half'], outputs: ['bright'] },
    ],
    inputs: [{ name: 'X', type: 'float32', shape: [1, 3, 'h', 'w'] }],
    outputs: [
      { name: 'ids', type: 'int64', shape: [1, 'h', 'w'] },
      { name: 'pooled', type: 'float32', shape: [1, 3, 1, 1] },
      { name: 'bright', type: 'bool', shape: [1, 3, 'h', 'w'] },
    ],
    initializers: [{ name: 'half', type: 'float32', dims: [], raw: new Uint8Array(Float32Array.of(0.5).buffer) }],
  });

const NAME = 'layouts-json';
// 45×27: red on the left 15 columns, blue on the right 30 (blue is the larger share)
const W = 45,
  H = 27,
  S = 16;
async function image(): Promise<Buffer> {
  const d = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) d[(y * W + x) * 3 + (x < 15 ? 0 : 2)] = 220;
  return sharp(d, { raw: { width: W, height: H, channels: 3 } })
    .png()
    .toBuffer();
}

let pkgPath: string, imgPath: string, s: TestServer;
beforeAll(async () => {
  const src = tempDir('xpkg-layouts-json-src-');
  await mkdir(join(src, 'models'));
  await writeFile(join(src, 'models', 'heads.onnx'), model());
  const manifest = {
    name: NAME,
    version: '1.0.0',
    sequence: 1,
    license: 'MIT',
    task: 'test',
    inputs: [{ name: 'image', type: 'image' }],
    outputs: [
      { name: 'mask', type: 'mask' },
      { name: 'top', type: 'classification' },
      { name: 'bright', type: 'tensor' },
    ],
    models: [
      {
        id: 'net',
        variants: [{ id: 'cpu', runtime: 'onnxruntime', precision: 'fp32', files: ['models/heads.onnx'] }],
      },
    ],
    pipeline: {
      steps: [
        { op: 'decode-image', params: { input: 'image', output: 'rgb' } },
        { op: 'preprocess', params: { input: 'rgb', output: 'x', mode: 'letterbox', width: S, height: S } },
        {
          op: 'infer',
          model: 'net',
          params: { inputs: 'x', outputs: { ids: 'ids', pooled: 'pooled', bright: 'bright' } },
        },
        {
          op: 'segment-argmax',
          params: { input: 'ids', output: 'mask', image: 'x', labels: ['red', 'green', 'blue'] },
        },
        { op: 'top-k', params: { input: 'pooled', output: 'top', k: 3, labels: ['red', 'green', 'blue'] } },
      ],
    },
  };
  await writeFile(join(src, 'xpkg.json'), JSON.stringify(manifest));
  const repo = tempDir('xpkg-layouts-json-repo-');
  pkgPath = join(repo, `${NAME}.xpkg`);
  await packFolder(src, pkgPath, { sourceDateEpoch: '' });
  await sign(pkgPath, { key: 'fixtures/keys/test.key', out: pkgPath, passphrase: '', force: true });
  imgPath = join(tempDir('xpkg-layouts-json-img-'), 'in.png');
  await writeFile(imgPath, await image());
  s = await testServer({ repo });
}, 60_000);
afterAll(async () => {
  await s?.close();
});

describe('xpkg run --json and the daemon agree on other layouts', () => {
  it('mask from int64 ids, classification from [1, C, 1, 1], a bool tensor', async () => {
    const cli = await xpkgAsync([
      'run',
      pkgPath,
      '--trust',
      TRUST[0],
      '--state-dir',
      tempDir(),
      '-i',
      `image=${imgPath}`,
      '--json',
    ]);
    expect(cli.status, cli.stderr).toBe(0);
    const r = await http(`${s.url}/xpkg/models/${NAME}/run`, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: new Uint8Array(await image()),
    });
    expect(r.status).toBe(200);
    const out = cli.json!.result.outputs;
    expect(r.body.result.outputs).toEqual(out);

    // the mask, back at 45×27: red (0) left of column 15, blue (2) right of it (one column each side spared)
    expect([out.mask.width, out.mask.height]).toEqual([W, H]);
    const data: number[] = out.mask.data;
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) if (Math.abs(x + 0.5 - 15) > 1.5) expect(data[y * W + x]).toBe(x < 15 ? 0 : 2);
    // three classes of the one image, blue first (2/3 of the picture), then red, then green
    expect(out.top.labels).toEqual(['blue', 'red', 'green']);
    // the letterbox: 16×10 of picture (rows 3-12), 114 grey above and below; blue's mean by hand
    const pic = (16 * 10) / (16 * 16);
    expect(out.top.scores[0]).toBeCloseTo(pic * (2 / 3) * (220 / 255) + (1 - pic) * (114 / 255), 2);
    // bool [1, 3, 16, 16]: grey padding (114) is not above 0.5, the picture's own channel (220) is
    expect(out.bright.type).toBe('bool');
    expect(out.bright.dims).toEqual([1, 3, S, S]);
    const b: number[] = out.bright.data;
    expect(b[0 * S * S + 8 * S + 0]).toBe(1); // red, row 8, column 0
    expect(b[2 * S * S + 8 * S + 15]).toBe(1); // blue, row 8, column 15
    expect(b[2 * S * S + 0 * S + 15]).toBe(0); // padding row 0
  }, 60_000);
});
