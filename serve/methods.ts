/**
 * Which methods each path takes, learnt from the routes as they are registered: a request for a
 * known path with another method is 405 with `Allow` (not 404, which says the path does not exist),
 * and OPTIONS on a known path answers 204 with `Allow` (RFC 9110 §9.3.7, §15.5.6).
 */
import type { FastifyInstance } from 'fastify';
import { ServeError } from '../spec/errors.js';

export class RouteMethods {
  private readonly routes: { re: RegExp; methods: Set<string> }[] = [];

  /** Records every route registered on `app` from now on (call before the routes are added). */
  watch(app: FastifyInstance): void {
    app.addHook('onRoute', (r) => {
      const methods = (Array.isArray(r.method) ? r.method : [r.method]).map((m) => String(m).toUpperCase());
      // `:name` matches one path segment, as in the router
      const source = r.url
        .split('/')
        .map((seg) => (seg.startsWith(':') ? '[^/]+' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
        .join('/');
      this.routes.push({ re: new RegExp(`^${source}$`), methods: new Set(methods) });
    });
  }

  /** The methods `path` (no query) is served with, sorted; empty when no route has that path. */
  allowed(path: string): string[] {
    const out = new Set<string>();
    for (const r of this.routes) if (r.re.test(path)) for (const m of r.methods) out.add(m);
    if (out.size) out.add('OPTIONS');
    return [...out].sort();
  }

  /** Why no route answers `method` on `path`: 404, or 405 with the methods the path takes. */
  noRoute(method: string, path: string): ServeError {
    const allowed = this.allowed(path);
    return allowed.length === 0
      ? new ServeError('E_SERVE_NOT_FOUND', `no route ${method} ${path}`)
      : new ServeError('E_SERVE_METHOD', `${path} takes ${allowed.join(', ')}, not ${method}`, { allowed });
  }

  /** Every method some route takes, sorted (OPTIONS *). */
  all(): string[] {
    const out = new Set(['OPTIONS']);
    for (const r of this.routes) for (const m of r.methods) out.add(m);
    return [...out].sort();
  }
}
