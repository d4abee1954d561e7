/**
 * Malformed host profiles (runner/host-profile.ts; `--host <json|file>`, XPKG_HOST): every one is
 * refused with E_HOST_PROFILE, never a crash, and a file that never ends (/dev/zero), a huge file
 * or a named pipe nobody writes is refused at once, never read without bound or waited on forever.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HOST_PROFILE_MAX_BYTES, loadHostProfile } from '../runner/host-profile.js';
import { EXIT, RunnerError } from '../spec/errors.js';
import { syncCodeOf } from './helpers/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'xpkg-host-malformed-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The parts of a profile the cases edit. */
interface Profile {
  cpu: Record<string, unknown>;
  gpus: Record<string, unknown>[];
  runtimes: Record<string, unknown>;
  [key: string]: unknown;
}
const good = JSON.parse(readFileSync('fixtures/hosts/rtx4090.json', 'utf8')) as Profile;
const text = (o: unknown) => JSON.stringify(o);
const code = (input: string | object) => syncCodeOf(() => loadHostProfile(input), RunnerError);

/** The built CLI, bounded in time: a hang is a failure (status null), not a stuck test. */
function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [resolve('bin/xpkg.js'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 20_000,
    maxBuffer: 1 << 20,
  });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  let json: { error?: { code: string } } | null = null;
  try {
    json = JSON.parse(last);
  } catch {}
  return { status: r.status, code: json?.error?.code ?? null };
}

describe('profile text', () => {
  it('the fixture itself loads (the cases below differ from it in one place)', () => {
    expect(code(text(good))).toBeNull();
  });

  it.each([
    ['not JSON', '{"format": '],
    ['trailing garbage', `${text(good)} x`],
    ['a duplicate key', '{"format":"xpkg-host/1","format":"xpkg-host/1"}'],
    ['a byte-order mark', '\ufeff{}'],
    ['nesting without end', `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`],
    ['a format that is an array', '{"format": []}'],
    ['a number beyond float64', text(good).replace(/"memoryMiB":\s*\d+/, '"memoryMiB": 1e400')],
  ])('%s: E_HOST_PROFILE', (_what, input) => {
    expect(code(input)).toBe('E_HOST_PROFILE');
  });

  it.each([
    ['__proto__ at the top', (o: Profile) => ({ ...o, ['__proto__']: { polluted: true } })],
    ['constructor at the top', (o: Profile) => ({ ...o, constructor: { prototype: {} } })],
    ['__proto__ in cpu', (o: Profile) => ({ ...o, cpu: { ...o.cpu, ['__proto__']: { logicalCores: 1 } } })],
    [
      'a runtime named __proto__',
      (o: Profile) => ({ ...o, runtimes: { ...o.runtimes, ['__proto__']: { available: true } } }),
    ],
    // names that are no runtime names were not checked at all: `xpkg host` then read null's `available`
    ['a runtime of another name that is null', (o: Profile) => ({ ...o, runtimes: { ...o.runtimes, 'X Y': null } })],
    ['a runtime of another name that is a number', (o: Profile) => ({ ...o, runtimes: { ...o.runtimes, ONNX: 5 } })],
    ['memory as a string', (o: Profile) => ({ ...o, memoryMiB: '1024' })],
    ['negative memory', (o: Profile) => ({ ...o, memoryMiB: -1 })],
    ['fractional cores', (o: Profile) => ({ ...o, cpu: { ...o.cpu, logicalCores: 1.5 } })],
    ['cores beyond any machine', (o: Profile) => ({ ...o, cpu: { ...o.cpu, logicalCores: 2 ** 53 } })],
    ['features as a string', (o: Profile) => ({ ...o, cpu: { ...o.cpu, features: 'avx2' } })],
    ['features as an array-like object', (o: Profile) => ({ ...o, cpu: { ...o.cpu, features: { length: 1e9 } } })],
    ['cpu as an array', (o: Profile) => ({ ...o, cpu: [] })],
    ['gpus as an object', (o: Profile) => ({ ...o, gpus: { 0: {} } })],
    ['too many gpus', (o: Profile) => ({ ...o, gpus: Array.from({ length: 65 }, () => o.gpus[0]) })],
    [
      'a device name of 10 000 characters',
      (o: Profile) => ({ ...o, gpus: [{ ...o.gpus[0], name: 'x'.repeat(10_000) }] }),
    ],
    ['memory of 1e300 MiB (an integer to JSON)', (o: Profile) => ({ ...o, memoryMiB: 1e300 })],
    ['GPU memory past any device', (o: Profile) => ({ ...o, gpus: [{ ...o.gpus[0], memoryMiB: 2 ** 53 }] })],
    // what the schema cannot say: counts past the CPUs there are, memory above its own cgroup limit
    ['more physical cores than logical', (o: Profile) => ({ ...o, cpu: { ...o.cpu, physicalCores: 64 } })],
    ['more default threads than CPUs', (o: Profile) => ({ ...o, limits: { threads: 65536 } })],
    [
      'an affinity mask of more CPUs than there are',
      (o: Profile) => ({ ...o, limits: { cpusAllowed: 33, threads: 1 } }),
    ],
    ['a CPU quota of more CPUs than there are', (o: Profile) => ({ ...o, limits: { cpuQuota: 1e4, threads: 1 } })],
    [
      "the machine's memory above its cgroup limit",
      (o: Profile) => ({ ...o, memoryMiB: 65536, limits: { memoryMiB: 2048, threads: 2 } }),
    ],
    ['another format', (o: Profile) => ({ ...o, format: 'xpkg-host/2' })],
    ['no format', ({ format: _f, ...o }: Profile) => o],
  ])('%s: E_HOST_PROFILE', (_what, edit) => {
    // through the text (the strict JSON reader keeps `__proto__` a plain key) and as a value
    const bad = edit(structuredClone(good));
    expect(code(text(bad))).toBe('E_HOST_PROFILE');
    expect(code(bad)).toBe('E_HOST_PROFILE');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('values that are no object at all: E_HOST_PROFILE', () => {
    for (const v of [null, [], 7, 'x', true]) expect(code(v as never)).toBe('E_HOST_PROFILE');
  });
});

describe('profile files', () => {
  it('a file of at most HOST_PROFILE_MAX_BYTES loads; one byte more is E_HOST_PROFILE, unread', () => {
    const body = text(good);
    const fits = join(dir, 'fits.json');
    writeFileSync(fits, body + ' '.repeat(HOST_PROFILE_MAX_BYTES - Buffer.byteLength(body)));
    expect(code(fits)).toBeNull();
    const over = join(dir, 'over.json');
    writeFileSync(over, body + ' '.repeat(HOST_PROFILE_MAX_BYTES + 1 - Buffer.byteLength(body)));
    expect(code(over)).toBe('E_HOST_PROFILE');
  });

  it('a file that is not UTF-8 JSON, an empty file, a folder: E_HOST_PROFILE', () => {
    const bin = join(dir, 'bin.json');
    writeFileSync(bin, Buffer.from([0x7b, 0xff, 0xfe, 0x7d]));
    const empty = join(dir, 'empty.json');
    writeFileSync(empty, '');
    for (const p of [bin, empty, dir]) expect(code(p)).toBe('E_HOST_PROFILE');
  });

  it('a device (/dev/zero never ends) is E_HOST_PROFILE at once', () => {
    const t0 = performance.now();
    expect(code('/dev/zero')).toBe('E_HOST_PROFILE');
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('a named pipe nobody writes is E_HOST_PROFILE, not a wait for a writer', () => {
    const fifo = join(dir, 'fifo.json');
    if (spawnSync('mkfifo', [fifo]).status !== 0) return; // no mkfifo here
    expect(code(fifo)).toBe('E_HOST_PROFILE');
  });
});

describe('through the xpkg process', () => {
  it('--host /dev/zero (host and explain) and XPKG_HOST=/dev/zero: E_HOST_PROFILE, promptly', () => {
    for (const r of [
      cli(['host', '--host', '/dev/zero', '--json']),
      cli(['explain', 'fixtures/dist/detector.xpkg', '--host', '/dev/zero', '--json']),
      cli(['host', '--json'], { XPKG_HOST: '/dev/zero' }),
    ])
      expect(r.code).toBe('E_HOST_PROFILE');
  });

  it('a runtime whose name is no runtime name: E_HOST_PROFILE from host and explain (was E_INTERNAL)', () => {
    const odd = join(dir, 'odd-runtime.json');
    writeFileSync(odd, text({ ...good, runtimes: { ...good.runtimes, 'X Y': null } }));
    expect(cli(['host', '--host', odd, '--json']).code).toBe('E_HOST_PROFILE');
    expect(cli(['host', '--host', odd]).status).toBe(cli(['host', '--host', odd, '--json']).status);
    expect(cli(['explain', 'fixtures/dist/detector.xpkg', '--host', odd, '--json']).code).toBe('E_HOST_PROFILE');
  });

  it('a profile that contradicts itself: E_HOST_PROFILE with its exit status, from host and explain', () => {
    const odd = join(dir, 'contradicts.json');
    writeFileSync(odd, text({ ...good, memoryMiB: 65536, limits: { memoryMiB: 2048, threads: 2 } }));
    for (const r of [
      cli(['host', '--host', odd, '--json']),
      cli(['host', '--host', odd]),
      cli(['explain', 'fixtures/dist/detector.xpkg', '--host', odd, '--json']),
    ])
      expect(r.status).toBe(EXIT.host);
    expect(cli(['host', '--host', odd, '--json']).code).toBe('E_HOST_PROFILE');
  });

  it('--host with a file over the limit: E_HOST_PROFILE', () => {
    const big = join(dir, 'big.json');
    writeFileSync(big, Buffer.alloc(HOST_PROFILE_MAX_BYTES * 4, 0x20));
    expect(cli(['host', '--host', big, '--json']).code).toBe('E_HOST_PROFILE');
  });
});
