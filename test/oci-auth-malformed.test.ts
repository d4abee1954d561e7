/**
 * Malformed registry auth files (oci/auth.ts: REGISTRY_AUTH_FILE, containers/auth.json, Docker's
 * config.json): a file that is not the format is skipped for the next one, a value of another type
 * than a string is no credential, and a device or a huge file is not read without bound. Never a
 * throw (a pull then asks the registry without credentials and reports what it says).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AUTH_FILE_MAX, findCredentials } from '../oci/auth.js';

const home = mkdtempSync(join(tmpdir(), 'xpkg-auth-malformed-'));
afterAll(() => rmSync(home, { recursive: true, force: true }));
mkdirSync(join(home, 'docker'));

const good = { auths: { 'ghcr.io': { auth: Buffer.from('user:token').toString('base64') } } };
/** Credentials for ghcr.io/acme/m with REGISTRY_AUTH_FILE holding `first` and Docker's config the good entry. */
function lookup(first: string | Uint8Array | null, path = join(home, 'first.json')) {
  if (first !== null) writeFileSync(path, first);
  writeFileSync(join(home, 'docker', 'config.json'), JSON.stringify(good));
  const env = { HOME: home, DOCKER_CONFIG: join(home, 'docker'), REGISTRY_AUTH_FILE: path, XDG_CONFIG_HOME: home };
  return findCredentials('ghcr.io', 'acme/m', env);
}
const found = { username: 'user', password: 'token' };

describe('auth files that are not the format: skipped for the next file', () => {
  it.each([
    ['not JSON', '{"auths": '],
    ['JSON null', 'null'],
    ['auths a string', '{"auths": "ghcr.io"}'],
    ['auths a number', '{"auths": 5}'],
    ['auths an array', '{"auths": [{"auth": "x"}]}'],
    ['binary', new Uint8Array([0xff, 0xfe, 0, 1])],
  ])('%s', (_what, text) => {
    expect(lookup(text)).toEqual(found);
  });

  it('a device (/dev/zero never ends) is skipped at once', () => {
    const t0 = performance.now();
    expect(lookup(null, '/dev/zero')).toEqual(found);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('a file over AUTH_FILE_MAX is skipped, unread', () => {
    const other = { auths: { 'ghcr.io': { auth: Buffer.from('other:secret').toString('base64') } } };
    expect(lookup(JSON.stringify(other) + ' '.repeat(AUTH_FILE_MAX), join(home, 'big.json'))).toEqual(found);
  });
});

describe('entries whose values are not strings: no credential, no throw (Buffer.from(5) threw a TypeError)', () => {
  it.each([
    ['auth a number', { auth: 5 }],
    ['auth an object', { auth: { length: 3 } }],
    ['auth an array', { auth: ['dXNlcjp0b2tlbg=='] }],
    ['username and password numbers', { username: 1, password: 2 }],
    ['username an object', { username: { toString: 1 }, password: 'p' }],
    ['the entry null', null],
    ['the entry a string', 'dXNlcjp0b2tlbg=='],
  ])('%s', (_what, entry) => {
    // only this file: nothing to fall back on
    writeFileSync(join(home, 'only.json'), JSON.stringify({ auths: { 'ghcr.io': entry } }));
    const env = { HOME: home, DOCKER_CONFIG: join(home, 'none'), REGISTRY_AUTH_FILE: join(home, 'only.json') };
    expect(findCredentials('ghcr.io', 'acme/m', { ...env, XDG_CONFIG_HOME: join(home, 'none') })).toBeNull();
  });
});
