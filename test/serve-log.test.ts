/**
 * The daemon's log goes out in batches (serve/log.ts): lines wait at most the batch time, a warning
 * or worse takes the waiting lines out at once, and so do 64 KiB of them; order is kept.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../serve/log.js';
import { startWithLog, until } from './helpers/serve.js';

function sink() {
  const writes: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      writes.push(String(chunk));
      cb();
    },
  });
  return { writes, stream };
}

const msgs = (writes: string[]) =>
  writes
    .join('')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l).msg);

describe('batched log lines', () => {
  it('info lines wait for the batch time, then go out in one write, in order', async () => {
    const s = sink();
    const log = createLogger({ format: 'json', destination: s.stream, batchMs: 100 });
    for (const m of ['a', 'b', 'c']) log.info(m);
    expect(s.writes).toEqual([]);
    await until(() => s.writes.length > 0, 10_000, 'the batch');
    expect(s.writes).toHaveLength(1);
    expect(msgs(s.writes)).toEqual(['a', 'b', 'c']);
  });

  it('a warning takes the waiting lines out at once; so does flush', () => {
    const s = sink();
    const log = createLogger({ format: 'json', destination: s.stream, batchMs: 60_000 });
    log.info('first');
    log.warn('trouble');
    expect(msgs(s.writes)).toEqual(['first', 'trouble']);
    log.info('later');
    expect(msgs(s.writes)).toEqual(['first', 'trouble']);
    log.flush();
    expect(msgs(s.writes)).toEqual(['first', 'trouble', 'later']);
  });

  it('text lines too: a warning at once, 64 KiB waiting at once', () => {
    const s = sink();
    const log = createLogger({ format: 'text', destination: s.stream, batchMs: 60_000 });
    log.info({ n: 1 }, 'hello');
    expect(s.writes).toEqual([]);
    log.error('bad');
    expect(s.writes.join('')).toMatch(/ INFO hello n=1\n.* ERROR bad\n$/);
    const before = s.writes.length;
    for (let i = 0; i < 1000 && s.writes.length === before; i++) log.info({ pad: 'x'.repeat(200) }, 'bulk');
    expect(s.writes.length).toBe(before + 1);
    expect(s.writes[before].length).toBeGreaterThanOrEqual(65536);
  });
});

describe('text log lines', () => {
  it("the text format's listening line carries the daemon's pid, as the JSON one does", async () => {
    const repo = await mkdtemp(join(tmpdir(), 'xpkg-log-pid-'));
    let text = '';
    const server = await startWithLog({ repo }, 'text', (t) => {
      text += t;
    });
    try {
      await server.ready;
      const line = text.split('\n').find((l) => / INFO listening /.test(l));
      expect(line).toContain(` pid=${process.pid}`);
    } finally {
      await server.close();
      await rm(repo, { recursive: true, force: true });
    }
  });
});
