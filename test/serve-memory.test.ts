/**
 * How request memory reaches the model workers (serve/bulk.ts, serve/pool.ts), over real HTTP on
 * loopback with the real fixture packages: big tensors through a process worker's bulk file, bodies read
 * into pooled memory that is reused (and handed to a thread worker and back) without one request's
 * bytes showing up in another's answer, and memory sent twice refused with E_SERVE_DETACHED.
 */
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { outputsToJson } from '../runner/outputs-json.js';
import { Runner } from '../runner/runner.js';
import { BulkFile, type BulkPart, joinBulk, readBulk, splitBulk } from '../serve/bulk.js';
import { BufferPool, POOL_MIN } from '../serve/pool.js';
import { type Isolation, ModelWorker } from '../serve/worker-handle.js';
import { binaryRequest, http, parseBinaryReply, type TestServer, TRUST, testServer } from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

const ADD = 'multi-variant-add-one';
const SIDE = 320;

/** Raw pixels of two different images, and what the package answers for each in process. */
let images: { px: Buffer; boxes: unknown }[];
let repo: string;

beforeAll(async () => {
  repo = tempDir('xpkg-serve-mem-');
  await copyFile('fixtures/dist/multi-variant.xpkg', join(repo, 'multi-variant.xpkg'));
  await copyFile('fixtures/dist/detector.xpkg', join(repo, 'detector.xpkg'));
  await using runner = await Runner.open('fixtures/dist/detector.xpkg', { trust: TRUST, stateDir: tempDir() });
  images = [];
  for (const f of ['fixtures/detector/eval/000.png', 'fixtures/images/example.png']) {
    const px = await sharp(await readFile(f))
      .resize(SIDE, SIDE, { fit: 'fill' })
      .removeAlpha()
      .raw()
      .toBuffer();
    const input = { image: { data: px, width: SIDE, height: SIDE, channels: 3 as const } };
    images.push({ px, boxes: outputsToJson((await runner.run(input)).outputs).boxes });
  }
  expect(images[0].boxes).not.toEqual(images[1].boxes);
}, 60_000);

/** The detector on raw pixels (a 300 KiB binary tensor), boxes as JSON. */
async function detect(url: string, px: Buffer): Promise<unknown> {
  const { body, headers } = binaryRequest(
    {
      inputs: [
        { name: 'image', shape: [SIDE, SIDE, 3], datatype: 'UINT8', parameters: { binary_data_size: px.length } },
      ],
    },
    [px],
  );
  const r = await http(`${url}/v2/models/detector/infer`, { method: 'POST', headers, body });
  expect(r.status).toBe(200);
  return JSON.parse(r.body.outputs[0].data[0]);
}

describe.each(['process', 'thread'] as Isolation[])('%s workers', (isolation) => {
  let s: TestServer;
  beforeAll(async () => {
    s = await testServer({ repo, isolation, concurrency: 2 });
  }, 60_000);
  afterAll(async () => s?.close());

  it('big binary tensors answer as in process, request after request in reused memory, never mixed up', async () => {
    // A, B, A, B: the second A and B run in memory the first ones used (pooled, handed back)
    for (const i of [0, 1, 0, 1]) expect(await detect(s.url, images[i].px)).toEqual(images[i].boxes);
    // and side by side, two at a time
    const both = await Promise.all([0, 1, 1, 0].map((i) => detect(s.url, images[i].px)));
    expect(both).toEqual([0, 1, 1, 0].map((i) => images[i].boxes));
  });

  it('a FP32 tensor after a JSON header of odd length: exact values, binary out', async () => {
    // 20 000 values (80 kB: through the bulk file) on the 1/16 grid the int8 variant keeps exact
    for (const shift of [0, 3]) {
      const x = new Float32Array(20_000).map((_, i) => (((i + shift) % 240) - 128) / 16);
      const header = {
        id: 'x'.repeat(shift + 1), // moves the tensor's offset in the body
        inputs: [{ name: 'x', shape: [x.length], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }],
        outputs: [{ name: 'y', parameters: { binary_data: true } }],
      };
      const r = await http(`${s.url}/v2/models/${ADD}/infer`, {
        method: 'POST',
        ...binaryRequest(header, [new Uint8Array(x.buffer)]),
      });
      expect(r.status).toBe(200);
      const y = parseBinaryReply(r).outputs.y;
      const got = new Float32Array(y.buffer.slice(y.byteOffset, y.byteOffset + y.length));
      expect(Array.from(got)).toEqual(Array.from(x, (v) => v + 1));
    }
  });
});

describe('memory sent twice', () => {
  it.each(['thread', 'process'] as Isolation[])(
    '%s worker: a run whose memory was already handed over fails with E_SERVE_DETACHED; the next run succeeds',
    async (isolation) => {
      const w = ModelWorker.spawn(isolation);
      try {
        await w.open(join(repo, 'multi-variant.xpkg'), { trust: TRUST, stateDir: tempDir() });
        const fresh = () => new Float32Array(POOL_MIN).map((_, i) => (i % 100) / 16);
        const x = fresh();
        const inputs = { x: { type: 'float32', dims: [x.length], data: x } };
        if (isolation === 'thread') {
          const first = await w.run(inputs, [x.buffer]);
          expect((first.outputs.y as { data: Float32Array }).data[5]).toBe(5 / 16 + 1);
        } else {
          // moved away (as a transfer to a thread does), then sent
          const { port1 } = new MessageChannel();
          port1.postMessage(x.buffer, [x.buffer]);
          port1.close();
        }
        expect(x.byteLength).toBe(0);
        // named for transfer again, or not (a thread could not even clone it: refused before, the worker kept)
        for (const transfer of [[x.buffer], []])
          await expect(w.run(inputs, transfer)).rejects.toMatchObject({ code: 'E_SERVE_DETACHED' });
        expect(w.exited).toBe(false);
        const y = fresh();
        const again = await w.run({ x: { type: 'float32', dims: [y.length], data: y } });
        expect((again.outputs.y as { data: Float32Array }).data[99]).toBe(99 / 16 + 1);
      } finally {
        await w.close();
      }
    },
    60_000,
  );
});

describe('the pieces', () => {
  it('bulk: typed arrays cut out of nested inputs come back equal through the shared file; its ranges are reused', async () => {
    const f32 = new Float32Array(30_000).map((_, i) => i / 7);
    const i64 = new BigInt64Array(10_000).map((_, i) => BigInt(i) * 3n - 7n);
    const u8 = Buffer.alloc(100_000, 9);
    const small = new Int32Array([1, 2, 3]);
    const inputs = { a: { dims: [f32.length], data: f32 }, b: [i64, small], c: u8, d: 'text' };
    const { inputs: light, parts, views } = splitBulk(inputs);
    expect(parts.map((p) => [p.path, p.kind])).toEqual([
      [['a', 'data'], 'Float32Array'],
      [['b', 0], 'BigInt64Array'],
      [['c'], 'Uint8Array'],
    ]);
    expect(inputs.a.data).toBe(f32); // the caller's objects are left alone
    const total = parts.reduce((a, p) => a + p.bytes, 0);
    const file = BulkFile.create(3 * total)!;
    const write = (ps: BulkPart[]) => file.write(ps, views);
    try {
      const first = write(parts);
      expect(first).toBe(0);
      const back = joinBulk(structuredClone(light), parts, readBulk(file.fd, parts, new BufferPool())) as typeof inputs;
      expect(back.a.data).toEqual(f32);
      expect(back.b[0]).toEqual(i64);
      expect(back.b[1]).toEqual(small);
      expect(Buffer.compare(back.c, u8)).toBe(0);
      expect(back.d).toBe('text');
      // held ranges are not overwritten; released ones are used again, lowest first
      const copy = () => parts.map((p) => ({ ...p }));
      const second = write(copy())!;
      expect(second).toBeGreaterThanOrEqual(total);
      expect(write(copy())).toBeUndefined(); // past the file's bound: the caller sends inline
      file.release(first!);
      expect(write(copy())).toBe(first);
      file.release(first!);
      file.release(second);
      expect(file.size).toBe(0);
      file.close();
      expect(write(copy())).toBeUndefined(); // closed (its worker gone)
    } finally {
      file.close();
    }
  });

  it('pool: memory comes back and is reused; detached, foreign-unless-adopted and small memory is not kept', () => {
    const pool = new BufferPool(4 * POOL_MIN, 4);
    const a = pool.take(POOL_MIN + 10);
    expect(pool.owns(a.buffer)).toBe(true);
    pool.give(a.buffer);
    const b = pool.take(POOL_MIN + 5);
    expect(b.buffer).toBe(a.buffer);
    expect(pool.take(POOL_MIN + 5).buffer).not.toBe(a.buffer); // taken: the pool made another
    const foreign = new ArrayBuffer(2 * POOL_MIN);
    pool.give(foreign);
    expect(pool.take(2 * POOL_MIN).buffer).not.toBe(foreign);
    pool.give(foreign, true);
    expect(pool.take(2 * POOL_MIN).buffer).toBe(foreign);
    const moved = pool.take(POOL_MIN);
    const { port1 } = new MessageChannel();
    port1.postMessage(moved.buffer, [moved.buffer]);
    port1.close();
    pool.give(moved.buffer);
    expect(pool.owns(pool.take(POOL_MIN).buffer)).toBe(true);
    expect(pool.owns(pool.take(100).buffer)).toBe(false); // small: Node's own slab
    // bounded: no more than 4 × POOL_MIN bytes kept
    const many = Array.from({ length: 6 }, () => pool.take(POOL_MIN));
    for (const m of many) pool.give(m.buffer);
    const again = Array.from({ length: 6 }, () => pool.take(POOL_MIN).buffer);
    expect(again.filter((x) => many.some((m) => m.buffer === x))).toHaveLength(4);
  });
});
