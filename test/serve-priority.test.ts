/**
 * `workerNice` (`xpkg serve --worker-nice`): the model workers run at that niceness, so the event
 * loop gets a contended core first; replacements too. Real process workers on the real fixture.
 */
import { readFileSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { binaryRequest, http, parseBinaryReply, type TestServer, testServer } from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

/** The niceness of a process's main thread, from /proc (field 19). */
const niceOf = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[16]);

describe.skipIf(process.platform !== 'linux')('worker niceness', () => {
  let s: TestServer;
  beforeAll(async () => {
    const repo = tempDir('xpkg-serve-nice-');
    await copyFile('fixtures/dist/multi-variant.xpkg', join(repo, 'multi-variant.xpkg'));
    s = await testServer({ repo, workerNice: 7 });
  }, 60_000);
  afterAll(async () => s?.close());

  it('workers run at the niceness asked for, the daemon at its own; requests are answered', async () => {
    const v = s.repository.models.get('multi-variant-add-one')!.current!;
    const pids = v.pids();
    expect(pids.length).toBeGreaterThan(0);
    for (const pid of pids) expect(niceOf(pid)).toBe(7);
    expect(niceOf(process.pid)).not.toBe(7);
    const x = new Float32Array([1, 2, 3]);
    const r = await http(`${s.url}/v2/models/multi-variant-add-one/infer`, {
      method: 'POST',
      ...binaryRequest(
        {
          inputs: [{ name: 'x', shape: [3], datatype: 'FP32', parameters: { binary_data_size: 12 } }],
          outputs: [{ name: 'y', parameters: { binary_data: true } }],
        },
        [new Uint8Array(x.buffer)],
      ),
    });
    expect(r.status).toBe(200);
    const y = parseBinaryReply(r).outputs.y;
    expect(Array.from(new Float32Array(y.buffer.slice(y.byteOffset, y.byteOffset + y.length)))).toEqual([2, 3, 4]);
  });
});
