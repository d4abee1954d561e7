/**
 * `xpkg run` and the library's runner on inputs nobody meant to give them: named pipes with no
 * writer, sockets, links that lead nowhere, `--annotate` onto a device or a pipe, pictures whose
 * names collide, an SVG that references the files beside it. Each gets its own code and exit
 * status, never a hang, and one bad input does not stop the others.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import {
  copyFileSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { annotate } from '../runner/annotate.js';
import { inputFromBytes, TEXT_MAX_BYTES } from '../runner/inputs/load.js';
import { DEFAULT_BUDGET } from '../runner/pipeline/budget.js';
import { decodeHere } from '../runner/pipeline/decode-sharp.js';
import { EXIT } from '../spec/errors.js';
import type { Manifest } from '../spec/schema.js';
import { xpkgAsync } from './helpers/cli.js';

const PKG = 'fixtures/dist/detector.xpkg';
const GOOD = 'fixtures/detector/eval/001.png';
let dir: string;

/**
 * `xpkg run` of the detector as a process, killed (by its id) after `limitMs`: a run that hangs
 * fails the test with status -1 instead of outliving it. stdout's JSON lines are parsed.
 */
async function run(args: string[], limitMs = 30_000) {
  const child = spawn(
    process.execPath,
    [resolve('bin/xpkg.js'), 'run', PKG, '--trust', 'fixtures/keys/test.pub', ...args],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
  const [status, signal] = (await once(child, 'close')) as [number | null, string | null];
  clearTimeout(timer);
  const lines = args.includes('--json')
    ? stdout
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l))
    : [];
  return { status: signal ? -1 : (status ?? -1), lines, stdout, stderr };
}

const mkfifo = (p: string) => expect(spawnSync('mkfifo', [p]).status).toBe(0);

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'xpkg-hostile-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('special files as inputs never hang', () => {
  it('a named pipe that no process writes: E_RUN_INPUT_FORMAT (exit 30) at once, alone or among good inputs', async () => {
    const fifo = join(dir, 'nobody-writes.png');
    mkfifo(fifo);
    const one = await run(['-i', fifo, '--json'], 20_000);
    expect(one.status).toBe(EXIT.runner);
    expect(one.lines[0].error.code).toBe('E_RUN_INPUT_FORMAT');
    expect(one.lines[0].error.detail.reason).toBe('empty');

    const many = await run(['-i', GOOD, '-i', fifo, '-i', GOOD, '--json'], 20_000);
    expect(many.status).toBe(EXIT.runner);
    expect(many.lines.map((l) => (l.error ? l.error.code : 'ok'))).toEqual(['ok', 'E_RUN_INPUT_FORMAT', 'ok']);
  }, 45_000);

  it('a pipe with a writer is still read to its end', async () => {
    const fifo = join(dir, 'written.png');
    mkfifo(fifo);
    // the writer opens the pipe once xpkg is reading (its open blocks until then)
    const writer = spawn('sh', ['-c', `cat "${GOOD}" > "${fifo}"`], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 200));
      const r = await run(['-i', fifo, '--json'], 20_000);
      expect(r.status).toBe(0);
      expect(r.lines[0].result.outputs.boxes.length).toBeGreaterThan(0);
    } finally {
      if (writer.exitCode === null) writer.kill();
    }
  }, 30_000);

  it('a Unix socket: E_RUN_INPUT_FORMAT (exit 30), not an I/O error', async () => {
    const path = join(dir, 'socket.png');
    const server: Server = createServer();
    await new Promise<void>((r) => server.listen(path, r));
    try {
      const r = await run(['-i', path, '--json'], 20_000);
      expect(r.status).toBe(EXIT.runner);
      expect(r.lines[0].error.code).toBe('E_RUN_INPUT_FORMAT');
    } finally {
      server.close();
    }
  }, 30_000);

  it('the library given an image path that is a pipe with no writer: E_RUN_INPUT at once', async () => {
    const fifo = join(dir, 'lib-fifo.png');
    mkfifo(fifo);
    const code = await decodeHere(fifo, 3, [255], DEFAULT_BUDGET).then(
      () => 'OK',
      (e) => e.code,
    );
    expect(code).toBe('E_RUN_INPUT');
  }, 20_000);
});

describe('folders: a link that leads nowhere is its own failed input, never skipped silently', () => {
  it('a dangling link and a loop of links each get an error line; the good file runs', async () => {
    const folder = join(dir, 'links');
    mkdirSync(folder);
    copyFileSync(GOOD, join(folder, 'a-good.png'));
    symlinkSync(join(dir, 'no-such-file.png'), join(folder, 'b-dangling.png'));
    symlinkSync('c-loop2.png', join(folder, 'c-loop1.png'));
    symlinkSync('c-loop1.png', join(folder, 'c-loop2.png'));
    const r = await run(['-i', folder, '--json']);
    expect(r.lines.map((l) => l.input)).toEqual(
      ['a-good.png', 'b-dangling.png', 'c-loop1.png', 'c-loop2.png'].map((f) => join(folder, f)),
    );
    expect(r.lines.map((l) => (l.error ? l.error.code : 'ok'))).toEqual(['ok', 'E_NOT_FOUND', 'E_IO', 'E_IO']);
    expect(r.status).toBe(EXIT.io);
  }, 30_000);
});

describe('names with newlines', () => {
  it('cannot forge lines of the human output: one "== " header per result, one error line per failure', async () => {
    const folder = join(dir, 'newlines');
    mkdirSync(folder);
    copyFileSync(GOOD, join(folder, 'a.png'));
    copyFileSync(GOOD, join(folder, 'b\n== forged.png'));
    writeFileSync(join(folder, 'c\nxpkg: error E_FORGED: d.png'), 'not an image');
    const r = await run(['-i', folder]);
    expect(r.status).toBe(EXIT.runner);
    expect(r.stdout.split('\n').filter((l) => l.startsWith('== '))).toHaveLength(2);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('xpkg: error '))).toHaveLength(1);
  }, 30_000);
});

describe('--annotate never replaces what is not a regular file, and never writes one picture for two inputs', () => {
  it('onto a named pipe: E_USAGE (exit 2), the pipe is still a pipe', async () => {
    const fifo = join(dir, 'annotate-pipe.png');
    mkfifo(fifo);
    const r = await run(['-i', GOOD, '--annotate', fifo, '--json'], 20_000);
    expect(r.status).toBe(EXIT.usage);
    expect(r.lines[0].error.code).toBe('E_USAGE');
    expect(lstatSync(fifo).isFIFO()).toBe(true);
  }, 30_000);

  it.runIf(process.getuid?.() === 0)(
    'onto a character device (as root, a copy of /dev/null): E_USAGE, the device stays',
    async () => {
      const dev = join(dir, 'null-device');
      expect(spawnSync('mknod', [dev, 'c', '1', '3']).status).toBe(0);
      const r = await run(['-i', GOOD, '--annotate', dev, '--json'], 20_000);
      expect(r.status).toBe(EXIT.usage);
      expect(r.lines[0].error.code).toBe('E_USAGE');
      expect(lstatSync(dev).isCharacterDevice()).toBe(true);
    },
    30_000,
  );

  it('a.png, a.jpg and a-2.png into one folder: three pictures, three names', async () => {
    const folder = join(dir, 'collide');
    mkdirSync(folder);
    copyFileSync(GOOD, join(folder, 'a.png'));
    copyFileSync(GOOD, join(folder, 'a-2.png'));
    await sharp(GOOD).jpeg().toFile(join(folder, 'a.jpg'));
    const out = join(dir, 'collide-out');
    const r = await run(['-i', folder, '--annotate', out, '--json']);
    expect(r.status).toBe(0);
    const pictures = r.lines.map((l) => l.result.annotated as string);
    expect(pictures).toHaveLength(3);
    expect(new Set(pictures).size).toBe(3);
  }, 30_000);
});

describe('an SVG is refused as an image input: it is drawn by a program, not decoded', () => {
  it('200 bytes of filters that would keep a core busy for minutes: E_RUN_INPUT_FORMAT (exit 30) at once, the next input still runs', async () => {
    const svg = join(dir, 'filters.svg');
    writeFileSync(
      svg,
      '<svg xmlns="http://www.w3.org/2000/svg" width="9000" height="9000"><filter id="f"><feGaussianBlur stdDeviation="3000"/>' +
        '<feMorphology radius="3000"/></filter><rect width="9000" height="9000" fill="red" filter="url(#f)"/></svg>',
    );
    const r = await run(['-i', svg, '-i', GOOD, '--json'], 20_000);
    expect(r.status).toBe(EXIT.runner);
    expect(r.lines.map((l) => (l.error ? [l.error.code, l.error.detail.reason] : 'ok'))).toEqual([
      ['E_RUN_INPUT_FORMAT', 'vector'],
      'ok',
    ]);
  }, 30_000);

  it('the library (decode, annotate), given an SVG by path that references the files beside it: refused, nothing beside it is drawn', async () => {
    const folder = join(dir, 'svg');
    mkdirSync(folder);
    await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 255, g: 0, b: 0 } } })
      .png()
      .toFile(join(folder, 'secret.png'));
    const svg = join(folder, 'page.svg');
    writeFileSync(
      svg,
      '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="8" height="8">' +
        '<image xlink:href="secret.png" href="secret.png" width="8" height="8"/></svg>',
    );
    const svgOf = (value: string | Buffer) =>
      annotate(value, { outputs: [] } as unknown as Manifest, {}).then(
        () => null,
        (err) => err,
      );
    for (const value of [svg, readFileSync(svg)]) {
      expect((await svgOf(value))?.code).toBe('E_RUN_INPUT_FORMAT');
      const e = await decodeHere(value, 3, [255], DEFAULT_BUDGET).then(
        () => null,
        (err) => err,
      );
      expect([e?.code, e?.detail?.reason]).toEqual(['E_RUN_INPUT_FORMAT', 'vector']);
    }
  }, 20_000);
});

describe('an image file given to a tensor input', () => {
  it('is E_RUN_INPUT_FORMAT (encoded), not read as raw float32 values; the .npy beside it still runs', async () => {
    const png = readFileSync(GOOD);
    // with an Exif tag, cut to whole float32 values; and whole, as libvips writes it (no JFIF, no Exif)
    const exif = await sharp(GOOD).jpeg().withMetadata({ orientation: 1 }).toBuffer();
    let whole = Buffer.alloc(1);
    for (let q = 80; q <= 100 && whole.length % 4 !== 0; q++) whole = await sharp(GOOD).jpeg({ quality: q }).toBuffer();
    expect(whole.length % 4).toBe(0);
    const files = [
      ['x.png', png],
      ['y.jpg', exif],
      ['z.jpg', whole],
    ].map(([name, b]) => {
      const path = join(dir, name as string);
      const bytes = b as Buffer;
      writeFileSync(path, bytes.subarray(0, bytes.length - (bytes.length % 4))); // whole float32 values
      return path;
    });
    const npy = join(dir, 'ok.npy');
    const header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
    const h = Buffer.from(`${header}${' '.repeat(64 - ((10 + header.length + 1) % 64))}\n`, 'latin1');
    const len = Buffer.alloc(2);
    len.writeUInt16LE(h.length);
    writeFileSync(npy, Buffer.concat([Buffer.from('\x93NUMPY\x01\x00', 'latin1'), len, h, Buffer.alloc(8)]));
    const r = await xpkgAsync([
      'run',
      'fixtures/dist/multi-variant.xpkg',
      '--trust',
      'fixtures/keys/test.pub',
      ...files.flatMap((f) => ['-i', f]),
      '-i',
      npy,
      '--json',
    ]);
    expect(r.lines.map((l) => (l.error ? [l.error.code, l.error.detail.reason] : 'ok'))).toEqual([
      ['E_RUN_INPUT_FORMAT', 'encoded'],
      ['E_RUN_INPUT_FORMAT', 'encoded'],
      ['E_RUN_INPUT_FORMAT', 'encoded'],
      'ok',
    ]);
    expect(r.status).toBe(EXIT.runner);
  }, 30_000);
});

describe('a text or JSON input longer than one JavaScript string', () => {
  it('is E_RUN_INPUT (too-large), not "invalid UTF-8"', async () => {
    // not filled: refused by its length before a byte is decoded
    const big = Buffer.allocUnsafe(TEXT_MAX_BYTES + 1);
    for (const type of ['text', 'json', 'mask'] as const) {
      const e = await inputFromBytes({ name: 'x', type }, big, 'big.txt').then(
        () => null,
        (err) => err,
      );
      expect([e?.code, e?.detail?.reason]).toEqual(['E_RUN_INPUT', 'too-large']);
    }
  }, 60_000);
});
