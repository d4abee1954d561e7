/**
 * Terminal output injection (spec/terminal.ts): a package's own strings (name, description,
 * license, …) and names given on the command line reach human output with their escape sequences, carriage returns and
 * bidi overrides neutralised; `--json` keeps the true strings. Through the real CLI.
 */
import { spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../spec/errors.js';
import { xpkg } from './helpers/cli.js';
import { baseManifest, tempDir, writeSource } from './helpers/source.js';

const LICENSE = 'MIT\u001b[31m RED\u001b[0m';
const DESCRIPTION = 'about \u001b]0;pwned\u0007 \r fake line \u202egnp.exe \u0085\u2028x\u009b2J';
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding raw controls is the point
const RAW = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

let dir: string;
let pkg: string;
beforeAll(() => {
  dir = tempDir('xpkg-terminal-');
  const src = writeSource({}, baseManifest({ license: LICENSE, description: DESCRIPTION }), join(dir, 'src'));
  pkg = join(dir, 'hostile.xpkg');
  const r = xpkg(['pack', src, '-o', pkg, '--json']);
  expect(r.status).toBe(0);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('human output never carries a package string raw to the terminal', () => {
  it('inspect: escaped in human output, true strings in --json', () => {
    const human = xpkg(['inspect', pkg]);
    expect(human.status).toBe(0);
    expect(human.stdout).not.toMatch(RAW);
    expect(human.stdout).toContain('\\u001b[31m');
    const json = xpkg(['inspect', pkg, '--json']);
    expect(json.status).toBe(0);
    expect(json.json?.result.license).toBe(LICENSE);
    expect(json.json?.result.description).toBe(DESCRIPTION);
  });

  it('inspect: a newline in a one-line field cannot forge a line of the report', () => {
    const forged = 'MIT\n  signature present, verified by the vendor';
    const m = baseManifest({ license: forged, description: 'a\nb' });
    const variant = (m.models as { variants: Record<string, unknown>[] }[])[0].variants[0];
    variant.requires = { runtimeVersion: '>=1\n  signature present, verified' };
    const src = writeSource({}, m, join(dir, 'forge'));
    const out = join(dir, 'forge.xpkg');
    expect(xpkg(['pack', src, '-o', out, '--json']).status).toBe(0);
    const human = xpkg(['inspect', out]);
    expect(human.status).toBe(0);
    const lines = human.stdout.split('\n');
    expect(lines.filter((l) => l.startsWith('  signature'))).toEqual(['  signature none']);
    expect(lines.some((l) => l === 'b')).toBe(false);
    expect(xpkg(['inspect', out, '--json']).json?.result.license).toBe(forged);
  });

  it('verify and explain: no raw control in human output', () => {
    const v = xpkg(['verify', pkg, '--allow-unsigned']);
    expect(v.status).toBe(0);
    expect(v.stdout + v.stderr).not.toMatch(RAW);
    const e = xpkg(['explain', pkg]);
    expect(e.status).toBe(0);
    expect(e.stdout + e.stderr).not.toMatch(RAW);
  });

  it('an error naming a hostile path on the command line is escaped on stderr, not in --json', () => {
    const name = join(dir, 'no\u001b]0;x\u0007such\r\nxpkg: error E_FORGED: .xpkg');
    const human = xpkg(['inspect', name]);
    expect(human.status).toBe(EXIT.io);
    expect(human.stderr).not.toMatch(RAW);
    expect(human.stderr.trimEnd().split('\n')).toHaveLength(1);
    const json = xpkg(['inspect', name, '--json']);
    expect(json.status).toBe(EXIT.io);
    expect(json.json?.error?.code).toBe('E_NOT_FOUND');
    expect(json.json?.error?.summary).toContain(name);
  });
});

const hasScript = spawnSync('script', ['--version']).status === 0;
describe.skipIf(!hasScript)('progress on a terminal', () => {
  it('the progress line escapes the output name it shows', async () => {
    const { CI: _ci, ...env } = process.env;
    const src = writeSource({}, baseManifest(), join(dir, 'progress'));
    const out = join(dir, 'p\u001b[2Jx.xpkg');
    const cmd = [process.execPath, resolve('bin/xpkg.js'), 'pack', src, '-o', out];
    const r = await new Promise<string>((done) => {
      let text = '';
      const child = spawn('script', ['-qec', cmd.map((a) => `'${a}'`).join(' '), '/dev/null'], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout.setEncoding('utf8').on('data', (d: string) => (text += d));
      child.on('close', () => done(text));
    });
    expect(r).toContain('100%');
    expect(r).not.toContain('\u001b[2J');
  });
});
