/**
 * Registry credentials from the files users already have (Podman's auth.json, Docker's config.json)
 * and the two challenge schemes registries use: Basic, and Bearer through a token server.
 * Credential helpers (`credsStore`, `credHelpers`) are not run.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { readTextFileSync } from '../platform/index.js';

export interface Credentials {
  username: string;
  password: string;
}

/** The largest auth file read (one holds a line per registry). */
export const AUTH_FILE_MAX = 4 << 20;

/** Auth files in the order Podman and skopeo read them, then Docker's. */
export function authFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  const home = env.HOME ?? homedir();
  const files: string[] = [];
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE);
  if (env.XDG_RUNTIME_DIR) files.push(join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  files.push(join(env.XDG_CONFIG_HOME ?? join(home, '.config'), 'containers', 'auth.json'));
  files.push(join(env.DOCKER_CONFIG ?? join(home, '.docker'), 'config.json'));
  return files;
}

/** `https://host:port/v1/` → `host:port`; `host/namespace` keeps its path (Podman scopes entries by repository). */
const normalizeKey = (key: string) =>
  key
    .replace(/^[a-z]+:\/\//i, '')
    .replace(/\/v[12]\/?$/, '')
    .replace(/\/+$/, '')
    .toLowerCase();

/**
 * Credentials for `registry/repository`: the most specific entry wins (`host/ns/repo` over `host`),
 * the first file that has one wins. Null when no file has any.
 */
export function findCredentials(
  registry: string,
  repository: string,
  env: NodeJS.ProcessEnv = process.env,
): Credentials | null {
  // Docker keeps Docker Hub's entry under https://index.docker.io/v1/; any of its names matches.
  const hub = (k: string) => k.replace(/^(?:index\.|registry-1\.)?docker\.io(?=\/|$)/, 'docker.io');
  const wanted = hub(`${registry}/${repository}`.toLowerCase());
  for (const file of authFiles(env)) {
    let auths: Record<string, { auth?: unknown; username?: unknown; password?: unknown } | null>;
    try {
      // at most AUTH_FILE_MAX bytes, never a device (REGISTRY_AUTH_FILE=/dev/zero was read without end)
      auths = (JSON.parse(readTextFileSync(file, AUTH_FILE_MAX)) as { auths?: typeof auths }).auths ?? {};
    } catch {
      continue; // absent or unreadable: the next file may have it
    }
    if (typeof auths !== 'object') continue;
    let best: { len: number; c: Credentials } | null = null;
    for (const [key, entry] of Object.entries(auths)) {
      const k = hub(normalizeKey(key));
      if (!(wanted === k || wanted.startsWith(`${k}/`))) continue;
      let c: Credentials | null = null;
      // a value of another type than the file format's string is no credential (Buffer.from(5) threw)
      if (typeof entry?.auth === 'string' && entry.auth) {
        const text = Buffer.from(entry.auth, 'base64').toString('utf8');
        const i = text.indexOf(':');
        if (i > 0) c = { username: text.slice(0, i), password: text.slice(i + 1) };
      } else if (
        typeof entry?.username === 'string' &&
        typeof entry.password === 'string' &&
        entry.username &&
        entry.password
      )
        c = { username: entry.username, password: entry.password };
      if (c && (!best || k.length > best.len)) best = { len: k.length, c };
    }
    if (best) return best.c;
  }
  return null;
}

export const basicHeader = (c: Credentials) =>
  `Basic ${Buffer.from(`${c.username}:${c.password}`, 'utf8').toString('base64')}`;

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/;

/**
 * Every challenge of a `WWW-Authenticate` value (RFC 9110 §11.6.1): several may share one header
 * (`Basic realm="x", Bearer realm="…"`, also what Node makes of repeated headers), schemes and
 * parameter names in any case, values quoted or not. Each challenge keeps only its own parameters.
 */
export function parseChallenges(header: string | undefined): Challenge[] {
  const s = header ?? '';
  const out: Challenge[] = [];
  let cur: Challenge | null = null;
  let i = 0;
  const skip = (chars: RegExp) => {
    while (i < s.length && chars.test(s[i])) i++;
  };
  while (i < s.length) {
    skip(/[\s,]/);
    const name = TOKEN.exec(s.slice(i))?.[0];
    if (!name) break; // unparsable rest: what came before still counts
    i += name.length;
    skip(/\s/);
    if (s[i] !== '=') {
      cur = { scheme: name.toLowerCase(), params: {} };
      out.push(cur);
      continue;
    }
    i++;
    skip(/\s/);
    let value = '';
    if (s[i] === '"') {
      for (i++; i < s.length && s[i] !== '"'; i++) value += s[i] === '\\' ? (s[++i] ?? '') : s[i];
      i++;
    } else {
      value = /^[^,\s]*/.exec(s.slice(i))![0];
      i += value.length;
    }
    if (cur) cur.params[name.toLowerCase()] = value;
  }
  return out;
}

/** The challenge to answer: Bearer with a realm when offered (it scopes access), else Basic, else the first. */
export function parseChallenge(header: string | undefined): Challenge | null {
  const all = parseChallenges(header);
  return (
    all.find((c) => c.scheme === 'bearer' && c.params.realm) ?? all.find((c) => c.scheme === 'basic') ?? all[0] ?? null
  );
}
