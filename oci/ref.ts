/**
 * References to packages in OCI registries (spec/OCI.md §5): `[oci://]host[:port]/repo[:tag][@sha256:…]`,
 * or a short name (`detector:1`) resolved through the default registry `XPKG_REGISTRY`
 * (`host[:port][/namespace]`). Pure parsing; nothing here touches the network.
 */
import { existsSync } from 'node:fs';
import { OciError } from '../spec/errors.js';

export interface Reference {
  /** `host[:port]` as written (lower case). */
  registry: string;
  repository: string;
  tag?: string;
  /** `sha256:<hex>` when the reference pins a manifest. */
  digest?: string;
}

export const SCHEME = 'oci://';
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
export const DIGEST = /^sha256:[a-f0-9]{64}$/;
const HOST =
  /^(?:localhost|\[[0-9a-f:]+\]|[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*)(?::[0-9]{1,5})?$/i;

const bad = (ref: string, why: string) =>
  new OciError('E_OCI_REFERENCE', `${JSON.stringify(ref)} is not a package reference: ${why}`, { reference: ref });

/** A registry host is the first component when it has a dot, a port, or is localhost (Docker's rule). */
const isRegistryHost = (s: string) => HOST.test(s) && (s.includes('.') || s.includes(':') || s === 'localhost');

/** The default registry (and namespace) short names resolve through, or null when none is configured. */
export function defaultRegistry(env: NodeJS.ProcessEnv = process.env): string | null {
  const v = env.XPKG_REGISTRY?.trim()
    .replace(/^oci:\/\//, '')
    .replace(/\/+$/, '');
  return v ? v : null;
}

export function parseReference(input: string, env: NodeJS.ProcessEnv = process.env): Reference {
  let rest = input.startsWith(SCHEME) ? input.slice(SCHEME.length) : input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad(input, 'a digest is sha256: and 64 lower-case hex digits');
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(input, `tag ${JSON.stringify(tag)} is not [A-Za-z0-9_][A-Za-z0-9._-]{0,127}`);
  }
  let parts = rest.split('/');
  let registry: string;
  if (parts.length > 1 && isRegistryHost(parts[0])) {
    registry = parts[0].toLowerCase();
    parts = parts.slice(1);
  } else {
    const base = defaultRegistry(env);
    if (!base)
      throw bad(input, 'no registry host, and no default registry (set XPKG_REGISTRY=host[:port][/namespace])');
    const [host, ...ns] = base.split('/');
    if (!isRegistryHost(host)) throw bad(base, 'XPKG_REGISTRY does not start with a registry host');
    registry = host.toLowerCase();
    parts = [...ns, ...parts];
  }
  if (parts.length === 0 || !parts.every((p) => COMPONENT.test(p)))
    throw bad(input, 'repository path components are lower-case letters and digits joined by . _ __ or -');
  // Docker Hub's official images live under library/ (`docker.io/alpine` is `library/alpine`).
  if (DOCKER_HUB.has(registry)) registry = 'docker.io';
  if (registry === 'docker.io' && parts.length === 1) parts = ['library', ...parts];
  const repository = parts.join('/');
  if (repository.length > 255) throw bad(input, 'repository name longer than 255 characters');
  return { registry, repository, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** What a manifest request names: the digest when pinned, else the tag (default `latest`). */
export const manifestRef = (r: Reference) => r.digest ?? r.tag ?? 'latest';

export function formatReference(r: Reference): string {
  return `${r.registry}/${r.repository}${r.tag ? `:${r.tag}` : ''}${r.digest ? `@${r.digest}` : ''}`;
}

/**
 * Whether a `run`/`Runner.open` argument names a reference rather than a file: `oci://…` always; a
 * short name only when no such file exists and a default registry is configured.
 */
export function isReference(target: string, env: NodeJS.ProcessEnv = process.env): boolean {
  if (target.startsWith(SCHEME)) return true;
  if (!defaultRegistry(env) || existsSync(target) || /\.xpkg$/i.test(target) || target.startsWith('.')) return false;
  return /^[a-z0-9][a-z0-9._/-]*(?::[A-Za-z0-9_][A-Za-z0-9._-]*)?(?:@sha256:[a-f0-9]{64})?$/.test(target);
}

/** Names of Docker Hub; its API is served from registry-1.docker.io, not from the name itself. */
export const DOCKER_HUB = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** Loopback registries speak plain HTTP, as Docker allows; others HTTPS unless listed in XPKG_INSECURE_REGISTRIES. */
export function registryBaseUrl(registry: string, env: NodeJS.ProcessEnv = process.env): string {
  const host = registry.replace(/:[0-9]+$/, '');
  const insecure = (env.XPKG_INSECURE_REGISTRIES ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  const plain =
    host === 'localhost' ||
    /^127\./.test(host) ||
    host === '[::1]' ||
    insecure.includes(registry) ||
    insecure.includes(host);
  if (DOCKER_HUB.has(registry)) return 'https://registry-1.docker.io';
  return `${plain ? 'http' : 'https'}://${registry}`;
}
