/**
 * A client for the OCI distribution API (spec/OCI.md §5): manifests, blobs with ranges, chunked
 * uploads, cross-repository mounts; Basic and Bearer (token server) auth from the user's auth files.
 * Node's own http/https with keep-alive: transfers stream between sockets and files, nothing is
 * held whole in memory but manifests.
 */
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { OciError } from '../spec/errors.js';
import { MANIFEST_ACCEPT, MEDIA, sha256 } from './artifact.js';
import { basicHeader, type Credentials, findCredentials, parseChallenge } from './auth.js';
import {
  backoff,
  failure,
  isRetryable,
  locationOf,
  OCTETS,
  readBody,
  refusedMethod,
  type Send,
  saidDigest,
  send,
  withDigest,
  withRetries,
} from './http.js';
import { DIGEST, registryBaseUrl } from './ref.js';

export { closeConnections, isRetryable, readBody, withRetries } from './http.js';

export interface RegistryOptions {
  env?: NodeJS.ProcessEnv;
  /** Attempts after the first for idempotent requests and transfers (default XPKG_OCI_RETRIES or 4). */
  retries?: number;
  /** Upload chunk size in bytes (default XPKG_OCI_CHUNK_BYTES or 64 MiB, at least 1 MiB); smaller blobs go up in one request. */
  chunkBytes?: number;
}

export type UploadOutcome = 'exists' | 'mounted' | 'uploaded';

export class Registry {
  readonly base: string;
  readonly retries: number;
  private readonly chunkBytes: number;
  private readonly env: NodeJS.ProcessEnv;
  /** Authorization header per scope set, once a challenge was answered. */
  private readonly auth = new Map<string, string>();

  constructor(
    readonly registry: string,
    options: RegistryOptions = {},
  ) {
    this.env = options.env ?? process.env;
    this.base = registryBaseUrl(registry, this.env);
    const r = options.retries ?? Number(this.env.XPKG_OCI_RETRIES ?? 4);
    this.retries = Number.isInteger(r) && r >= 0 ? r : 4;
    const chunk = options.chunkBytes ?? Number(this.env.XPKG_OCI_CHUNK_BYTES ?? 64 * 1024 * 1024);
    this.chunkBytes = Number.isSafeInteger(chunk) && chunk >= 1024 * 1024 ? chunk : 64 * 1024 * 1024;
  }

  private credentials(repo: string): Credentials | null {
    return findCredentials(this.registry, repo, this.env);
  }

  /**
   * One request with auth: sent with what answered this scope before; on 401 the challenge is
   * answered (Basic with stored credentials, or a token from the realm) and the request sent again.
   */
  async request(
    req: Omit<Send, 'url'> & { path: string; repo: string; push?: boolean; mountFrom?: string },
  ): Promise<IncomingMessage> {
    const scopes = [`repository:${req.repo}:${req.push ? 'pull,push' : 'pull'}`];
    if (req.mountFrom) scopes.push(`repository:${req.mountFrom}:pull`);
    const key = scopes.join(' ');
    const url = req.path.startsWith('http') ? req.path : `${this.base}${req.path}`;
    // Credentials go only to the registry itself, never to another host an upload Location names.
    const own = new URL(url).origin === new URL(this.base).origin;
    const go = (authorization?: string) =>
      send({ ...req, url, headers: { ...req.headers, ...(authorization && own ? { authorization } : {}) } });
    let res = await go(this.auth.get(key));
    if (res.statusCode !== 401) return res;
    // Another host's challenge is never answered: its realm would get the user's credentials.
    if (!own) throw await failure(res, `${req.method} ${new URL(url).host}${new URL(url).pathname}`);
    const challenge = parseChallenge(res.headers['www-authenticate']);
    res.resume();
    const creds = this.credentials(req.repo);
    let header: string;
    if (challenge?.scheme === 'basic') {
      if (!creds)
        throw new OciError(
          'E_OCI_AUTH',
          `${this.registry} asks for a user name and password; none found in the auth files`,
          {
            registry: this.registry,
          },
        );
      header = basicHeader(creds);
    } else if (challenge?.scheme === 'bearer' && challenge.params.realm) {
      header = `Bearer ${await this.token(challenge.params, scopes, creds)}`;
    } else
      throw new OciError('E_OCI_AUTH', `${this.registry} answered 401 without a usable challenge`, {
        registry: this.registry,
      });
    this.auth.set(key, header);
    res = await go(header);
    if (res.statusCode === 401) throw await failure(res, `${req.method} ${req.path}`);
    return res;
  }

  private async token(params: Record<string, string>, scopes: string[], creds: Credentials | null): Promise<string> {
    let u: URL;
    try {
      u = new URL(params.realm);
      if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error(u.protocol);
    } catch {
      throw new OciError('E_OCI_AUTH', `${this.registry} named a token realm that is not a URL`, {
        registry: this.registry,
        realm: params.realm.slice(0, 200),
      });
    }
    if (params.service) u.searchParams.set('service', params.service);
    for (const s of scopes) u.searchParams.append('scope', s);
    const res = await send({
      method: 'GET',
      url: u.toString(),
      headers: creds ? { authorization: basicHeader(creds) } : {},
    });
    if (res.statusCode !== 200) {
      const e = await failure(res, `token from ${u.host}`);
      throw new OciError('E_OCI_AUTH', `the token server refused: ${e.message}`, e.detail);
    }
    let body: { token?: unknown; access_token?: unknown } | null = null;
    try {
      body = JSON.parse((await readBody(res, 1024 * 1024)).toString('utf8'));
    } catch (e) {
      if (e instanceof OciError && e.code === 'E_OCI_NETWORK') throw e;
      // a login page or proxy error page instead of the token JSON
    }
    const token = body?.token ?? body?.access_token;
    if (typeof token !== 'string' || !token)
      throw new OciError('E_OCI_AUTH', `the token server at ${u.host} sent no token`, {
        realm: `${u.origin}${u.pathname}`,
      });
    return token;
  }

  /** The manifest bytes and their digest (checked against a pinned digest). */
  async getManifest(
    repo: string,
    reference: string,
    retries = this.retries,
  ): Promise<{ bytes: Buffer; digest: string }> {
    return withRetries(retries, async () => {
      const res = await this.request({
        method: 'GET',
        path: `/v2/${repo}/manifests/${reference}`,
        repo,
        // Every type a tag may hold: asked for OCI manifests only, distribution converts a Docker image
        // to schema 1 and answers an index with 404, which would hide what the tag really names.
        headers: { accept: MANIFEST_ACCEPT },
      });
      if (res.statusCode !== 200) throw await failure(res, `manifest ${repo}:${reference}`);
      // Over the limit is the manifest's fault, as when a layout holds it (E_OCI_MANIFEST there too).
      const bytes = await readBody(res).catch((e: OciError) => {
        throw e.code === 'E_OCI_REGISTRY'
          ? new OciError('E_OCI_MANIFEST', `manifest ${repo}:${reference}: ${e.message}`, e.detail)
          : e;
      });
      const digest = sha256(bytes);
      if (DIGEST.test(reference) && digest !== reference)
        throw new OciError('E_OCI_DIGEST', `manifest ${repo}@${reference} has digest ${digest}`, {
          expected: reference,
          actual: digest,
        });
      return { bytes, digest };
    });
  }

  async putManifest(repo: string, tag: string, bytes: Buffer): Promise<void> {
    await withRetries(this.retries, async () => {
      const res = await this.request({
        method: 'PUT',
        path: `/v2/${repo}/manifests/${tag}`,
        repo,
        push: true,
        headers: { 'content-type': MEDIA.ociManifest },
        body: bytes,
      });
      if (res.statusCode !== 201 && res.statusCode !== 200) throw await failure(res, `PUT manifest ${repo}:${tag}`);
      res.resume();
      saidDigest(res, sha256(bytes), `manifest ${repo}:${tag}`);
    });
  }

  /**
   * A blob's bytes from `offset` (a Range request). The offset actually served comes back: 0 when
   * the registry ignored the range. Redirects (blob storage behind the registry) are followed
   * without the registry's credentials.
   */
  async getBlob(
    repo: string,
    digest: string,
    offset = 0,
    size?: number,
  ): Promise<{ stream: IncomingMessage; offset: number }> {
    const range: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-` } : {};
    const res = await this.redirected(
      await this.request({ method: 'GET', path: `/v2/${repo}/blobs/${digest}`, repo, headers: range }),
      'GET',
      range,
    );
    // A blob of another length than its descriptor's can never match: said at once, not retried
    // as a transfer that broke off (the registry would send the same bytes again).
    const holds = (n: number) => {
      if (size === undefined || !Number.isSafeInteger(n) || n === size) return;
      res.destroy();
      throw new OciError('E_OCI_DIGEST', `blob ${digest} in ${repo} is ${n} bytes; its descriptor says ${size}`, {
        digest,
        size: n,
        expected: size,
      });
    };
    if (res.statusCode === 206) {
      const served = /bytes (\d+)-(?:\d+)?(?:\/(\d+))?/.exec(res.headers['content-range'] ?? '');
      holds(Number(served?.[2]));
      if (Number(served?.[1] ?? -1) === offset) return { stream: res, offset };
      res.destroy();
      return this.getBlob(repo, digest, 0, size);
    }
    if (res.statusCode === 416 && offset > 0) {
      res.resume();
      return this.getBlob(repo, digest, 0, size);
    }
    if (res.statusCode !== 200) throw await failure(res, `blob ${digest}`);
    if (res.headers['content-length'] !== undefined && !res.headers['content-encoding'])
      holds(Number(res.headers['content-length']));
    return { stream: res, offset: 0 };
  }

  /**
   * Follows a blob request's redirects (blob storage behind the registry), without the registry's
   * credentials: distribution on S3 or GCS redirects HEAD as well as GET.
   */
  private async redirected(
    res: IncomingMessage,
    method: 'GET' | 'HEAD',
    headers: Record<string, string> = {},
  ): Promise<IncomingMessage> {
    for (let hops = 0; res.statusCode && [301, 302, 303, 307, 308].includes(res.statusCode) && hops < 5; hops++) {
      const to = new URL(res.headers.location ?? '', `${this.base}/`).toString();
      res.resume();
      res = await send({ method, url: to, headers });
    }
    return res;
  }

  async hasBlob(repo: string, digest: string): Promise<boolean> {
    return withRetries(this.retries, async () => {
      const res = await this.redirected(
        await this.request({ method: 'HEAD', path: `/v2/${repo}/blobs/${digest}`, repo, push: true }),
        'HEAD',
      );
      res.resume();
      if (res.statusCode === 200) return true;
      // 405/501: a registry without HEAD on blobs; uploading is then the only way to be sure.
      if (res.statusCode === 404 || res.statusCode === 405 || res.statusCode === 501) return false;
      throw await failure(res, `HEAD blob ${digest}`);
    });
  }

  /**
   * Opens an upload session: its Location as an absolute URL, or null when the blob was mounted
   * from `mount` (a registry that ignores the mount answers 202 and gets the bytes instead).
   */
  private startUpload(repo: string, digest: string, mount?: string): Promise<string | null> {
    return withRetries(this.retries, async () => {
      const q = mount ? `?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(mount)}` : '';
      const path = `/v2/${repo}/blobs/uploads/${q}`;
      const res = await this.request({
        method: 'POST',
        path,
        repo,
        push: true,
        ...(mount ? { mountFrom: mount } : {}),
      });
      res.resume();
      if (res.statusCode === 201 && mount) return null;
      if (res.statusCode !== 202 || !res.headers.location) throw await failure(res, `start upload of ${digest}`);
      return locationOf(res, `${this.base}${path}`);
    });
  }

  /**
   * Where an upload session got to, from its Range (`0-<last byte>`); null when that cannot be
   * trusted and the upload must start again: the session is gone or refused (distribution refuses a
   * session whose state lags the bytes a broken chunk left), or the Range is `0-0`, which
   * distribution sends for both no bytes and one byte.
   */
  private async uploadStatus(repo: string, location: string): Promise<{ location: string; done: number } | null> {
    const st = await this.request({ method: 'GET', path: location, repo, push: true }).catch(() => null);
    if (!st) return null;
    st.resume();
    const got = /^(?:bytes=)?0-(\d+)$/.exec(String(st.headers.range ?? ''));
    if (st.statusCode !== 204 || !got || Number(got[1]) === 0) return null;
    return { location: locationOf(st, location), done: Number(got[1]) + 1 };
  }

  /**
   * Uploads a blob unless the repository has it: a cross-repository mount from `mountFrom` when
   * given (no bytes move), else a monolithic PUT for small blobs or PATCH chunks for large ones.
   * A registry that refuses the one way (405/501 or UNSUPPORTED: PUT-only registries, or those
   * that want PATCH before the closing PUT) is sent the blob the other way, in a fresh session.
   */
  async upload(
    repo: string,
    desc: { digest: string; size: number },
    read: (start: number, end: number) => Readable,
    options: { mountFrom?: string; onBytes?: (n: number) => void } = {},
  ): Promise<UploadOutcome> {
    if (await this.hasBlob(repo, desc.digest)) return 'exists';
    const mount = options.mountFrom && options.mountFrom !== repo ? options.mountFrom : undefined;
    const start = await this.startUpload(repo, desc.digest, mount);
    if (start === null) return 'mounted';
    let sent = 0;
    const onBytes = (n: number) => {
      sent += n;
      options.onBytes?.(n);
    };
    const whole = desc.size <= this.chunkBytes;
    try {
      if (whole) await this.putWhole(repo, desc, read, start, onBytes);
      else await this.putChunks(repo, desc, read, start, onBytes);
    } catch (e) {
      if (sent > 0 || !refusedMethod(e)) throw e;
      const again = (await this.startUpload(repo, desc.digest))!;
      if (whole) await this.putChunks(repo, desc, read, again, onBytes);
      else await this.putWhole(repo, desc, read, again, onBytes);
    }
    return 'uploaded';
  }

  /** The blob in one PUT; a failed PUT may have ended its session, so each retry opens a fresh one. */
  private async putWhole(
    repo: string,
    desc: { digest: string; size: number },
    read: (start: number, end: number) => Readable,
    start: string,
    onBytes: (n: number) => void,
  ): Promise<void> {
    await withRetries(this.retries, async (attempt) => {
      const at = attempt === 0 ? start : await this.startUpload(repo, desc.digest);
      const res = await this.request({
        method: 'PUT',
        path: withDigest(at!, desc.digest),
        repo,
        push: true,
        headers: OCTETS,
        body: () => read(0, desc.size),
        bodyLength: desc.size,
      });
      res.resume();
      if (res.statusCode !== 201) throw await failure(res, `upload of ${desc.digest}`);
      saidDigest(res, desc.digest, `blob ${desc.digest}`);
    });
    onBytes(desc.size);
  }

  /**
   * PATCH chunks then a closing PUT. A failed chunk is resumed from the offset the registry
   * reports, or the upload started again when that offset cannot be trusted.
   */
  private async putChunks(
    repo: string,
    desc: { digest: string; size: number },
    read: (start: number, end: number) => Readable,
    start: string,
    onBytes: (n: number) => void,
  ): Promise<void> {
    let location = start;
    let done = 0;
    for (let attempt = 0; done < desc.size; ) {
      const end = Math.min(desc.size, done + this.chunkBytes);
      try {
        const res = await this.request({
          method: 'PATCH',
          path: location,
          repo,
          push: true,
          headers: { ...OCTETS, 'content-range': `${done}-${end - 1}` },
          body: () => read(done, end),
          bodyLength: end - done,
        });
        res.resume();
        if (res.statusCode !== 202) throw await failure(res, `chunk ${done}-${end - 1} of ${desc.digest}`);
        location = locationOf(res, location);
        onBytes(end - done);
        done = end;
      } catch (e) {
        if (attempt++ >= this.retries || !isRetryable(e)) throw e;
        await new Promise((r) => setTimeout(r, backoff(e, attempt)));
        const resumed = await this.uploadStatus(repo, location);
        if (resumed) ({ location, done } = resumed);
        else {
          location = (await this.startUpload(repo, desc.digest))!;
          done = 0;
        }
      }
    }
    await withRetries(this.retries, async () => {
      const res = await this.request({ method: 'PUT', path: withDigest(location, desc.digest), repo, push: true });
      res.resume();
      if (res.statusCode !== 201) throw await failure(res, `finish upload of ${desc.digest}`);
      saidDigest(res, desc.digest, `blob ${desc.digest}`);
    });
  }
}
