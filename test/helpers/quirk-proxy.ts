/**
 * An HTTP proxy in front of a real (auth-less) docker-registry that behaves like the registries
 * users have: blob storage behind signed redirects (S3/GCS), HEAD unsupported, Docker-Content-Digest
 * missing or wrong, relative or foreign upload Locations, PATCH-only or PUT-only uploads, ignored
 * mounts, Basic or Bearer auth with its own token endpoint (tokens that expire after a few uses),
 * rate limits with an HTTP-date Retry-After, manifests rewritten to Docker schema 2 on GET.
 * Everything it and its side servers were sent is recorded, so a test can check where credentials went.
 */
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type net from 'node:net';

export interface Quirks {
  /** Blob GET and HEAD answered 307 to the storage origin, with a signed query string. */
  redirectBlobs?: boolean;
  /** Blob HEAD answered with this status (GET still works). */
  headBlob?: 404 | 405;
  /** Docker-Content-Digest removed from every answer. */
  dropDigestHeader?: boolean;
  /** Upload Locations rewritten: a root-relative path, a path relative to the request, or on another origin. */
  location?: 'root-relative' | 'relative' | 'other-host';
  /** The other origin answers uploads 401 with this challenge (`{other}` is its host). */
  otherChallenge?: string;
  /** PATCH to an upload refused (405): the registry takes one PUT only. */
  refusePatch?: boolean;
  /** PATCH refused with 416 unless its Content-Range is `bytes <first>-<last>/<total or *>`. */
  contentRangeBytes?: boolean;
  /** A PUT carrying bytes refused (405): the registry wants PATCH then an empty PUT (JFrog style). */
  refuseMonolithic?: boolean;
  /** `mount=`/`from=` stripped from POSTs: the registry opens an ordinary upload (202). */
  ignoreMount?: boolean;
  /** A 201 to a manifest PUT (`manifest`) or a blob's closing PUT (`blob`) with this Docker-Content-Digest and no body. */
  digestHeader?: { on: 'manifest' | 'blob'; value: string };
  /** Manifest GET answers the OCI manifest converted to Docker schema 2. */
  rewriteManifest?: boolean;
  /** Every request answered 429 with an HTTP-date Retry-After until this time (ms). */
  rateLimitUntil?: number;
  /** Auth the proxy asks for itself (the registry behind it has none). */
  auth?: {
    scheme: 'basic' | 'bearer';
    user: string;
    password: string;
    /** The WWW-Authenticate header; `{realm}` is replaced with the token endpoint's URL. */
    challenge?: string;
    /** The token response's field name. */
    tokenField?: 'token' | 'access_token';
    /** Requests a token is good for before it is refused as expired. */
    tokenUses?: number;
  };
}

export interface Seen {
  method: string;
  url: string;
  authorization?: string;
  range?: string;
}

export interface QuirkProxy {
  host: string;
  quirks: Quirks;
  /** Requests the registry-facing proxy received. */
  seen: Seen[];
  /** Requests the storage / other-host origin received. */
  other: Seen[];
  /** Requests the token endpoint received, with the scopes asked for. */
  tokens: { authorization?: string; scopes: string[] }[];
  otherHost: string;
  close(): Promise<void>;
}

const seenOf = (req: IncomingMessage): Seen => ({
  method: req.method ?? '',
  url: req.url ?? '',
  ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
  ...(req.headers.range ? { range: req.headers.range } : {}),
});

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

/** An OCI image manifest as a registry converting to Docker schema 2 would serve it. */
function toDockerSchema2(bytes: Buffer): Buffer {
  const m = JSON.parse(bytes.toString('utf8'));
  m.mediaType = 'application/vnd.docker.distribution.manifest.v2+json';
  delete m.artifactType;
  return Buffer.from(JSON.stringify(m, null, 3));
}

export async function startQuirkProxy(registryPort: number, quirks: Quirks = {}): Promise<QuirkProxy> {
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };
  const valid = new Map<string, number>(); // token → uses left
  const p: QuirkProxy = {
    host: '',
    otherHost: '',
    quirks,
    seen: [],
    other: [],
    tokens: [],
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all([main, other].map((s) => new Promise((r) => s.close(r))));
    },
  };

  /** Forwards to the registry, rewriting what the quirks ask of the answer. */
  const forward = (req: IncomingMessage, res: ServerResponse, path = req.url ?? '/') => {
    const headers = { ...req.headers, host: p.host };
    delete headers.authorization;
    const up = http.request({ host: '127.0.0.1', port: registryPort, method: req.method, path, headers }, (r) => {
      const h = { ...r.headers };
      if (quirks.dropDigestHeader) delete h['docker-content-digest'];
      if (h.location && /\/blobs\/uploads\//.test(h.location)) {
        const u = new URL(h.location, `http://${p.host}`);
        if (quirks.location === 'root-relative') h.location = `${u.pathname}${u.search}`;
        else if (quirks.location === 'relative') h.location = `${u.pathname.split('/').pop()}${u.search}`;
        else if (quirks.location === 'other-host') h.location = `http://${p.otherHost}${u.pathname}${u.search}`;
      }
      const isManifestGet = req.method === 'GET' && /\/manifests\//.test(path) && r.statusCode === 200;
      if (quirks.rewriteManifest && isManifestGet) {
        const parts: Buffer[] = [];
        r.on('data', (c: Buffer) => parts.push(c));
        r.on('end', () => {
          const body = toDockerSchema2(Buffer.concat(parts));
          delete h['docker-content-digest'];
          h['content-type'] = 'application/vnd.docker.distribution.manifest.v2+json';
          h['content-length'] = String(body.length);
          res.writeHead(200, h).end(body);
        });
        return;
      }
      res.writeHead(r.statusCode ?? 502, h);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  };

  const refuse = (req: IncomingMessage, res: ServerResponse, status: number, headers = {}, body = '') => {
    req.resume();
    req.on('end', () => res.writeHead(status, headers).end(body));
  };

  /** True when the request may pass; else a 401 with the challenge was sent. */
  const authorized = (req: IncomingMessage, res: ServerResponse): boolean => {
    const a = quirks.auth;
    if (!a) return true;
    const given = req.headers.authorization ?? '';
    if (a.scheme === 'basic') {
      if (given === `Basic ${Buffer.from(`${a.user}:${a.password}`).toString('base64')}`) return true;
    } else {
      const t = /^Bearer (.+)$/.exec(given)?.[1];
      const left = t ? (valid.get(t) ?? 0) : 0;
      if (t && left > 0) {
        valid.set(t, left - 1);
        return true;
      }
    }
    const realm = `http://${p.host}/token`;
    const challenge =
      a.challenge?.replace('{realm}', realm) ??
      (a.scheme === 'basic' ? 'Basic realm="quirk"' : `Bearer realm="${realm}",service="quirk"`);
    refuse(req, res, 401, { 'www-authenticate': challenge }, '{"errors":[{"code":"UNAUTHORIZED"}]}');
    return false;
  };

  const token = (req: IncomingMessage, res: ServerResponse) => {
    const a = quirks.auth!;
    const u = new URL(req.url ?? '/', 'http://x');
    p.tokens.push({
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
      scopes: u.searchParams.getAll('scope'),
    });
    if (req.headers.authorization !== `Basic ${Buffer.from(`${a.user}:${a.password}`).toString('base64')}`)
      return refuse(req, res, 401);
    const t = randomBytes(12).toString('hex');
    valid.set(t, a.tokenUses ?? 1000);
    const body = JSON.stringify({ [a.tokenField ?? 'token']: t, expires_in: 60 });
    refuse(req, res, 200, { 'content-type': 'application/json' }, body);
  };

  const main = http.createServer((req, res) => {
    p.seen.push(seenOf(req));
    const url = req.url ?? '/';
    if (url.startsWith('/token')) return token(req, res);
    if (quirks.rateLimitUntil && Date.now() < quirks.rateLimitUntil) {
      const at = new Date(quirks.rateLimitUntil + 1000).toUTCString();
      return refuse(req, res, 429, { 'retry-after': at }, '{"errors":[{"code":"TOOMANYREQUESTS"}]}');
    }
    if (!authorized(req, res)) return;
    const blob = /\/blobs\/sha256:[0-9a-f]{64}$/.test(url.split('?')[0]);
    if (blob && req.method === 'HEAD' && quirks.headBlob) return refuse(req, res, quirks.headBlob);
    if (blob && quirks.redirectBlobs && (req.method === 'GET' || req.method === 'HEAD')) {
      const sig = `X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=${randomBytes(16).toString('hex')}`;
      return refuse(req, res, 307, { location: `http://${p.otherHost}${url}?${sig}` });
    }
    if (req.method === 'PATCH' && quirks.refusePatch) return refuse(req, res, 405);
    const range = String(req.headers['content-range'] ?? '');
    if (req.method === 'PATCH' && quirks.contentRangeBytes && !/^bytes \d+-\d+\/(\d+|\*)$/.test(range))
      return refuse(req, res, 416);
    const carriesBytes = Number(req.headers['content-length'] ?? 0) > 0;
    if (req.method === 'PUT' && /\/blobs\/uploads\//.test(url) && carriesBytes && quirks.refuseMonolithic)
      return refuse(req, res, 405, {}, '{"errors":[{"code":"UNSUPPORTED"}]}');
    const d = quirks.digestHeader;
    if (req.method === 'PUT' && d && (d.on === 'manifest' ? /\/manifests\// : /\/blobs\/uploads\//).test(url)) {
      // stored as sent; the answer names the given digest
      const headers = { ...req.headers, host: p.host };
      delete headers.authorization;
      const up = http.request({ host: '127.0.0.1', port: registryPort, method: 'PUT', path: url, headers }, (r) => {
        r.resume();
        res.writeHead(r.statusCode ?? 502, r.statusCode === 201 ? { 'docker-content-digest': d.value } : {}).end();
      });
      req.pipe(up);
      return;
    }
    if (req.method === 'POST' && quirks.ignoreMount && /[?&]mount=/.test(url))
      return forward(req, res, url.split('?')[0]);
    forward(req, res);
  });

  /** Storage behind blob redirects, or the foreign origin an upload Location names. */
  const other = http.createServer((req, res) => {
    p.other.push(seenOf(req));
    if (quirks.otherChallenge && /\/blobs\/uploads\//.test(req.url ?? ''))
      return refuse(req, res, 401, { 'www-authenticate': quirks.otherChallenge.replace('{other}', p.otherHost) });
    if (!/[?&]X-Amz-Signature=/.test(req.url ?? '') && !/\/blobs\/uploads\//.test(req.url ?? ''))
      return refuse(req, res, 403);
    const u = new URL(req.url ?? '/', 'http://x');
    u.searchParams.delete('X-Amz-Algorithm');
    u.searchParams.delete('X-Amz-Signature');
    forward(req, res, `${u.pathname}${u.search}`);
  });
  main.on('connection', track);
  other.on('connection', track);
  p.host = await listen(main);
  p.otherHost = await listen(other);
  return p;
}
