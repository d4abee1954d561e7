/** Runner.open → run on the real signed fixtures: verification first, typed results, tamper refusal. */
import { closeSync, copyFileSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { PackageReader } from '../pack/reader.js';
import { Runner } from '../runner/runner.js';
import { codeOf } from './helpers/errors.js';
import { cpuRecFile, cpuRecVariant } from './helpers/ocr-variants.js';
import { tempDir } from './helpers/source.js';

const OCR = 'fixtures/dist/paddleocr-v4.xpkg';
const ADD = 'fixtures/dist/multi-variant.xpkg';
const TRUST = ['fixtures/keys/test.pub'];
const state = () => tempDir('xpkg-state-');

async function textImage(lines: string[]): Promise<Buffer> {
  const h = 70 * lines.length + 40;
  const body = lines
    .map((l, i) => `<text x="24" y="${64 + i * 70}" font-family="DejaVu Sans" font-size="34">${l}</text>`)
    .join('');
  return sharp(
    Buffer.from(
      `<svg xmlns="http://www.w3.org/2000/svg" width="900" height="${h}"><rect width="100%" height="100%" fill="white"/>${body}</svg>`,
    ),
  )
    .png()
    .toBuffer();
}

describe('Runner', () => {
  it('runs the signed OCR package on an image given as a Buffer, a path and raw pixels, with the same result', async () => {
    await using runner = await Runner.open(OCR, { trust: TRUST, stateDir: state() });
    expect(runner.verification.signatures.status).toBe('verified');
    const png = await textImage(['Package once, run anywhere', 'Signed models 12345']);
    const r1 = await runner.run({ image: png });
    const texts = (r1.outputs.lines as { text: string }[]).map((l) => l.text);
    expect(texts).toEqual(['Package once, run anywhere', 'Signed models 12345']);
    expect(r1.variant).toEqual({ det: 'det-cpu-fp32', cls: 'cls-cpu-fp32', rec: await cpuRecVariant() });
    expect(Object.keys(r1.timings)).toEqual(
      expect.arrayContaining(['decode', 'pre', 'infer:det', 'infer:rec', 'post', 'total']),
    );
    const path = join(tempDir(), 'in.png');
    await sharp(png).toFile(path);
    const r2 = await runner.run({ image: path });
    expect(r2.outputs).toEqual(r1.outputs);
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    const r3 = await runner.run({
      image: { data, width: info.width, height: info.height, channels: info.channels as 3 | 4 },
    });
    expect((r3.outputs.lines as { text: string }[]).map((l) => l.text)).toEqual(texts);
  });

  it('refuses an unsigned or untrusted package before loading anything', async () => {
    expect(await codeOf(Runner.open(OCR, { stateDir: state() }))).toBe('E_TRUST_UNTRUSTED');
    const other = join(tempDir(), 'other.pub');
    const { generateKeyPair, formatPublicKey } = await import('../signing/index.js');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(other, formatPublicKey(generateKeyPair().publicKey));
    expect(await codeOf(Runner.open(OCR, { trust: [other], stateDir: state() }))).toBe('E_TRUST_UNTRUSTED');
  });

  it('never loads bytes it has not verified: a model changed after open is refused at load', async () => {
    const copy = join(tempDir(), 'ocr.xpkg');
    copyFileSync(OCR, copy);
    await using runner = await Runner.open(copy, { trust: TRUST, stateDir: state() });
    // Tamper in place (same inode, same open file) after verification, before the model is loaded.
    const reader = await PackageReader.open(OCR);
    const rec = reader.entry(await cpuRecFile())!;
    await reader.close();
    const fd = openSync(copy, 'r+');
    const orig = readFileSync(copy).subarray(rec.dataOffset + 1000, rec.dataOffset + 1001);
    writeSync(fd, Buffer.from([orig[0] ^ 0x55]), 0, 1, rec.dataOffset + 1000);
    closeSync(fd);
    expect(await codeOf(runner.run({ image: await textImage(['tamper']) }))).toBe('E_DIGEST_MISMATCH');
  });

  it('forced variants: unknown and unsupported fail clearly; a supported one runs', async () => {
    expect(await codeOf(Runner.open(ADD, { trust: TRUST, stateDir: state(), variant: 'nope' }))).toBe(
      'E_RUN_VARIANT_UNKNOWN',
    );
    expect(await codeOf(Runner.open(ADD, { trust: TRUST, stateDir: state(), variant: 'coreml-fp16' }))).toBe(
      'E_RUN_VARIANT_UNSUPPORTED',
    );
    await using runner = await Runner.open(ADD, { trust: TRUST, stateDir: state(), variant: 'cpu-fp32' });
    const r = await runner.run({ x: { type: 'float32', dims: [3], data: new Float32Array([1, 2, 3.5]) } });
    expect(r.variant).toEqual({ 'add-one': 'cpu-fp32' });
    expect(Array.from((r.outputs.y as { data: Float32Array }).data)).toEqual([2, 3, 4.5]);
  });

  it('selection uses an injected host profile', async () => {
    await using runner = await Runner.open(ADD, {
      trust: TRUST,
      stateDir: state(),
      host: 'fixtures/hosts/x64-no-avx.json',
    });
    const r = await runner.run({ x: { type: 'float32', dims: [1], data: new Float32Array([41]) } });
    expect(r.variant['add-one']).toBe('cpu-fp32');
    expect(Array.from((r.outputs.y as { data: Float32Array }).data)).toEqual([42]);
  });
});
