import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { EXIT } from '../spec/errors.js';
import { xpkg } from './helpers/cli.js';
import { tempDir, writeSource } from './helpers/source.js';

// Every test here starts CLI processes (about 1–5 s each on a loaded two-core machine).
vi.setConfig({ testTimeout: 240_000 });

/** Each test packs its own package in its own temp folder: no test depends on another's files. */
function packed(): string {
  const src = writeSource({ 'models/net.onnx': Buffer.alloc(70_000, 3) });
  const out = join(tempDir(), 'demo.xpkg');
  const r = xpkg(['pack', src, '-o', out]);
  if (r.status !== 0) throw new Error(`pack failed: ${r.stderr}`);
  return out;
}

describe('xpkg CLI (pack / inspect / verify / unpack)', () => {
  it('pack --json prints one result document and writes the package', () => {
    const src = writeSource({ 'models/net.onnx': Buffer.alloc(70_000, 3) });
    const out = join(tempDir(), 'demo.xpkg');
    const r = xpkg(['pack', src, '-o', out, '--json']);
    expect(r.status).toBe(0);
    expect(r.json!.result.id).toMatch(/^[0-9a-f]{64}$/);
    expect(r.json!.result.files).toBe(2);
    expect(xpkg(['verify', out, '--allow-unsigned']).status).toBe(0);
  });
  it('inspect shows name, variants and signature status', () => {
    const out = packed();
    const r = xpkg(['inspect', out, '--json']);
    expect(r.status).toBe(0);
    expect(r.json!.result.name).toBe('demo');
    expect(r.json!.result.models[0].variants[0].id).toBe('cpu-fp32');
    expect(r.json!.result.signatures.status).toBe('unsigned');
    const human = xpkg(['inspect', out]);
    expect(human.stdout).toContain('demo@1.0.0');
    expect(human.stdout).toContain('[aligned]');
  });
  it('verify --allow-unsigned passes an intact package and fails a damaged one with its code and exit status', () => {
    const out = packed();
    expect(xpkg(['verify', out, '--allow-unsigned']).status).toBe(0);
    const bad = join(tempDir(), 'bad.xpkg');
    const bytes = readFileSync(out);
    bytes[70_000] ^= 0xff; // inside the aligned model data
    writeFileSync(bad, bytes);
    const r = xpkg(['verify', bad, '--allow-unsigned', '--json']);
    expect(r.json!.error!.code).toBe('E_DIGEST_MISMATCH');
    expect(r.status).toBe(EXIT.integrity);
  });
  it('verify without trust or --allow-unsigned refuses an unsigned package', () => {
    const out = packed();
    const r = xpkg(['verify', out, '--json']);
    expect(r.json!.error!.code).toBe('E_SIG_MISSING');
    expect(r.status).toBe(EXIT.signature);
  });
  it('unpack extracts verified files and a source manifest that packs back to the same bytes', () => {
    const out = packed();
    const dest = join(tempDir(), 'x');
    const r = xpkg(['unpack', out, '-o', dest, '--json']);
    expect(r.status).toBe(0);
    expect(readFileSync(join(dest, 'assets/labels.txt'), 'utf8')).toBe('cat\ndog\n');
    const again = join(tempDir(), 'again.xpkg');
    expect(xpkg(['pack', dest, '-o', again]).status).toBe(0);
    expect(readFileSync(again).equals(readFileSync(out))).toBe(true);
    expect(xpkg(['unpack', out, '-o', dest, '--json']).json!.error!.code).toBe('E_UNPACK_EXISTS');
  });
  it('usage errors and missing files have their own codes and statuses', () => {
    const u = xpkg(['frobnicate', '--json']);
    expect(u.status).toBe(EXIT.usage);
    expect(u.json!.error!.code).toBe('E_USAGE');
    const n = xpkg(['verify', join(tempDir(), 'missing.xpkg'), '--json']);
    expect(n.json!.error!.code).toBe('E_NOT_FOUND');
    expect(n.status).toBe(EXIT.io);
    const notZip = join(tempDir(), 'n.xpkg');
    writeFileSync(notZip, 'hello, this is plainly not a zip archive at all');
    expect(xpkg(['inspect', notZip, '--json']).json!.error!.code).toBe('E_ARCHIVE_NO_END');
  });
});
