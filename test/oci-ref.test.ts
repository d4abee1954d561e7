/**
 * References and credentials for registries that cannot be reached from the tests (Docker Hub):
 * the names Docker uses map to the host that serves its API, and to the key Docker's own
 * config.json keeps its credentials under. Pure functions, no network.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findCredentials } from '../oci/auth.js';
import { formatReference, parseReference, registryBaseUrl } from '../oci/ref.js';
import { OciError } from '../spec/errors.js';
import { tempDir } from './helpers/source.js';

const codeOf = (f: () => unknown) => {
  try {
    f();
    return null;
  } catch (e) {
    return e instanceof OciError ? e.code : String(e);
  }
};

describe('Docker Hub references', () => {
  it('docker.io, index.docker.io and registry-1.docker.io are one registry, served from registry-1.docker.io', () => {
    for (const host of ['docker.io', 'index.docker.io', 'registry-1.docker.io']) {
      const r = parseReference(`${host}/acme/detector:1`, {});
      expect(r).toEqual({ registry: 'docker.io', repository: 'acme/detector', tag: '1' });
      expect(registryBaseUrl(r.registry, {})).toBe('https://registry-1.docker.io');
    }
    // Official images: one path component means library/.
    expect(formatReference(parseReference('docker.io/alpine:3', {}))).toBe('docker.io/library/alpine:3');
  });

  it('credentials Docker keeps under https://index.docker.io/v1/ are found for docker.io', () => {
    const home = tempDir('xpkg-home-');
    mkdirSync(join(home, 'docker'));
    const auth = Buffer.from('hubuser:hubtoken').toString('base64');
    writeFileSync(
      join(home, 'docker', 'config.json'),
      JSON.stringify({ auths: { 'https://index.docker.io/v1/': { auth } } }),
    );
    const env = { HOME: home, DOCKER_CONFIG: join(home, 'docker') };
    expect(findCredentials('docker.io', 'acme/detector', env)).toEqual({ username: 'hubuser', password: 'hubtoken' });
    expect(findCredentials('ghcr.io', 'acme/detector', env)).toBeNull();
  });

  it('malformed references are E_OCI_REFERENCE', () => {
    for (const bad of ['127.0.0.1:5000/Models/x:1', '127.0.0.1:5000/x:bad tag', '127.0.0.1:5000/x@sha256:abc', 'x:1'])
      expect(
        codeOf(() => parseReference(bad, {})),
        bad,
      ).toBe('E_OCI_REFERENCE');
  });
});
